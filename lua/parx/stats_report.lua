-- parx.stats_report: the table `parx --stats` prints at exit, and what it
-- means for the run's speedup.
--
--   require("parx.stats_report").format(stats) -> string
--
-- stats = {wall = s, workers = n, pool_workers = m, vms = {{name, busy,
-- parked, idle, tasks, task_p50, task_p99, cpu, pool}, ...}, messages,
-- bytes_marshalled, channel_ops, gpu_time, mpi_time} (times in seconds), as
-- parx.stats() returns it.  N, the workers the speedup is measured
-- against, is n + m: the runtime's workers and the VMs of pools of their
-- own (parx.pool.new), which run beside them.
--
-- The speedup S is the busy time summed over the VMs against the wall time:
-- how many workers were kept busy on average.  Busy time is wall time
-- running tasks: a property of the program when every worker has a core.
-- On a machine whose cores other processes hold, a task waiting for a core
-- is busy without working; the VM threads' CPU time (vms[i].cpu) says how
-- much of the busy time they had a core (over the VMs that give it: a
-- pool's own VM does not), and the report says so when it is short: the wall clock then gains less than S.  Amdahl's law says a program
-- whose serial part is e (the rest, 1 - e, runs in parallel) speeds up at
-- most 1 / (e + (1 - e) / N) on N workers; the Karp–Flatt metric turns that
-- round and measures e from the speedup a run got:
--   e = (1/S - 1/N) / (1 - 1/N)
-- e is clamped to 0..1 and reported with the parallel fraction P = 1 - e;
-- with them the report says what more workers could give: 1 / (e + P/N')
-- for N' workers, 1 / e at most with any number.
local format, concat, rep = string.format, table.concat, string.rep
local max, huge = math.max, math.huge

local M = {}

local function num(v)
  v = tonumber(v)
  if v == nil or v ~= v or v == huge or v == -huge then return 0 end
  return v
end

-- Seconds as a person reads them: 1.25 s, 12.3 ms, 85 µs, 0 s.
local function secs(s)
  s = num(s)
  if s == 0 then return "0 s" end
  if s >= 100 then return format("%.0f s", s) end
  if s >= 1 then return format("%.2f s", s) end
  if s >= 1e-3 then return format("%.3g ms", s * 1e3) end
  return format("%.3g µs", s * 1e6)
end
M.secs = secs

local function count(n)
  n = num(n)
  if n >= 1e9 then return format("%.1fG", n / 1e9) end
  if n >= 1e6 then return format("%.1fM", n / 1e6) end
  if n >= 1e4 then return format("%.1fk", n / 1e3) end
  return format("%d", n)
end

local function bytes(n)
  n = num(n)
  if n >= 2 ^ 30 then return format("%.1f GiB", n / 2 ^ 30) end
  if n >= 2 ^ 20 then return format("%.1f MiB", n / 2 ^ 20) end
  if n >= 2 ^ 10 then return format("%.1f KiB", n / 2 ^ 10) end
  return format("%d bytes", n)
end

local function pct(part, whole)
  if whole <= 0 then return "" end
  return format(" %3.0f%%", 100 * part / whole)
end

-- The display width of s: UTF-8 continuation bytes take no column (µs).
local function width(s) return #s:gsub("[\128-\191]", "") end

local function pad(s, w, right)
  local n = w - width(s)
  if n <= 0 then return s end
  return right and rep(" ", n) .. s or s .. rep(" ", n)
end

-- amdahl(e, n) -> the speedup bound of serial fraction e on n workers.
local function amdahl(e, n) return 1 / (e + (1 - e) / n) end
M.amdahl = amdahl

-- karp_flatt(S, N) -> e, clamped to 0..1; nil when N < 2 or S is unknown.
function M.karp_flatt(S, N)
  if N < 2 or S <= 0 then return nil end
  local e = (1 / S - 1 / N) / (1 - 1 / N)
  if e < 0 then e = 0 elseif e > 1 then e = 1 end
  return e
end

function M.format(stats)
  if type(stats) ~= "table" then error("stats_report.format: stats must be a table", 2) end
  local wall = max(num(stats.wall), 0)
  local W = max(math.floor(num(stats.workers)), 0)
  local pooled = max(math.floor(num(stats.pool_workers)), 0)
  local N = W + pooled
  local vms = type(stats.vms) == "table" and stats.vms or {}
  local out = {}
  out[#out + 1] = format("parx --stats: wall time %s, %d worker%s%s", secs(wall), W, W == 1 and "" or "s",
                         pooled > 0 and format(" and %d of pools of their own (parx.pool.new)", pooled) or "")

  -- The table: one line per VM.
  local head = {"VM", "busy", "parked", "idle", "tasks", "task p50", "task p99"}
  local rows = {head}
  local busy_sum, cpu_sum, cpu_busy, cpu_all = 0, 0, 0, true -- cpu: see the top
  for i, vm in ipairs(vms) do
    local busy = max(num(vm.busy), 0)
    busy_sum = busy_sum + busy
    if tonumber(vm.cpu) then
      cpu_sum, cpu_busy = cpu_sum + max(num(vm.cpu), 0), cpu_busy + busy
    else
      cpu_all = false
    end
    rows[#rows + 1] = {tostring(vm.name or ("vm " .. (i - 1))),
                       secs(busy) .. pct(busy, wall), secs(vm.parked) .. pct(num(vm.parked), wall),
                       secs(vm.idle) .. pct(num(vm.idle), wall), count(vm.tasks),
                       secs(vm.task_p50), secs(vm.task_p99)}
  end
  local widths = {}
  for _, r in ipairs(rows) do
    for j, cell in ipairs(r) do widths[j] = max(widths[j] or 0, width(cell)) end
  end
  for i, r in ipairs(rows) do
    local cells = {}
    for j, cell in ipairs(r) do cells[j] = pad(cell, widths[j], j > 1) end
    out[#out + 1] = "  " .. concat(cells, "  ")
    if i == 1 then
      local rule = {}
      for j = 1, #r do rule[j] = rep("-", widths[j]) end
      out[#out + 1] = "  " .. concat(rule, "  ")
    end
  end
  if #vms == 0 then out[#out + 1] = "  (no VM reported any time)" end
  out[#out + 1] = format("  messages %s, marshalled %s, channel operations %s, GPU %s, MPI %s",
                         count(stats.messages), bytes(stats.bytes_marshalled), count(stats.channel_ops),
                         secs(stats.gpu_time), secs(stats.mpi_time))
  out[#out + 1] = ""

  -- The speedup and what it says.
  if wall <= 0 or busy_sum <= 0 then
    out[#out + 1] = "Speedup: the run was too short to measure (no busy time or no wall time)."
    return concat(out, "\n") .. "\n"
  end
  local S = busy_sum / wall
  out[#out + 1] = format("Speedup S = %.2fx: the VMs were busy %s in all over %s of wall time,", S,
                         secs(busy_sum), secs(wall))
  out[#out + 1] = format("  as if %.2f of them worked all the time.", S)
  if cpu_busy > 0 then
    local share = math.min(cpu_sum / cpu_busy, 1)
    out[#out + 1] = format("  Their threads had a core for %.0f%% of it (CPU time %s%s).", 100 * share, secs(cpu_sum),
                           cpu_all and "" or ", over the VMs that give it")
    if share < 0.8 then
      out[#out + 1] = "  Other processes held the cores the rest of the time, so on this machine now the"
      out[#out + 1] = "  wall clock gains less than S from more workers."
    end
  end
  if N < 2 then
    out[#out + 1] = format("With %s there is nothing to compare against: run with --workers 2 "
                           .. "or more to measure the parallel fraction.", N == 1 and "one worker" or "no workers")
    return concat(out, "\n") .. "\n"
  end
  local e = M.karp_flatt(S, N)
  local raw = (1 / S - 1 / N) / (1 - 1 / N)
  out[#out + 1] = format("Karp-Flatt: e = (1/S - 1/N) / (1 - 1/N) = %.3f with N = %d workers%s, so", raw, N,
                         pooled > 0 and format(" (%d of them pools' own)", pooled) or "")
  if raw > 1 then
    out[#out + 1] = "  (taken as e = 1: S is 1 or less)"
  elseif raw < 0 then
    out[#out + 1] = format("  (taken as e = 0: S is above N, the main VM worked beside the %d workers)", N)
  end
  out[#out + 1] = format("  serial fraction %.0f%% (Amdahl's serial part: it ran one piece at a time) and", 100 * e)
  out[#out + 1] = format("  parallel fraction %.0f%% (P = 1 - e).", 100 * (1 - e))
  if S <= 1 then
    out[#out + 1] = "The run was as good as serial (S <= 1): more workers will not make it faster;"
    out[#out + 1] = "  look for the lock, channel or loop that serialises it."
  else
    out[#out + 1] = format("Amdahl bound 1 / (e + P/N): %.2fx on %d workers, %.2fx on %d,",
                           amdahl(e, N), N, amdahl(e, 2 * N), 2 * N)
    if e > 0 then
      out[#out + 1] = format("  and never more than 1/e = %.1fx however many workers you add.", 1 / e)
    else
      out[#out + 1] = "  with no serial part measured: the speedup should keep growing with the workers."
    end
  end
  return concat(out, "\n") .. "\n"
end

return M
