-- net_echo.lua -- TCP echo round trips in one parx VM: an echo server and
-- CONNS clients (tasks) in the same VM on 127.0.0.1, each client writing
-- SIZE bytes and reading them back, for SECONDS.  Prints
-- "<round trips per second> <connections>".
-- Usage: parx net_echo.lua [conns=50] [seconds=5] [size=64] [workers]
--   "workers": the server also listens on every worker VM (SO_REUSEPORT),
--   the clients stay in the main VM.
local CONNS = tonumber(arg[1]) or 50
local SECONDS = tonumber(arg[2]) or 5
local SIZE = tonumber(arg[3]) or 64
local WORKERS = arg[4] == "workers"
local tcp = parx.tcp

local server = assert(tcp.listen("127.0.0.1", 0, function(s)
  while true do
    local data = s:read()
    if not data then return end
    s:write(data)
  end
end, {backlog = 1024, workers = WORKERS}))

local running = true
local msg = string.rep("x", SIZE)
local ready = parx.waitgroup()
ready:add(CONNS)
local start = parx.channel()

local function client()
  local c = assert(tcp.connect("127.0.0.1", server.port))
  ready:done()
  start:recv()
  local n = 0
  while running do
    c:write(msg)
    c:read(SIZE)
    n = n + 1
  end
  c:close()
  return n
end

local tasks = {}
for i = 1, CONNS do tasks[i] = parx.async(client) end
ready:wait()
start:close() -- every client starts now
local t0 = parx.now()
parx.sleep(SECONDS)
running = false
local elapsed = parx.now() - t0
local total = 0
for _, n in ipairs(parx.gather(tasks)) do total = total + n end
server:close()
print(string.format("%.0f %d", total / elapsed, CONNS))
