-- A parallel map and reduce: the seed's Pool.map + Pool.reduce example.
--
--   import multiprocessing
--   def square(x):
--       return x * x
--   def sum_squares(a, b):
--       return a + b
--   if __name__ == "__main__":
--       with multiprocessing.Pool(processes=4) as pool:
--           numbers = range(10)
--           squared = pool.map(square, numbers)
--           result = pool.reduce(sum_squares, squared)
--           print(f"Sum of squares: {result}")
--
-- Prints "Sum of squares: 285".  (multiprocessing.Pool has no reduce; the
-- seed's program is what its readers want, and parx.pool.reduce does it:
-- each worker folds whole chunks, the caller folds the chunks' results.)
local pool = parx.pool

local function square(x) return x * x end
local function sum_squares(a, b) return a + b end

local numbers = {}
for i = 0, 9 do numbers[#numbers + 1] = i end
local squared = pool.map(square, numbers)
local result = pool.reduce(sum_squares, squared)
print(("Sum of squares: %d"):format(result))
