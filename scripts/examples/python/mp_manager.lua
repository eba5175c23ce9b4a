-- Answers: multiprocessing, "Sharing state between processes: Server
-- process" (Python's library reference): a child process fills a managed
-- dict (1 -> '1', '2' -> 2, 0.25 -> None) and reverses a managed list of
-- 0..9; the parent prints both.
--
-- The managed dict is a parx.dict (shared by reference with every VM, no
-- manager process, keys kept in insertion order as Python's are), the list
-- a parx.array of int32.  A nil stored in a dict deletes the key, as in a
-- Lua table, so None is stored as false and printed as None.
local function f(d, l)
  d[1] = "1"
  d["2"] = 2
  d[0.25] = false -- None
  local n = #l
  for i = 1, math.floor(n / 2) do
    local a, b = l:get(i), l:get(n + 1 - i)
    l:set(i, b)
    l:set(n + 1 - i, a)
  end
end

local function repr(v)
  if v == false then return "None" end
  if type(v) == "string" then return "'" .. v .. "'" end
  return tostring(v)
end

local d = parx.dict()
local l = parx.array.from("int32", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9})

parx.spawn(f, d, l):join()

local items = {}
for k, v in d:pairs() do items[#items + 1] = repr(k) .. ": " .. repr(v) end
print("{" .. table.concat(items, ", ") .. "}")
print("[" .. table.concat(l:totable(), ", ") .. "]")
