-- download.lua -- the seeds' "threads vs serial" URL download, in parx.
--
-- The Python original times urlopen() of a list of URLs, once one after
-- the other and once on a thread pool, and draws each download as a bar
-- from its start to its stop.  Here the downloads are parx.http.get calls:
-- serially, then each in its own task with parx.async + parx.gather (one
-- VM, one thread: the tasks park on the network, not the thread).
--
-- So that the example runs anywhere without the internet, it first starts
-- a small HTTP server of its own (parx.tcp, in this same script) that
-- answers each URL after a fixed delay, the way a remote server would.
--
-- Usage: parx scripts/examples/download.lua [count] [delay_seconds]
local tcp, http = parx.tcp, parx.http

local COUNT = tonumber(arg and arg[1]) or 8
local DELAY = tonumber(arg and arg[2]) or 0.25

-- The "remote" server: /file/N answers after DELAY with N kB of data.
local server = assert(tcp.listen("127.0.0.1", 0, function(s)
  local request = s:readline()
  if not request then return end
  repeat local h = s:readline() until h == nil or h == ""
  local n = tonumber(request:match("^GET /file/(%d+)")) or 0
  parx.sleep(DELAY)
  local body = string.rep("x", n * 1024)
  s:write("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" ..
          "Connection: close\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
end))

local URLS = {}
for i = 1, COUNT do
  URLS[i] = ("http://127.0.0.1:%d/file/%d"):format(server.port, i * 16)
end

-- def download(url, base): start = time.time() - base; urlopen(url); ...
local function download(url, base)
  local start = parx.now() - base
  local resp = assert(http.get(url))
  local stop = parx.now() - base
  return {start, stop, #resp.body}
end

-- def visualize_runtimes(results): plt.barh(range(len(start)), stop-start, left=start)
-- Both charts share one time axis (scale seconds), like two plots with the
-- same x range.
local function visualize_runtimes(title, results, scale)
  local total = 0
  for _, r in ipairs(results) do total = math.max(total, r[2]) end
  scale = scale or total
  local width = 50
  print(("%s: %d downloads in %.2f s"):format(title, #results, total))
  for i, r in ipairs(results) do
    local a = math.floor(r[1] / scale * width + 0.5)
    local b = math.max(a + 1, math.floor(r[2] / scale * width + 0.5))
    print(("  task %2d |%s%s%s| %5.2f - %5.2f s  %6d bytes"):format(
      i, (" "):rep(a), ("#"):rep(b - a), (" "):rep(width - b), r[1], r[2], r[3]))
  end
  print(("          0 s%s%.2f s (seconds)"):format((" "):rep(width - 8), scale))
  print()
  return total
end

-- Serial: results = [download(url, base) for url in URLS]
local base = parx.now()
local serial = {}
for i, url in ipairs(URLS) do serial[i] = download(url, base) end
local t_serial = visualize_runtimes("serial", serial)

-- Concurrent: one task per URL, gathered in order.
base = parx.now()
local tasks = {}
for i, url in ipairs(URLS) do tasks[i] = parx.async(download, url, base) end
local concurrent = parx.gather(tasks)
local t_async = visualize_runtimes("parx.async + parx.gather", concurrent, t_serial)

print(("speed-up: %.1fx (the downloads overlap instead of queueing)"):format(t_serial / t_async))
server:close()
