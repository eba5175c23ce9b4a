-- timers.lua: 100,000 timers of 0..10 ms in one VM.
--   parx scripts/bench/timers.lua [callback|sleep] [N]
-- callback: parx.timer(delay, fn) per timer (like setTimeout / call_later);
-- sleep:    one parx.async task per timer doing parx.sleep(delay) (like
--           asyncio tasks awaiting asyncio.sleep).
-- Prints: "<variant> <seconds from first start to last firing> <VmHWM kB>".
local variant = arg[1] or "callback"
local N = tonumber(arg[2]) or 100000

local function peak_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

local fired = 0
local t0 = parx.now()
if variant == "callback" then
  local function cb() fired = fired + 1 end
  for i = 1, N do parx.timer((i % 11) / 1000, cb) end
  while fired < N do parx.sleep(0.001) end
else
  local sleep = parx.sleep
  local function body(d)
    sleep(d)
    fired = fired + 1
  end
  local tasks = {}
  for i = 1, N do tasks[i] = parx.async(body, (i % 11) / 1000) end
  for i = 1, N do tasks[i]:join() end
end
local elapsed = parx.now() - t0
assert(fired == N)
print(string.format("%s %.4f %d", variant, elapsed, peak_kb()))
