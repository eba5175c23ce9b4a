-- mpi_table.lua -- the table of scripts/bench/mpi.sh from its result lines:
-- medians over the rounds with the spread (min-max), the machine first.
local path = assert(arg[1], "usage: mpi_table.lua RESULTS")
local runs, machine = {}, nil
local function add(key, v)
  runs[key] = runs[key] or {}
  table.insert(runs[key], v)
end
for line in io.lines(path) do
  local w = {}
  for x in line:gmatch("%S+") do w[#w + 1] = x end
  if w[1] == "machine:" then
    machine = line:sub(10)
  elseif (w[1] == "c" or w[1] == "parx" or w[1] == "parx-alloc") and tonumber(w[2]) then
    add(w[1] .. " " .. w[2], tonumber(w[3]))
  elseif w[2] == "allreduce" then
    add(w[1] .. " allreduce " .. w[3], tonumber(w[4]))
  elseif w[2] == "table" then
    add(w[1] .. " table", tonumber(w[3]))
  elseif w[1] == "parx" and w[2] == "map" then
    -- parx map N MS RANKS SECONDS [chunkC]
    add(table.concat({"parx map", w[3], w[4], w[5], w[7] or ""}, " "), tonumber(w[6]))
  elseif w[2] == "map" then
    -- mpi4py map N MS chunkC SECONDS
    add(table.concat({w[1], "map", w[4]}, " "), {n = tonumber(w[3]), t = tonumber(w[6])})
  elseif w[2] == "idle" then
    add("idle wait", tonumber(w[3]))
    add("idle idle", tonumber(w[4]))
  end
end

-- median, min, max of f over the runs of key (f maps a run to a figure)
local function stats(key, f)
  local t = runs[key]
  if not t then return nil end
  local v = {}
  for i, x in ipairs(t) do v[i] = f(x) end
  table.sort(v)
  return v[math.ceil(#v / 2)], v[1], v[#v]
end
local function fmt(pat, m, lo, hi)
  if lo == hi then return pat:format(m) end
  return (pat .. " (" .. pat .. "–" .. pat .. ")"):format(m, lo, hi)
end
local function row(...) print("| " .. table.concat({...}, " | ") .. " |") end
local id = function(x) return x end

if machine then print("Machine: " .. machine .. ".\n") end
row("benchmark", "C / mpi4py", "parx", "parx vs peer")
row("---", "---", "---", "---")
-- ratios are of medians; each side's spread is its own
for _, b in ipairs({1048576, 67108864}) do
  local mb = b / 1048576
  local bw = function(t) return 2 * mb / t end
  local c, clo, chi = stats("c " .. b, bw)
  local p, plo, phi = stats("parx " .. b, bw)
  local a, alo, ahi = stats("parx-alloc " .. b, bw)
  if c and p then
    row(("array ping-pong %d MB, recv_into (MB/s)"):format(mb), fmt("%.0f", c, clo, chi),
      fmt("%.0f", p, plo, phi), ("%.2fx"):format(p / c))
  end
  if c and a then
    row(("array ping-pong %d MB, recv: a new array each (MB/s)"):format(mb), fmt("%.0f", c, clo, chi),
      fmt("%.0f", a, alo, ahi), ("%.2fx"):format(a / c))
  end
end
local us = function(t) return t * 1e6 end
local c, clo, chi = stats("c 32", us)
local p, plo, phi = stats("parx table", us)
if c and p then
  row("small table ping-pong (µs per round trip)", fmt("%.1f", c, clo, chi), fmt("%.1f", p, plo, phi),
    ("%.2fx C's latency"):format(p / c))
end
for _, n in ipairs({1048576, 1}) do
  local unit, scale = n > 1 and "ms" or "µs", n > 1 and 1e3 or 1e6
  local f = function(t) return t * scale end
  local c1, clo1, chi1 = stats("c allreduce " .. n, f)
  local p1, plo1, phi1 = stats("parx allreduce " .. n, f)
  if c1 and p1 then
    row(("allreduce (sum) of %s, 2 ranks (%s per call)"):format(n > 1 and "1M float64 (8 MB)" or "a number", unit),
      fmt("%.2f", c1, clo1, chi1), fmt("%.2f", p1, plo1, phi1), ("%.2fx C's time"):format(p1 / c1))
  end
end
for key in pairs(runs) do
  local n, ms = key:match("^parx map (%d+) (%S+) 2 $")
  if n and ms ~= "10" then
    local rate = function(t) return tonumber(n) / t end
    local pm, plo2, phi2 = stats(key, rate)
    local qm, qlo, qhi = stats("mpi4py map " .. ms, function(x) return x.n / x.t end)
    row(("mpi.map of %s items of %s ms, 2 ranks x 1 worker (tasks/s)"):format(n, ms),
      qm and fmt("%.0f", qm, qlo, qhi) or "-", fmt("%.0f", pm, plo2, phi2),
      qm and ("%.1fx"):format(pm / qm) or "-")
  end
end
local s, slo, shi = stats("parx map 5000 0 2 chunk1", function(t) return 5000 / t end)
if s then
  row("root's chunk-serving rate, chunksize 1, 2 ranks (chunks/s)", "", fmt("%.0f", s, slo, shi), "")
end
for key in pairs(runs) do
  local n = key:match("^parx map (%d+) 10 1 $")
  local t1, lo1, hi1, t2, lo2, hi2
  if n then
    t1, lo1, hi1 = stats(key, id)
    t2, lo2, hi2 = stats(("parx map %d 10 2 "):format(2 * n), id)
  end
  if t2 then
    row(("weak scaling, %s -> %d items of 10 ms, 1 -> 2 ranks (s)"):format(n, 2 * n),
      "", fmt("%.2f", t1, lo1, hi1) .. " -> " .. fmt("%.2f", t2, lo2, hi2),
      ("%.0f%% efficiency"):format(100 * t1 / t2))
  end
end
local pc = function(x) return 100 * x end
local w, wlo, whi = stats("idle wait", pc)
local i, ilo, ihi = stats("idle idle", pc)
if w then
  row("CPU of a rank waiting 10 s in recv / idle (% of a core)", "",
    fmt("%.2f", w, wlo, whi) .. " / " .. fmt("%.2f", i, ilo, ihi), "")
end
