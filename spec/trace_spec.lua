-- Traces (--trace, parx.trace), the flight recorder's dumps and
-- parx.stats(): traced runs of known programs, parsed and checked for what
-- a reader of the timeline relies on.  Runs build/parx (PARX_BIN) as a
-- child process where a whole run is traced.
local json = require "dkjson"

local PARX = os.getenv("PARX_BIN") or "build/parx"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- file(path) -> its contents or nil; file(path, data) writes data.
local function file(path, data)
  local f = io.open(path, data and "wb" or "rb")
  if not f then return nil end
  local r = data and f:write(data) or f:read("*a")
  f:close()
  return data and path or r
end

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. q(tmp))

-- run(args) -> status, stdout, stderr (a hang guard of 60 s).
local function run(args, env)
  local out, err = tmp .. "/out", tmp .. "/err"
  local cmd = string.format("{ %s timeout 60 %s %s; } </dev/null >%s 2>%s; echo $?", env or "", q(PARX), args,
                            q(out), q(err))
  local p = assert(io.popen(cmd))
  local status = tonumber(p:read("*a"))
  p:close()
  return status, file(out) or "", file(err) or ""
end

-- Trace the script `code` with --workers 2; the decoded file.
local function traced(code, extra)
  local script = file(tmp .. "/script.lua", code)
  local path = tmp .. "/trace.json"
  os.remove(path)
  local status, out, err = run("--workers 2 --trace " .. q(path) .. " " .. (extra or "") .. " " .. q(script))
  local text = file(path)
  assert(text, "no trace written: " .. err)
  local doc, _, msg = json.decode(text)
  assert(doc, "not JSON: " .. tostring(msg))
  return doc.traceEvents, status, out, err
end

local function each(events, pred)
  local r = {}
  for _, e in ipairs(events) do
    if pred(e) then r[#r + 1] = e end
  end
  return r
end

local function track_names(events)
  local names = {}
  for _, e in ipairs(each(events, function(e) return e.ph == "M" and e.name == "thread_name" end)) do
    names[e.tid] = e.args.name
  end
  return names
end

-- Slices on one track nest or do not overlap (the format's rule, which
-- viewers rely on).  Times are µs with three decimals: 2 ns of slack.
local function assert_well_formed(events)
  local tracks = {}
  for _, e in ipairs(events) do
    if e.ph == "X" then
      assert.is_number(e.ts)
      assert.is_true(e.dur >= 0)
      local key = e.pid .. ":" .. e.tid
      tracks[key] = tracks[key] or {}
      table.insert(tracks[key], e)
    end
  end
  for key, list in pairs(tracks) do
    table.sort(list, function(a, b)
      if a.ts ~= b.ts then return a.ts < b.ts end
      return a.dur > b.dur
    end)
    local stack = {}
    for _, s in ipairs(list) do
      while #stack > 0 and stack[#stack].ts + stack[#stack].dur <= s.ts + 0.002 do stack[#stack] = nil end
      local top = stack[#stack]
      if top then
        assert(s.ts + s.dur <= top.ts + top.dur + 0.002,
               ("track %s: %s at %.3f+%.3f overlaps %s at %.3f+%.3f"):format(key, s.name, s.ts, s.dur, top.name,
                                                                               top.ts, top.dur))
      end
      stack[#stack + 1] = s
    end
  end
end

describe("--trace", function()
  it("a pool.map of 8 items over 2 workers: one track per VM, chunks with their items on the worker that ran them", function()
    local events, status = traced([[
      local r = parx.pool.map(function(x)
        local s = 0
        for i = 1, 200000 do s = s + i % 7 end
        return x * x
      end, {1, 2, 3, 4, 5, 6, 7, 8}, {chunksize = 1})
      assert(#r == 8)
    ]])
    assert.equal(0, status)
    assert_well_formed(events)
    local names = track_names(events)
    assert.equal("main", names[0])
    assert.equal("worker 1", names[1])
    assert.equal("worker 2", names[2])
    local seen = {}
    local chunks = each(events, function(e) return e.cat == "pool.chunk" end)
    assert.is_true(#chunks >= 8)
    for _, c in ipairs(chunks) do
      -- On the track of the VM that ran it, inside a run slice of the task
      -- that ran it.
      assert.equal(c.args.vm, c.tid)
      assert.is_true(c.tid == 1 or c.tid == 2)
      local inside = each(events, function(e)
        return e.cat == "run" and e.tid == c.tid and e.args.task == c.args.task and e.ts <= c.ts + 0.002 and
                 c.ts + c.dur <= e.ts + e.dur + 0.002
      end)
      assert.equal(1, #inside)
      assert.equal(c.args.first, c.args.last)
      assert.equal("pool chunk: items " .. c.args.first .. "-" .. c.args.last, c.name)
      seen[c.args.first] = true
    end
    for i = 1, 8 do assert.is_true(seen[i], "item " .. i) end
  end)

  it("a parx.pool.new pool's own VMs have tracks of their own, with the chunks and slices of the tasks they ran", function()
    local events, status, out, err = traced([[
      local p = parx.pool.new{workers = 2}
      local r = p:map(function(x)
        local s = 0
        for i = 1, 200000 do s = s + i % 7 end
        return x * x
      end, {1, 2, 3, 4, 5, 6, 7, 8}, {chunksize = 1})
      assert(#r == 8)
      local function where() parx.sleep(0.01) return require("parx.c.task").vm_id() end
      print(p:submit(where):join())
      p:close()
      p:join()
    ]])
    assert.equal(0, status, err)
    assert_well_formed(events)
    local names = track_names(events)
    -- Numbered after the runtime's 2 workers, which this run never started.
    assert.equal("pool worker 3", names[3])
    assert.equal("pool worker 4", names[4])
    local chunks = each(events, function(e) return e.cat == "pool.chunk" end)
    assert.is_true(#chunks >= 8)
    for _, c in ipairs(chunks) do
      assert.equal(c.args.vm, c.tid)
      assert.is_true(c.tid == 3 or c.tid == 4, "chunk on track " .. c.tid)
    end
    -- The submitted task's run slice is on the track of the VM it ran on.
    local vm = tonumber(out:match("^(%d+)\n"))
    assert.is_true(vm == 3 or vm == 4, out)
    local sleeps = each(events, function(e) return e.name == "sleep" and e.args.vm ~= 0 end)
    assert.equal(1, #sleeps)
    assert.equal(vm, sleeps[1].args.vm)
    local runs = each(events, function(e) return e.cat == "run" and e.args.task == sleeps[1].args.task end)
    assert.is_true(#runs >= 2) -- before and after its sleep
    for _, e in ipairs(runs) do assert.equal(vm, e.tid) end
  end)

  it("a TCP stream's reads and writes say the peer they wait on, in the trace and in a dump", function()
    local events, status, out, err = traced([[
      local tcp = require "parx.tcp"
      local got = parx.channel()
      local srv = tcp.listen("127.0.0.1", 0, function(s)
        parx.sleep(0.05) -- the client's readline parks meanwhile
        io.write(parx.trace.dump())
        s:write("hi\n")
        local n = 0
        for chunk in function() return s:read() end do n = n + #chunk end
        got:send(n)
      end)
      local c = tcp.connect("127.0.0.1", srv.port)
      assert(c:readline() == "hi")
      -- More than the kernel takes at once: the write parks until sent.
      assert(c:write(string.rep("x", 32 * 2^20)))
      c:close()
      assert(got:recv() == 32 * 2^20)
      srv:close()
      print("port " .. srv.port)
    ]])
    assert.equal(0, status, err)
    assert_well_formed(events)
    local port = out:match("port (%d+)\n")
    assert.truthy(port, out)
    local peer = "127.0.0.1:" .. port
    local reads, writes = {}, {}
    for _, e in ipairs(events) do
      if e.ph == "X" and e.name == "tcp read" then reads[#reads + 1] = e end
      if e.ph == "X" and e.name == "stream write" then writes[#writes + 1] = e end
    end
    local client_read = false
    for _, e in ipairs(reads) do
      assert.matches("^127%.0%.0%.1:%d+$", e.args.host)
      client_read = client_read or e.args.host == peer
    end
    assert.is_true(client_read, "no tcp read wait on " .. peer)
    assert.is_true(#writes >= 1, "the big write never parked")
    for _, e in ipairs(writes) do assert.equal(peer, e.args.host) end
    -- The dump, taken while the client's readline waited.
    assert.matches("parked on tcp read %(host " .. peer:gsub("%p", "%%%0") .. "%)", out)
  end)

  it("names run slices by the function's source and the task's label", function()
    local events = traced([[
      local function download(url)
        parx.trace.label("url " .. url)
        return url
      end
      local function square(x) return x * x end
      parx.spawn(square, 3):join()
      parx.async(download, 7):join()
    ]])
    local names = {}
    for _, e in ipairs(events) do
      if e.cat == "run" then names[e.name] = true end
    end
    assert.is_true(names["square@script.lua:5"])
    assert.is_true(names["url 7"])
    assert.is_true(names["main chunk@script.lua:0"])
  end)

  it("a channel pipeline: waits name their channel, flows go from each send to its receive", function()
    local events = traced([[
      local a, b = parx.channel(0), parx.channel(0)
      local stage = parx.spawn(function(inp, out)
        for v in inp:iter() do out:send(v * 2) end
        out:close()
      end, a, b)
      local feeder = parx.async(function()
        for i = 1, 5 do a:send(i) end
        a:close()
      end)
      local sum = 0
      for v in b:iter() do sum = sum + v end
      assert(sum == 30)
      stage:join()
      feeder:join()
    ]])
    assert_well_formed(events)
    local waits = each(events, function(e) return e.cat == "wait.chan" end)
    assert.is_true(#waits > 0)
    for _, w in ipairs(waits) do
      assert.is_number(w.args.channel)
      assert.is_true(w.name == "channel recv" or w.name == "channel send")
      -- On the waiting task's own track.
      assert.is_true(w.tid >= 1000000)
      assert.equal(1000000 + w.args.task, w.tid)
    end
    local starts, ends = {}, 0
    for _, e in ipairs(events) do
      if e.ph == "s" and e.cat == "send" then starts[e.id] = e end
    end
    for _, e in ipairs(events) do
      if e.ph == "f" and e.cat == "send" and starts[e.id] then
        ends = ends + 1
        assert.is_true(e.ts >= starts[e.id].ts - 0.002)
      end
    end
    assert.is_true(ends > 0, "no flow from a send to its receive")
    local spawn_flows = each(events, function(e) return e.ph == "s" and e.cat == "spawn" end)
    assert.is_true(#spawn_flows >= 2)
  end)

  it("the runnable-tasks counter has one sample per change of its value", function()
    local events = traced([[
      local ch = parx.channel(0)
      local t = parx.async(function() for v in ch:iter() do end end)
      for i = 1, 200 do ch:send(i) end
      ch:close()
      t:join()
    ]])
    local last, samples = {}, 0
    for _, e in ipairs(events) do
      if e.ph == "C" and e.name:match("^runnable tasks") then
        samples = samples + 1
        assert.is_true(last[e.name] ~= e.args.value, "a repeated sample of " .. e.name)
        last[e.name] = e.args.value
      end
    end
    assert.is_true(samples > 0)
  end)

  it("a sleep is a wait on the task's track", function()
    local events = traced("parx.async(function() parx.sleep(0.02) end):join()")
    local sleeps = each(events, function(e) return e.cat == "wait.sleep" end)
    assert.equal(1, #sleeps)
    assert.equal("sleep", sleeps[1].name)
    assert.equal(1000000 + sleeps[1].args.task, sleeps[1].tid)
    local names = track_names(events)
    assert.matches("^task %d+ ", names[sleeps[1].tid])
  end)

  it("a failing task: the trace is written and the run fails", function()
    local events, status, _, err = traced([[
      local function fail() error("boom") end
      parx.spawn(fail):join()
    ]])
    assert.equal(1, status)
    assert.matches("boom", err)
    assert_well_formed(events)
    local failed = each(events, function(e) return e.cat == "run" and e.name == "fail@script.lua:1" end)
    assert.equal(1, #failed)
  end)

  it("waits say what they were on: a file's path, the host of a lookup, a connect and an HTTP request, a command", function()
    local data = tmp .. "/data.txt"
    local events, status, _, err = traced(([[
      local fs, dns, tcp, http = require "parx.fs", require "parx.dns", require "parx.tcp", require "parx.http"
      fs.writefile(%q, "hello")
      assert(fs.readfile(%q) == "hello")
      assert(fs.stat(%q).size == 5)
      dns.resolve("localhost")
      assert(not tcp.connect("127.0.0.1", 1))
      assert(not http.get("http://127.0.0.1:1/x"))
      assert(parx.process.exec("true").status == 0)
      local p = parx.process.spawn("true")
      assert(p:wait() == 0)
    ]]):format(data, data, data))
    assert.equal(0, status, err)
    assert_well_formed(events)
    local on = {}
    for _, e in ipairs(events) do
      if e.ph == "X" and e.cat == "wait.io" then on[e.name] = e.args end
    end
    assert.equal(data, on["fs.writefile"].path)
    assert.equal(data, on["fs.readfile"].path)
    assert.equal(data, on["fs.stat"].path)
    assert.equal("localhost", on["dns resolve"].host)
    assert.equal("127.0.0.1:1", on["tcp connect"].host)
    assert.equal("127.0.0.1:1", on["http request"].host)
    assert.equal("true", on["process exec"].cmd)
    assert.is_number(on["process wait"].pid)
  end)

  it("a GPU wait names its op", function()
    local events, status, _, err = traced([[
      local A = parx.array("float64", {200, 200})
      local C = parx.gpu.matmul(A, A)
      assert(parx.array.is(C))
    ]])
    assert.equal(0, status, err)
    local gpu = each(events, function(e) return e.ph == "X" and e.cat == "wait.gpu" end)
    assert.is_true(#gpu >= 1, "no GPU wait")
    assert.matches("matmul", gpu[1].args.op) -- "matmul (host arrays)" on a GPU, "cpu matmul" without
    assert.is_nil(gpu[1].args.op:match("^gpu "))
  end)

  it("a channel wait is never shown another wait's path", function()
    local events = traced(([[
      local fs = require "parx.fs"
      fs.writefile(%q, "x")
      local c = parx.channel()
      local t = parx.async(function() c:send(1) end)
      c:recv()
      t:join()
    ]]):format(tmp .. "/x.txt"))
    for _, e in ipairs(each(events, function(e) return e.cat == "wait.chan" or e.cat == "wait.task" end)) do
      assert.is_nil(e.args.path)
    end
  end)

  it("parx.spawn{name = ...} and parx.async{name = ...} name the task's slices and track", function()
    local events = traced([[
      local t = parx.spawn({name = "url 3"}, function() parx.sleep(0.01) return 1 end)
      local a = parx.async({name = "local 4"}, function() parx.sleep(0.01) return 1 end)
      t:join()
      a:join()
    ]])
    local runs, names = {}, track_names(events)
    for _, e in ipairs(events) do
      if e.cat == "run" then runs[e.name] = e end
    end
    assert.truthy(runs["url 3"], "no slice named url 3")
    assert.truthy(runs["local 4"], "no slice named local 4")
    assert.is_true(runs["url 3"].tid == 1 or runs["url 3"].tid == 2)
    assert.equal(0, runs["local 4"].tid)
    assert.equal("task " .. runs["url 3"].args.task .. " url 3", names[1000000 + runs["url 3"].args.task])
  end)

  it("fails at start, with a parx: message and status 1, when the file cannot be written", function()
    local status, out, err = run("--trace " .. q(tmp .. "/no/such/dir/t.json") .. " -e 'print(\"ran\")'")
    assert.equal(1, status)
    assert.equal("", out)
    assert.matches("^parx: cannot write trace: .*no/such/dir/t.json: No such file or directory\n$", err)
    status, out, err = run("--timeline " .. q(tmp .. "/no/such/dir/t.svg") .. " -e 'print(\"ran\")'")
    assert.equal(1, status)
    assert.matches("^parx: cannot write trace: ", err)
  end)
end)

describe("parx.trace from a script", function()
  it("start, mark, stop and events: the session's events as Chrome trace-event tables", function()
    assert.is_false(parx.trace.tracing())
    assert.is_true(parx.trace.start())
    assert.has_error(function() parx.trace.start() end, "parx.trace.start: a trace is already running")
    parx.trace.mark("here")
    parx.spawn(function() return 1 end):join()
    assert.is_true(parx.trace.stop())
    assert.is_false(parx.trace.stop())
    local events = parx.trace.events()
    assert.is_true(#events > 0)
    local marks = each(events, function(e) return e.ph == "i" and e.cat == "mark" end)
    assert.equal(1, #marks)
    assert.equal("here", marks[1].name)
    local runs = each(events, function(e) return e.ph == "X" and e.cat == "run" end)
    assert.is_true(#runs > 0)
    for _, e in ipairs(runs) do
      assert.is_number(e.ts)
      assert.is_number(e.dur)
      assert.is_number(e.args.task)
    end
    assert_well_formed(events)
  end)

  it("start(path) writes the file at stop; an unwritable path is an error value", function()
    local path = tmp .. "/script_trace.json"
    assert.is_true(parx.trace.start(path))
    parx.trace.mark("x")
    assert.is_true(parx.trace.stop())
    local doc = json.decode(file(path))
    assert.is_table(doc.traceEvents)
    local ok, msg = parx.trace.start(tmp .. "/no/such/dir/x.json")
    assert.is_nil(ok)
    assert.matches("^cannot write trace: ", msg)
    assert.is_false(parx.trace.tracing())
  end)

  it("mark and label want a string", function()
    assert.has_error(function() parx.trace.mark(1) end, "parx.trace.mark: name must be a string")
    assert.has_error(function() parx.trace.label() end, "parx.trace.label: name must be a string")
  end)
end)

describe("parx.stats", function()
  it("counts per VM and for the whole run, with the names the --stats report reads", function()
    local ch = parx.channel()
    parx.pool.map(function(x) return {x} end, {1, 2, 3, 4})
    ch:send({1, 2, 3})
    ch:recv()
    local s = parx.stats()
    assert.is_number(s.wall)
    assert.equal(parx.pool.size(), s.workers)
    assert.equal(s.workers + 1, #s.vms)
    assert.equal("main", s.vms[1].name)
    assert.equal("worker 1", s.vms[2].name)
    local tasks, busy = 0, 0
    for _, v in ipairs(s.vms) do
      for _, k in ipairs({"busy", "parked", "idle", "task_p50", "task_p99"}) do
        assert.is_number(v[k])
        assert.is_true(v[k] >= 0)
      end
      assert.is_true(v.task_p50 <= v.task_p99)
      tasks, busy = tasks + v.tasks, busy + v.busy
    end
    assert.is_true(tasks > 0)
    assert.is_true(busy > 0)
    assert.is_true(s.messages > 0)
    assert.is_true(s.bytes_marshalled > 0)
    assert.is_true(s.channel_ops >= 2)
    assert.is_number(s.gpu_time)
    assert.is_number(s.mpi_time)
    -- Each VM thread's CPU time: growing as it works.
    local before = parx.stats().vms[1].cpu
    local x = 0
    for i = 1, 3e7 do x = x + i % 3 end
    assert.is_true(x > 0)
    local after = parx.stats().vms[1].cpu
    assert.is_number(before)
    assert.is_true(after > before, ("main's CPU time %s then %s"):format(before, after))
  end)

  it("lists parx.pool.new's own VMs after the workers, named and marked as a pool's", function()
    local status, out, err = run("--workers 2 -e " .. q([[
      parx.pool.map(function(x) return x end, {1, 2, 3})
      local p = parx.pool.new{workers = 2}
      p:map(function(x) parx.sleep(0.01) return x end, {1, 2, 3, 4}, {chunksize = 1})
      local s = parx.stats()
      for _, v in ipairs(s.vms) do print(v.name, tostring(v.pool), v.tasks) end
      print("workers", s.workers, s.pool_workers)
      p:close()
      p:join()
    ]]))
    assert.equal(0, status, err)
    local rows = {}
    for name, pool, tasks in out:gmatch("([^\n\t]+)\t(%a+)\t(%d+)\n") do rows[#rows + 1] = {name, pool, tonumber(tasks)} end
    assert.equal(5, #rows, out)
    assert.same({"main", "nil"}, {rows[1][1], rows[1][2]})
    assert.same({"worker 1", "nil"}, {rows[2][1], rows[2][2]})
    assert.same({"worker 2", "nil"}, {rows[3][1], rows[3][2]})
    assert.same({"pool worker 3", "true"}, {rows[4][1], rows[4][2]})
    assert.same({"pool worker 4", "true"}, {rows[5][1], rows[5][2]})
    assert.is_true(rows[4][3] + rows[5][3] >= 2, out) -- the map's runners
    assert.matches("workers\t2\t2\n", out)
  end)

  it("--stats prints a report at exit, after the script's output", function()
    local status, out, err = run("--workers 2 --stats -e " ..
                                 q("parx.pool.map(function(x) return x end, {1, 2, 3}) print('done')"))
    assert.equal(0, status)
    assert.equal("done\n", out)
    assert.is_true(#err > 0)
    assert.not_matches("stack traceback", err)
  end)

  it("--timeline writes the picture, or says in one line that it cannot", function()
    local svg = tmp .. "/t.svg"
    local status, _, err = run("--workers 2 --timeline " .. q(svg) .. " --timeline-by task -e " ..
                               q("parx.spawn(function() end):join()"))
    assert.equal(0, status)
    local text = file(svg) or ""
    assert.is_true(text:find("<svg", 1, true) ~= nil or err:match("^parx: %-%-timeline: .*\n$") ~= nil, err)
    status, _, err = run("--timeline-by rows -e ''")
    assert.equal(1, status)
    assert.matches("--timeline%-by needs 'vm' or 'task'", err)
  end)
end)

-- The dump that follows a deadlock report on stderr (both checked there).
local function deadlock_dump(err)
  assert.matches("parx: deadlock: all tasks are asleep", err)
  local dump = err:match("parx: every task at the deadlock:\n(.*)")
  assert.truthy(dump, err)
  return dump
end

describe("the flight recorder", function()
  it("kill -USR1 on a process stuck on a channel prints every task with its traceback and wait, and it goes on", function()
    local script = file(tmp .. "/stuck.lua", [[
local ch = parx.channel()
local function consumer(c)
  local v = c:recv()
  return v
end
local t = parx.spawn(consumer, ch)
parx.async(function() parx.sleep(60) end)
print("ready")
io.stdout:flush()
ch:recv()
]])
    local out, err = tmp .. "/stuck.out", tmp .. "/stuck.err"
    -- Start it, wait for "ready", signal it, give it a moment, check that
    -- it is still alive, then end it.
    local sh = string.format([[
TMPDIR=%s %s --workers 2 %s >%s 2>%s &
pid=$!
for i in $(seq 100); do grep -q ready %s 2>/dev/null && break; sleep 0.1; done
kill -USR1 $pid
for i in $(seq 100); do grep -q "recent timeline" %s 2>/dev/null && break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then echo alive; fi
kill -TERM $pid
wait $pid
]], q(tmp), q(PARX), q(script), q(out), q(err), q(out), q(err))
    local p = assert(io.popen(sh))
    local status = p:read("*a")
    p:close()
    assert.equal("alive\n", status)
    local text = file(err)
    assert.matches("parx: SIGUSR1: every task of process %d+\n", text)
    assert.matches("main VM:\n", text)
    -- The main chunk, parked on the channel, with its traceback.
    assert.matches("task %d+: parked on channel recv %(channel 1%) for [%d.]+ s\n", text)
    assert.matches("stuck.lua:10: in main chunk", text)
    -- The consumer on a worker, with its own.
    assert.matches("worker %d:\n  task %d+: parked on channel recv %(channel 1%)", text)
    assert.matches("stuck.lua:3: in function <[^>]*stuck.lua:2>", text)
    assert.matches("parked on sleep for", text)
    -- The recent timeline, as JSON.
    local path = text:match("the recent timeline %(flight recorder%): (%S+)\n")
    assert.truthy(path)
    local doc = json.decode(file(path))
    os.remove(path)
    local waits = each(doc.traceEvents, function(e) return e.cat == "wait.chan" end)
    assert.is_true(#waits >= 2)
  end)

  it("a dump says what each task waits on: a FIFO's path, the task's name", function()
    local fifo = tmp .. "/fifo"
    os.remove(fifo)
    assert.equal(0, select(3, os.execute("mkfifo " .. q(fifo))) or 0)
    local t = parx.async({name = "fifo reader"}, function()
      local text = parx.fs.readfile(fifo)
      return text
    end)
    parx.sleep(0.05)
    local path = tmp .. "/dump2.json"
    local text = parx.trace.dump(path)
    assert.matches("task %d+ %(fifo reader%): parked on fs.readfile %(path " .. fifo:gsub("%p", "%%%0") .. "%)", text)
    local doc = json.decode(file(path))
    local waits = each(doc.traceEvents, function(e) return e.name == "fs.readfile" end)
    assert.equal(fifo, waits[#waits].args.path)
    local w = io.open(fifo, "w")
    w:write("hi")
    w:close()
    assert.equal("hi", t:join())
  end)

  it("a deadlock report is followed by every task's wait and traceback and the recent timeline", function()
    local script = file(tmp .. "/deadlock.lua", [[
local c = parx.channel()
parx.spawn({name = "consumer"}, function(ch)
  local v = ch:recv() -- line 3
  return v
end, c)
c:recv()
]])
    local status, _, err = run(q(script), "TMPDIR=" .. q(tmp))
    assert.equal(1, status)
    local dump = deadlock_dump(err)
    assert.matches("task %d+ %(consumer%): parked on channel recv %(channel %d+%) for [%d.]+ s\n", dump)
    assert.matches("deadlock.lua:3: in function", dump)
    local path = dump:match("the recent timeline %(flight recorder%): (%S+)\n")
    assert.truthy(path, dump)
    local doc = json.decode(file(path))
    os.remove(path)
    assert.is_true(#each(doc.traceEvents, function(e) return e.cat == "wait.chan" end) >= 1)
  end)

  it("a dump and a deadlock report list the tasks of parx.pool.new's own VMs, with their waits and tracebacks", function()
    local script = file(tmp .. "/pooldl.lua", [[
local p = parx.pool.new{workers = 2}
local ch = parx.channel()
local function stuck(c)
  local v = c:recv() -- line 4
  return v
end
local t = p:submit(stuck, ch)
parx.sleep(0.05)
io.write(parx.trace.dump(os.getenv("TMPDIR") .. "/pooldump.json"))
io.stdout:flush()
t:join()
]])
    local status, out, err = run("--workers 2 " .. q(script), "TMPDIR=" .. q(tmp))
    assert.equal(1, status)
    -- parx.trace.dump: both VMs of the pool, the stuck task with its wait
    -- and traceback.
    assert.matches("pool worker 3:\n", out)
    assert.matches("pool worker 4:\n", out)
    assert.matches("pool worker %d:\n  task %d+: parked on channel recv %(channel 1%) for [%d.]+ s\n", out)
    assert.matches("pooldl.lua:4: in function", out)
    local doc = json.decode(file(tmp .. "/pooldump.json"))
    local names = track_names(doc.traceEvents)
    assert.equal("pool worker 3", names[3])
    assert.equal("pool worker 4", names[4])
    local waits = each(doc.traceEvents, function(e) return e.cat == "wait.chan" and e.args.vm ~= 0 end)
    assert.equal(1, #waits)
    assert.is_true(waits[1].args.vm == 3 or waits[1].args.vm == 4)
    -- The deadlock report, and the dump after it.
    local dump = deadlock_dump(err)
    assert.matches("\n  task %d+ on pool worker %d: waiting on channel recv", err)
    assert.matches("pool worker %d:\n  task %d+: parked on channel recv %(channel 1%)", dump)
    assert.matches("pooldl.lua:4: in function", dump)
    local path = dump:match("the recent timeline %(flight recorder%): (%S+)\n")
    if path then os.remove(path) end
  end)

  it("an uncaught error that ends the run lists the tasks still alive; alone, it adds nothing", function()
    local script = file(tmp .. "/fails.lua", [[
local c = parx.channel()
parx.async({name = "waiter"}, function() return c:recv() end)
parx.sleep(0.01)
error("boom")
]])
    local status, _, err = run(q(script), "TMPDIR=" .. q(tmp))
    assert.equal(1, status)
    assert.matches("fails.lua:4: boom", err)
    assert.matches("parx: the tasks still alive when the error ended the run:\n", err)
    assert.matches("task %d+ %(waiter%): parked on channel recv", err)
    local path = err:match("the recent timeline %(flight recorder%): (%S+)\n")
    assert.truthy(path, err)
    os.remove(path)
    status, _, err = run(q(file(tmp .. "/alone.lua", "error('alone')")), "TMPDIR=" .. q(tmp))
    assert.equal(1, status)
    assert.matches("alone.lua:1: alone\nstack traceback:\n", err)
    assert.not_matches("still alive", err)
    assert.not_matches("recent timeline", err)
  end)

  it("parx.trace.dump returns every live task; the recent timeline goes to the path given", function()
    local ch = parx.channel()
    local t = parx.spawn(function(c) return c:recv() end, ch)
    parx.sleep(0.05)
    local path = tmp .. "/dump.json"
    local text, err = parx.trace.dump(path)
    assert.is_nil(err)
    assert.matches("running %(this dump%)", text)
    assert.matches("parked on channel recv %(channel %d+%)", text)
    local doc = json.decode(file(path))
    assert.is_table(doc.traceEvents)
    ch:send(1)
    t:join()
    assert.has_error(function() parx.trace.dump(1) end, "parx.trace.dump: path must be a string")
  end)
end)

describe("traces of an MPI job", function()
  local mpiexec = pcall(require, "parx.c.mpi") and os.execute("command -v mpiexec >/dev/null 2>&1")
  mpiexec = mpiexec == true or mpiexec == 0
  if not mpiexec then
    it("needs MPI", function() pending("parx built without MPI, or no mpiexec on PATH (openmpi-bin; make deps)") end)
    return
  end

  it("under mpiexec each rank writes its own trace, pid = rank + 1, its MPI waits naming peer and tag; merge joins them", function()
    local root = os.execute("test \"$(id -u)\" = 0")
    local flags = "--oversubscribe" .. ((root == true or root == 0) and " --allow-run-as-root" or "")
    local base = tmp .. "/mpi.json"
    local cmd = ("OMPI_MCA_plm_rsh_agent=false timeout -k 5 60 mpiexec %s -n 2 %s --trace %s spec/mpi/trace.lua"):format(
      flags, q(PARX), q(base))
    local p = assert(io.popen(("{ %s; } </dev/null >/dev/null 2>%s; echo $?"):format(cmd, q(tmp .. "/mpi.err"))))
    local status = tonumber(p:read("*a"))
    p:close()
    local err = file(tmp .. "/mpi.err") or ""
    assert.equal(0, status, err)
    local docs = {}
    for rank = 0, 1 do
      local path = tmp .. "/mpi.rank" .. rank .. ".json"
      docs[rank] = json.decode((assert(file(path), "no " .. path .. ": " .. err)))
      for _, e in ipairs(docs[rank].traceEvents) do assert.equal(rank + 1, e.pid) end
      local names = each(docs[rank].traceEvents, function(e) return e.name == "process_name" end)
      assert.equal("parx rank " .. rank, names[1].args.name)
    end
    local recvs = each(docs[1].traceEvents, function(e) return e.cat == "wait.mpi" and e.name == "mpi recv" end)
    assert.equal(1, #recvs)
    assert.equal(0, recvs[1].args.peer)
    assert.equal(5, recvs[1].args.tag)
    -- One view: both ranks' tracks, times on one clock (the receive ends
    -- after the sender marked the send, give or take a millisecond).
    local out = tmp .. "/merged.json"
    assert.is_true(parx.trace.merge(out, {tmp .. "/mpi.rank0.json", tmp .. "/mpi.rank1.json"}))
    local merged = json.decode(file(out)).traceEvents
    assert_well_formed(merged)
    local mark = each(merged, function(e) return e.ph == "i" and e.name == "sending" end)[1]
    local recv = each(merged, function(e) return e.name == "mpi recv" end)[1]
    assert.equal(1, mark.pid)
    assert.equal(2, recv.pid)
    assert.is_true(recv.ts + recv.dur >= mark.ts - 1000, "the receive ended before the send")
    assert.has_error(function() parx.trace.merge(out, {}) end, "parx.trace.merge: paths must be a list of file names")
  end)
end)
