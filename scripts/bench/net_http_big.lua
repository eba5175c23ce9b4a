-- net_http_big.lua -- one large body: REPS sequential parx.http.get of URL
-- (a keep-alive connection), after one warm-up.  Prints
-- "parx <median ms> <min ms> <max ms> <bytes> <peak RSS growth KiB>", the
-- growth (VmHWM) measured from after the warm-up; with "sink" as the third
-- argument the body streams to a function that only counts it.
-- Usage: parx net_http_big.lua URL [reps=9] [sink]
local URL = assert(arg[1], "usage: net_http_big.lua URL [reps] [sink]")
local REPS = tonumber(arg[2]) or 9
local http = parx.http
local opts
if arg[3] == "sink" then
  local n = 0
  opts = {sink = function(chunk) n = n + #chunk end}
  function opts.size() local s = n; n = 0; return s end
end

local function get()
  local r = assert(http.get(URL, opts and {sink = opts.sink}))
  assert(r.status == 200, r.status)
  return opts and opts.size() or #r.body
end

local function kb(field)
  for l in io.lines("/proc/self/status") do
    local v = l:match("^" .. field .. ":%s*(%d+)")
    if v then return tonumber(v) end
  end
end

local bytes = get()
collectgarbage()
local before = kb("VmRSS")
local t = {}
for i = 1, REPS do
  local t0 = parx.now()
  assert(get() == bytes)
  t[i] = (parx.now() - t0) * 1e3
end
table.sort(t)
print(string.format("parx %.2f %.2f %.2f %d %d", t[math.floor(#t / 2) + 1], t[1], t[#t], bytes,
                    kb("VmHWM") - before))
