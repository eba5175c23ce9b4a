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
-- Usage: parx scripts/examples/download.lua [count] [delay_seconds] [--svg PREFIX]
--
-- With --svg PREFIX the charts are also drawn the way the seeds draw them
-- with matplotlib's barh (one bar per download, seconds across, on one time
-- axis) as SVG files: PREFIX-serial.svg, PREFIX-threads.svg and
-- PREFIX-async.svg (parx.timeline).
local tcp, http = parx.tcp, parx.http

local args, svg = {}, nil
for i, a in ipairs(arg or {}) do
  if arg[i - 1] == "--svg" then svg = a
  elseif a ~= "--svg" then args[#args + 1] = a end
end
if arg and arg[#arg] == "--svg" then error("--svg needs a file name prefix", 0) end
local COUNT = tonumber(args[1]) or 8
local DELAY = tonumber(args[2]) or 0.25

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

-- The same chart as an SVG file (--svg): each download a bar on its own
-- row, parked on the network from its start to its stop.
local function draw_svg(file, title, results, scale)
  local events = {}
  for i, r in ipairs(results) do
    events[i] = {ph = "X", cat = "wait.io", name = "GET " .. URLS[i]:match("/file/%d+$"),
                 ts = r[1] * 1e6, dur = (r[2] - r[1]) * 1e6, pid = 1, tid = 0,
                 args = {task = i, bytes = r[3]}}
  end
  local ok, err = require("parx.timeline").write(file, events,
    {by = "task", title = title, t0 = 0, t1 = scale * 1e6})
  if not ok then error(err, 0) end
  print("wrote " .. file)
end

-- Serial: results = [download(url, base) for url in URLS]
local base = parx.now()
local serial = {}
for i, url in ipairs(URLS) do serial[i] = download(url, base) end
local t_serial = visualize_runtimes("serial", serial)

-- Two threads: with ThreadPoolExecutor(2) as ex: ex.map(download, URLS).
-- The function travels to the workers, so it takes what it needs as
-- arguments (starmap: fn(url, base)) instead of upvalues.
base = parx.now()
local jobs = {}
for i, url in ipairs(URLS) do jobs[i] = {url, base} end
local threaded = parx.pool.starmap(function(url, t0)
  local start = parx.now() - t0
  local resp = assert(parx.http.get(url))
  return {start, parx.now() - t0, #resp.body}
end, jobs, {workers = 2, chunksize = 1})
local t_threads = visualize_runtimes("two worker threads (pool.starmap, workers = 2)", threaded, t_serial)

-- Concurrent: one task per URL, gathered in order.
base = parx.now()
local tasks = {}
for i, url in ipairs(URLS) do tasks[i] = parx.async(download, url, base) end
local concurrent = parx.gather(tasks)
local t_async = visualize_runtimes("parx.async + parx.gather", concurrent, t_serial)

print(("speed-up: %.1fx on two threads, %.1fx with a task per download (the downloads "
       .. "overlap instead of queueing)"):format(t_serial / t_threads, t_serial / t_async))
if svg then
  draw_svg(svg .. "-serial.svg", ("serial: %d downloads in %.2f s"):format(COUNT, t_serial), serial, t_serial)
  draw_svg(svg .. "-threads.svg", ("two threads: %d downloads in %.2f s"):format(COUNT, t_threads),
           threaded, t_serial)
  draw_svg(svg .. "-async.svg", ("a task per download: %d downloads in %.2f s"):format(COUNT, t_async),
           concurrent, t_serial)
end
server:close()
