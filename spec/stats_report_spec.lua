-- parx.stats_report: the table and the speedup analysis `parx --stats`
-- prints at exit, from the table parx.stats() returns.
local report = require "parx.stats_report"

local function vm(name, busy, parked, idle, tasks)
  return {name = name, busy = busy, parked = parked or 0, idle = idle or 0, tasks = tasks or 0,
          task_p50 = 0.012, task_p99 = 0.05}
end

-- A number printed after `label` in text (the first one).
local function after(text, label)
  local i = text:find(label, 1, true)
  assert.truthy(i, "no '" .. label .. "' in:\n" .. text)
  return tonumber(text:match("(%-?[%d.]+)", i + #label))
end

describe("parx.stats_report.format", function()
  it("prints a line per VM with busy, parked and idle time, tasks and task percentiles", function()
    local text = report.format{wall = 2, workers = 2, vms = {vm("main", 0.05, 1.9, 0.05, 3),
      vm("worker 1", 1.8, 0, 0.2, 120), vm("worker 2", 1.7, 0, 0.3, 118)},
      messages = 12345, bytes_marshalled = 3.5 * 2 ^ 20, channel_ops = 20, gpu_time = 0, mpi_time = 0.5}
    for _, want in ipairs({"main", "worker 1", "worker 2", "1.80 s", "1.90 s", "120", "118", "12 ms", "50 ms",
                           "messages 12.3k", "3.5 MiB", "channel operations 20", "MPI 500 ms"}) do
      assert.truthy(text:find(want, 1, true), want .. " in:\n" .. text)
    end
    -- the header and the rows line up: every VM line is as wide as the header
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    local width = function(s) return #s:gsub("[\128-\191]", "") end
    assert.equal(width(lines[2]), width(lines[4]))
    assert.equal(width(lines[2]), width(lines[6]))
  end)

  it("gives the speedup S as busy time over wall time and the Karp-Flatt serial fraction", function()
    -- busy 1.8 + 1.7 + 0.05 = 3.55 s over 2 s: S = 1.775, e = (1/S - 1/2) / (1/2)
    local text = report.format{wall = 2, workers = 2,
      vms = {vm("main", 0.05), vm("worker 1", 1.8), vm("worker 2", 1.7)}}
    local S = 3.55 / 2
    assert.near(S, after(text, "Speedup S = "), 0.005)
    local e = (1 / S - 1 / 2) / (1 - 1 / 2)
    assert.near(e, after(text, "(1/S - 1/N) / (1 - 1/N) = "), 0.0005)
    assert.near(100 * e, after(text, "serial fraction "), 0.5)
    assert.near(100 * (1 - e), after(text, "parallel fraction "), 0.5)
    -- the Amdahl bound on N workers is 1 / (e + (1 - e)/N), and 1/e at most
    assert.near(1 / (e + (1 - e) / 4), after(text, "on 2 workers, "), 0.005)
    assert.near(1 / e, after(text, "never more than 1/e = "), 0.05)
  end)

  it("matches Amdahl's law the other way round: a known serial part comes back out", function()
    -- A program with a serial part of 20% on 4 workers: S = 1 / (0.2 + 0.8/4) = 2.5.
    local text = report.format{wall = 1, workers = 4, vms = {vm("a", 1), vm("b", 0.5), vm("c", 0.5), vm("d", 0.5)}}
    assert.near(2.5, after(text, "Speedup S = "), 0.005)
    assert.near(0.2, after(text, "(1/S - 1/N) / (1 - 1/N) = "), 0.0005)
    assert.truthy(text:find("serial fraction 20%", 1, true), text)
    assert.truthy(text:find("parallel fraction 80%", 1, true), text)
    assert.near(5, after(text, "never more than 1/e = "), 0.05)
  end)

  it("says there is nothing to compare with one worker", function()
    local text = report.format{wall = 1, workers = 1, vms = {vm("main", 0.9)}}
    assert.near(0.9, after(text, "Speedup S = "), 0.005)
    assert.truthy(text:find("--workers 2", 1, true), text)
    assert.is_nil(text:find("Karp", 1, true))
    assert.is_nil(text:find("parallel fraction %d"))
  end)

  it("calls a run with S <= 1 on several workers serial", function()
    local text = report.format{wall = 1, workers = 4, vms = {vm("main", 0.5), vm("worker 1", 0.3)}}
    assert.near(0.8, after(text, "Speedup S = "), 0.005)
    assert.truthy(text:find("as good as serial", 1, true), text)
    assert.truthy(text:find("taken as e = 1", 1, true), text)
    assert.truthy(text:find("parallel fraction 0%", 1, true), text)
    assert.is_nil(text:find("Amdahl bound", 1, true))
  end)

  it("takes e as 0 when the main VM's work pushes S above N", function()
    local text = report.format{wall = 1, workers = 2, vms = {vm("a", 1), vm("b", 1), vm("c", 0.3)}}
    assert.truthy(text:find("taken as e = 0", 1, true), text)
    assert.truthy(text:find("serial fraction 0%", 1, true), text)
  end)

  it("counts the VMs of parx.pool.new pools among the N workers, and says how many there are", function()
    -- 2 workers and 2 pool VMs, all busy the whole second: S = 4 on N = 4, e = 0.
    local p1, p2 = vm("pool worker 3", 1), vm("pool worker 4", 1)
    p1.pool, p2.pool = true, true
    local text = report.format{wall = 1, workers = 2, pool_workers = 2,
      vms = {vm("main", 0), vm("worker 1", 1), vm("worker 2", 1), p1, p2}}
    assert.truthy(text:find("2 workers and 2 of pools of their own (parx.pool.new)", 1, true), text)
    assert.truthy(text:find("pool worker 3", 1, true), text)
    assert.near(4, after(text, "Speedup S = "), 0.005)
    assert.near(0, after(text, "(1/S - 1/N) / (1 - 1/N) = "), 0.0005)
    assert.truthy(text:find("N = 4 workers (2 of them pools' own)", 1, true), text)
    assert.is_nil(text:find("taken as e = 0", 1, true), text)
    -- No runtime workers, a pool of 2: N = 2.
    text = report.format{wall = 1, workers = 0, pool_workers = 2, vms = {vm("main", 0.2), p1, p2}}
    assert.truthy(text:find("N = 2 workers", 1, true), text)
    assert.is_nil(text:find("nothing to compare", 1, true), text)
  end)

  it("handles zeros, missing fields and NaN without dividing by zero", function()
    for _, stats in ipairs({{wall = 0, workers = 0, vms = {}}, {}, {wall = 0 / 0, workers = 2, vms = {vm("x", 0 / 0)}},
                            {wall = 1, workers = 2, vms = {vm("x", 0)}}}) do
      local text = report.format(stats)
      assert.truthy(text:find("too short to measure", 1, true), text)
      assert.is_nil(text:find("nan", 1, true), text)
      assert.is_nil(text:find("inf", 1, true), text)
    end
    assert.has_error(function() report.format(nil) end)
  end)
end)

-- End to end: parx --stats (the flag is parx.trace's: pending until a parx
-- that has it is built).
describe("parx.stats_report.format on a loaded machine", function()
  it("says for what share of their busy time the threads had a core, and warns when it is short", function()
    local function with_cpu(share)
      local w1, w2 = vm("worker 1", 1), vm("worker 2", 1)
      w1.cpu, w2.cpu = share, share
      local m = vm("main", 0)
      m.cpu = 0
      return report.format{wall = 1, workers = 2, vms = {m, w1, w2}}
    end
    local idle, loaded = with_cpu(0.95), with_cpu(0.3)
    assert.equal(95, after(idle, "had a core for "))
    assert.not_matches("Other processes held the cores", idle)
    assert.equal(30, after(loaded, "had a core for "))
    assert.matches("Other processes held the cores", loaded)
    -- S is the program's speedup given its cores either way.
    assert.equal(after(idle, "Speedup S = "), after(loaded, "Speedup S = "))
    assert.not_matches("had a core", report.format{wall = 1, workers = 2, vms = {vm("main", 0), vm("worker 1", 1)}})
  end)

  it("gives the share over the VMs that report CPU time when a pool's own VMs report none", function()
    local w1, p3 = vm("worker 1", 1), vm("pool worker 3", 1)
    w1.cpu, p3.pool = 0.5, true
    local text = report.format{wall = 1, workers = 1, pool_workers = 1, vms = {w1, p3}}
    assert.equal(50, after(text, "had a core for "))
    assert.matches("over the VMs that give it", text)
  end)
end)

describe("parx --stats", function()
  local PARX = os.getenv("PARX_BIN") or "build/parx"
  local ROOT = debug.getinfo(1, "S").source:match("^@(.*)spec/stats_report_spec.lua$") or ""

  it("prints the report on the sum-of-squares example with a parallel fraction from 0 to 100%", function()
    local probe = parx.process.exec(PARX, {"--stats", "-e", ""}, {timeout = 30})
    if not (probe and probe.status == 0 and probe.stderr:find("parx --stats:", 1, true)) then
      pending("this parx has no --stats report yet (parx.trace)")
      return
    end
    local r = assert(parx.process.exec(PARX, {"--workers", "2", "--stats", ROOT .. "scripts/examples/sum_squares.lua"},
                                       {timeout = 60}))
    assert.equal(0, r.status, r.stderr)
    assert.truthy(r.stdout:find("333333833333500000", 1, true), r.stdout)
    assert.truthy(r.stderr:find("2 workers", 1, true), r.stderr)
    for _, vm in ipairs({"main", "worker 1", "worker 2"}) do
      assert.truthy(r.stderr:find("\n  " .. vm .. " ", 1, true), vm .. " in:\n" .. r.stderr)
    end
    local S = after(r.stderr, "Speedup S = ")
    assert.truthy(S > 0, r.stderr)
    local P = after(r.stderr, "parallel fraction ")
    assert.truthy(P >= 0 and P <= 100, r.stderr)
  end)
  it("the sum-of-squares example takes n, sums exactly past 64 bits, and its --stats run reports S > 0 and P in 0..100%", function()
    local r = assert(parx.process.exec(PARX, {"--workers", "2", "--stats", ROOT .. "scripts/examples/sum_squares.lua",
                                              "1e7"}, {timeout = 60}))
    assert.equal(0, r.status, r.stderr)
    -- n (n + 1) (2n + 1) / 6 for n = 10^7: 69 bits
    assert.equal("1 到 10000000 的平方和为:333333383333335000000\n", r.stdout)
    local S = after(r.stderr, "Speedup S = ")
    assert.truthy(S > 0, r.stderr)
    local P = after(r.stderr, "parallel fraction ")
    assert.truthy(P >= 0 and P <= 100, r.stderr)
  end)
end)
