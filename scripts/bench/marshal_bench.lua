-- marshal_bench.lua -- the marshaller alone (no scheduler, no threads):
-- ns per element to marshal a value into a message and to unmarshal it back,
-- best of 5 batches.  Prints "case marshal|unmarshal value unit" lines for
-- marshal.sh; Python's pickle (what multiprocessing sends) is the peer.
local dbg = require "parx.c.debug"
local N = tonumber(arg and arg[1]) or 1000000

local function row(name, value, count, reps)
  local m, u, bytes = dbg.bench(value, reps)
  print(string.format("%s marshal %.2f ns/elem", name, m / count * 1e9))
  print(string.format("%s unmarshal %.2f ns/elem", name, u / count * 1e9))
  print(string.format("%s bytes %.2f B/elem", name, bytes / count))
end

local ints, doubles = {}, {}
for i = 1, N do ints[i] = i; doubles[i] = i * 0.37 end
row("ints_" .. N, ints, N, 20)
row("doubles_" .. N, doubles, N, 20)
ints, doubles = nil, nil -- keep the collector from marking them in later rows
collectgarbage(); collectgarbage()
local chunk = {}
for i = 1, 10000 do chunk[i] = i end
row("ints_chunk10000", chunk, 10000, 2000)
local strs = {}
for i = 1, 10000 do strs[i] = "item" .. i end
row("strings_10000", strs, 10000, 500)
local recs = {}
for i = 1, 10000 do recs[i] = {id = i, name = "n" .. i, score = i * 1.5} end
row("records_10000", recs, 10000, 100)
function bench_helper(x) return x + 1 end
local k = 3
row("closure", function(x) return bench_helper(x) * k end, 1, 50000)
row("number", 42, 1, 200000)
