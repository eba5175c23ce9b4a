-- Answers: multiprocessing, the introduction's Pool example (Python's
-- library reference): squares 1, 2, 3 on a pool of five processes and
-- prints the list, [1, 4, 9].
--
-- parx.pool.map runs the function on the runtime's worker VMs and returns
-- the results in order; opts.workers = 5 caps how many run at once, like
-- Pool(5) (the pool itself is the runtime's workers).
local function f(x) return x * x end

local squares = parx.pool.map(f, {1, 2, 3}, {workers = 5})
print("[" .. table.concat(squares, ", ") .. "]")
