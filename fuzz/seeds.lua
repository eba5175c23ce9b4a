-- seeds.lua -- writes the fuzz target's seed corpus: real marshaller output
-- for a variety of values, each in both modes.
--   parx fuzz/seeds.lua DIR
-- A seed is one mode byte (0 data-only, 1 trusted) and then the message
-- (see fuzz/fuzz_unmarshal.c).
local dbg = require "parx.c.debug"
local dir = assert(arg[1], "usage: parx fuzz/seeds.lua DIR")

fuzz_seed_global = {answer = 42, list = {1, 2, 3}}
function fuzz_seed_helper(x) return x + fuzz_seed_global.answer end

local function values()
  local v = {}
  local function add(...) v[#v + 1] = {n = select("#", ...), ...} end
  add(nil) add(true, false) add(0, 1, 127, 128, -1, 32767, -32768, 65536, -2^31)
  add(2^53, -0.0, 0 / 0, math.huge, -math.huge, 0.1, 5e-324)
  add("", "a", ("x"):rep(63), ("y"):rep(64), ("\0\1\255"):rep(100))
  add(1LL, -9223372036854775807LL - 1, 0ULL, 0xffffffffffffffffULL, dbg.lightuserdata(0))
  add({id = 2^62 * 1LL, null = dbg.lightuserdata(0)})
  add({}) add({1, 2, 3}) add({x = 1, y = "two", [true] = false, [2.5] = {}})
  local doubles = {}
  for i = 1, 40 do doubles[i] = i * 0.25 end
  doubles[20] = "hole"; doubles.k = "v"
  add(doubles)
  local holes = {1, nil, 3, nil, nil, 6}
  add(holes)
  local nested = {}
  local cur = nested
  for _ = 1, 30 do cur.next = {depth = _}; cur = cur.next end
  add(nested)
  local shared = {1}
  local cyc = {a = shared, b = shared}
  cyc.self = cyc
  add(cyc, shared)
  add({[{}] = {}, [{1}] = {2}})
  add(math.sqrt, print, string.format)
  add(string, math, table)
  add(setmetatable({1, 2}, {__index = string}))
  add(setmetatable({k = 1}, string))
  local k = 7
  local function f(x) return x * k end
  local function g(x) k = k + x; return k end
  add(f, g)
  add(function(x) return fuzz_seed_helper(x) end)
  add({f, f, fn = f})
  add(function() local function inner() return fuzz_seed_global end return inner end)
  local up = {1, 2}
  add(function() return up, math.floor, string end)
  return v
end

local n = 0
local function write(name, bytes)
  for mode = 0, 1 do
    n = n + 1
    local f = assert(io.open(("%s/%s-%d"):format(dir, name, mode), "wb"))
    f:write(string.char(mode), bytes)
    f:close()
  end
end

local all = {}
for i, args in ipairs(values()) do
  local ok, s = pcall(dbg.marshal, unpack(args, 1, args.n))
  if ok then
    write(("seed%02d"):format(i), s)
    all[#all + 1] = s
  else
    io.stderr:write("seeds.lua: value #", i, " not marshalled: ", tostring(s), "\n")
  end
end
-- Several segments in one message.
write("multi", table.concat(all, "", 1, 4))
write("multi2", all[#all] .. all[1])
print(("seeds.lua: %d seeds in %s"):format(n, dir))
