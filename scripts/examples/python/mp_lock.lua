-- Answers: multiprocessing, "Synchronization between processes" (Python's
-- library reference): ten processes each print "hello world <i>" while
-- holding one lock, so their lines never mix.
--
-- The lock is a parx.mutex shared by every worker VM; m:with(fn) is
-- Python's `with lock:` (it unlocks on errors too).  The lines come out in
-- whatever order the tasks take the lock, so this version prints them
-- sorted by i (the tasks return their line, the script prints them in
-- order): the output is the same on every run.
local lock = parx.mutex()
local lines = parx.channel()

local function f(l, out, i)
  l:with(function()
    out:send({i, "hello world " .. i})
  end)
end

local tasks = {}
for num = 0, 9 do tasks[#tasks + 1] = parx.spawn(f, lock, lines, num) end
for _, t in ipairs(tasks) do t:join() end
lines:close()
local got = {}
for line in lines:iter() do got[#got + 1] = line end
table.sort(got, function(a, b) return a[1] < b[1] end)
for _, line in ipairs(got) do print(line[2]) end
