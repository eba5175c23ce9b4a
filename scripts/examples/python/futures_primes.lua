-- Answers: concurrent.futures, "ProcessPoolExecutor Example" (Python's
-- library reference): checks six large numbers for primality in parallel
-- and prints "<n> is prime: True|False" for each, in the input's order.
--
-- pool.map hands the numbers to the worker VMs and returns the results in
-- order, as executor.map does.  The numbers are below 2^53, so Lua's
-- doubles hold them (and every remainder) exactly.
local PRIMES = {
  112272535095293, 112582705942171, 112272535095293,
  115280095190773, 115797848077099, 1099726899285419,
}

local function is_prime(n)
  if n < 2 then return false end
  if n == 2 then return true end
  if n % 2 == 0 then return false end
  local limit = math.floor(math.sqrt(n))
  for i = 3, limit, 2 do
    if n % i == 0 then return false end
  end
  return true
end

local results = parx.pool.map(is_prime, PRIMES)
for i, n in ipairs(PRIMES) do
  print(("%d is prime: %s"):format(n, results[i] and "True" or "False"))
end
