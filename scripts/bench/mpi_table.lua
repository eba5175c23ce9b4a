-- mpi_table.lua -- the table of scripts/bench/mpi.sh from its result lines
-- (medians over the rounds).
local path = assert(arg[1], "usage: mpi_table.lua RESULTS")
local runs = {}
local function add(key, v)
  runs[key] = runs[key] or {}
  table.insert(runs[key], v)
end
for line in io.lines(path) do
  local w = {}
  for x in line:gmatch("%S+") do w[#w + 1] = x end
  if w[1] == "c" or (w[1] == "parx" and tonumber(w[2])) then
    add(w[1] .. " " .. w[2], tonumber(w[3]))
  elseif w[2] == "table" then
    add(w[1] .. " table", tonumber(w[3]))
  elseif w[2] == "map" then
    add(table.concat({w[1], "map", w[3], w[4], w[5]}, " "), tonumber(w[6]))
  elseif w[2] == "idle" then
    add("idle wait", tonumber(w[3]))
    add("idle idle", tonumber(w[4]))
  end
end
local function med(key)
  local t = runs[key]
  if not t then return nil end
  table.sort(t)
  return t[math.ceil(#t / 2)]
end
local function row(...) print("| " .. table.concat({...}, " | ") .. " |") end
row("benchmark", "C / mpi4py", "parx", "parx vs peer")
row("---", "---", "---", "---")
for _, b in ipairs({1048576, 67108864}) do
  local c, p = med("c " .. b), med("parx " .. b)
  if c and p then
    local mb = b / 1048576
    row(("array ping-pong %d MB (bandwidth)"):format(mb), ("%.0f MB/s"):format(2 * mb / c),
      ("%.0f MB/s"):format(2 * mb / p), ("%.2fx"):format(c / p))
  end
end
local c, p = med("c 32"), med("parx table")
if c and p then
  row("small table ping-pong (round trip)", ("%.1f µs"):format(c * 1e6), ("%.1f µs"):format(p * 1e6),
    ("%.1fx C's latency"):format(p / c))
end
for _, m in ipairs({{"10000", "1"}, {"20000", "0.01"}}) do
  local n, ms = m[1], m[2]
  local p = med(("parx map %s %s 2"):format(n, ms))
  local q = med(("mpi4py map %s %s chunk%d"):format(n, ms, math.floor(tonumber(n) / 64)))
  local label = ("mpi.map %s items of %s ms, 2 ranks x 1 worker (tasks/s)"):format(n, ms)
  if p then
    row(label, q and ("%.0f (chunksize %d)"):format(n / q, math.floor(tonumber(n) / 64)) or "-",
      ("%.0f"):format(n / p), q and ("%.1fx"):format(q / p) or "-")
  end
  local q1 = med(("mpi4py map 200 %s chunk1"):format(ms))
  if p and q1 then
    row(label:gsub("%(tasks/s%)", "vs chunksize 1 (tasks/s)"), ("%.0f"):format(200 / q1),
      ("%.0f"):format(n / p), ("%.1fx"):format((n / p) / (200 / q1)))
  end
end
local t1, t2 = med("parx map 200 10 1"), med("parx map 400 10 2")
if t1 and t2 then
  row("weak scaling, 10 ms items, 1 -> 2 ranks", ("%.2f s -> %.2f s"):format(t1, t2), "",
    ("%.0f%% efficiency"):format(100 * t1 / t2))
end
local w, i = med("idle wait"), med("idle idle")
if w then
  row("CPU of a rank waiting in recv / idle", "", ("%.1f%% / %.1f%%"):format(100 * w, 100 * i), "")
end
