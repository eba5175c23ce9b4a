-- net_http.lua -- CONC concurrent HTTP GETs in one parx VM: CONC tasks,
-- each doing PER sequential parx.http.get of URL.  Prints
-- "<requests per second> <seconds> <requests>".
-- Usage: parx net_http.lua URL [conc=200] [per=10]
local URL = assert(arg[1], "usage: net_http.lua URL [conc] [per]")
local CONC = tonumber(arg[2]) or 200
local PER = tonumber(arg[3]) or 10
local http = parx.http

local function worker()
  local ok = 0
  for _ = 1, PER do
    local r = assert(http.get(URL))
    if r.status == 200 and #r.body == 1024 then ok = ok + 1 end
  end
  return ok
end

local t0 = parx.now()
local tasks = {}
for i = 1, CONC do tasks[i] = parx.async(worker) end
local ok = 0
for _, n in ipairs(parx.gather(tasks)) do ok = ok + n end
local secs = parx.now() - t0
assert(ok == CONC * PER, "some requests failed")
print(string.format("%.0f %.3f %d", ok / secs, secs, ok))
