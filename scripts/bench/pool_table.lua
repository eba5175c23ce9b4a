-- pool_table.lua -- formats scripts/bench/pool.sh's results (lines of
-- "impl.what seconds") as a Markdown table with ratios and the goals of
-- issue 3.
-- Every key may appear once per round: the table shows the median.
local all = {}
for line in io.lines(arg[1]) do
  local k, v = line:match("^(%S+)%s+(%S+)$")
  if k and tonumber(v) then
    all[k] = all[k] or {}
    table.insert(all[k], tonumber(v))
  end
end
local r = {}
for k, vs in pairs(all) do
  table.sort(vs)
  local n = #vs
  r[k] = n % 2 == 1 and vs[(n + 1) / 2] or (vs[n / 2] + vs[n / 2 + 1]) / 2
end

local function ns(s) return s and ("%.1f ns"):format(s * 1e9) or "n/a" end
local function us(s) return s and ("%.2f µs"):format(s * 1e6) or "n/a" end
local function ms(s) return s and ("%.1f ms"):format(s * 1e3) or "n/a" end
local function ratio(a, b) return (a and b) and ("%.2fx"):format(a / b) or "n/a" end
-- "Nx faster" or "Nx slower": parx's time against a peer's.
local function vs(peer, mine)
  if not (peer and mine) then return "n/a" end
  if peer >= mine then return ("%.2fx faster"):format(peer / mine) end
  return ("%.2fx slower"):format(mine / peer)
end
local function verdict(ok) if ok == nil then return "" end return ok and " (met)" or " (not met)" end

local rows = {}
local function row(...) rows[#rows + 1] = "| " .. table.concat({...}, " | ") .. " |" end

local m, pm = r["parx.map"], r["python.map"]
row("`pool.map(x*x)`, 1e6 numbers, per item", ns(m), "Python `Pool(2).map`: " .. ns(pm),
    vs(pm, m), ">= 20x" .. verdict(m and pm and pm / m >= 20))
local m1, pm1 = r["parx.map1"], r["python.map1"]
row("`pool.map`, `chunksize=1`, 1e5 items, per item", us(m1),
    "Python `Pool(2).map(chunksize=1)`: " .. us(pm1), vs(pm1, m1),
    ">= 10x" .. verdict(m1 and pm1 and pm1 / m1 >= 10))
local c1, c2, go, go1 = r["parx.cpu_w1"], r["parx.cpu_w2"], r["go.cpu_w2"], r["go.cpu_w1"]
row("CPU-bound map, 64 items of " .. ms(r["parx.cpu_item"]) .. ", 2 workers vs 1",
    ms(c2) .. " (1 worker: " .. ms(c1) .. ")",
    "Go, 64 goroutines, GOMAXPROCS=2: " .. ms(go) .. " (1: " .. ms(go1) .. ", speedup " .. ratio(go1, go) .. ")",
    "speedup " .. ratio(c1, c2) .. "; " .. vs(go, c2) .. " than Go",
    ">= 1.85x speedup" .. verdict(c1 and c2 and c1 / c2 >= 1.85))
local sp = r["parx.spawn"]
row("`parx.spawn(f):join()`, empty f, median", us(sp), "pthread create+join: " .. us(r["pthread.spawn"]),
    vs(r["pthread.spawn"], sp), "<= 10 µs" .. verdict(sp and sp <= 10e-6))
row("", "", "Python `threading.Thread` start+join: " .. us(r["python.spawn"]),
    vs(r["python.spawn"], sp), "")
row("", "", "Go `go f()` + channel: " .. us(r["go.spawn"]),
    vs(r["go.spawn"], sp), "")
local as = r["parx.async"]
row("`parx.async(f):join()`, empty f, median", us(as), "", "", "<= 1 µs" .. verdict(as and as <= 1e-6))
local pf, cf = r["parx.pfor"], r["c_omp.pfor"]
row("`parallel_for` sum of sqrt(a[i]), 5e7 float64", ms(pf), "C -O2 OpenMP, 2 threads: " .. ms(cf),
    ratio(cf, pf) .. " of C's speed", ">= 0.7x" .. verdict(pf and cf and cf / pf >= 0.7))
local pf2 = r["parx.pfor2"]
row("the same loop with 2 accumulators", ms(pf2), "", ratio(cf, pf2) .. " of C's speed",
    ">= 0.7x" .. verdict(pf2 and cf and cf / pf2 >= 0.7))

print("| benchmark | parx | peer | ratio | goal |")
print("|---|---|---|---|---|")
for _, l in ipairs(rows) do print(l) end
