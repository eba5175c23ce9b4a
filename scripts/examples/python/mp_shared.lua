-- Answers: multiprocessing, "Sharing state between processes: Shared
-- memory" (Python's library reference): a child process sets a shared
-- double to 3.1415927 and negates every element of a shared array of the
-- integers 0..9; the parent prints both: 3.1415927 and
-- [0, -1, -2, -3, -4, -5, -6, -7, -8, -9].
--
-- Value('d') and Array('i') are parx arrays (float64 of one element,
-- int32 of ten), shared by reference with the worker VM: the child writes
-- the same memory the parent reads.
local function f(n, a)
  n:set(1, 3.1415927)
  for i = 1, #a do a:set(i, -a:get(i)) end
end

local num = parx.array("float64", 1)
local arr = parx.array.from("int32", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9})

parx.spawn(f, num, arr):join()

print(("%.7f"):format(num:get(1)))
print("[" .. table.concat(arr:totable(), ", ") .. "]")
