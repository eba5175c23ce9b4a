-- parx tasks: spawn, async, Task methods, gather, wait, as_completed,
-- timeout, sleep, now, errors and deadlock reports.

local PARX = os.getenv("PARX_BIN") or "build/parx"

-- Run a script in its own parx process (for what ends a process: deadlocks).
-- Returns its output and exit status.
local function run_script(code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local p = io.popen(("timeout -k 5 60 %s %s 2>&1; echo \"exit=$?\""):format(PARX, path))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  local status = tonumber(out:match("exit=(%d+)%s*$"))
  return out, status
end

local function workers() return parx.pool.size() end

-- Keep every worker busy (without parking) until release() is called.
local function occupy_workers()
  local flag = parx.atomic(0)
  local started = parx.atomic(0)
  local busy = {}
  for i = 1, workers() do
    busy[i] = parx.spawn(function(flag, started)
      started:add(1)
      while flag:get() == 0 do end
    end, flag, started)
  end
  while started:get() < workers() do parx.sleep(0.001) end
  return function()
    flag:set(1)
    for _, t in ipairs(busy) do t:join() end
  end
end

describe("parx.spawn", function()
  it("runs fn(...) on a worker and join returns every result", function()
    local t = parx.spawn(function(a, b) return a + b, a * b, nil, "s" end, 3, 4)
    local r = {t:join()}
    assert.same({7, 12, nil, "s"}, r)
    assert.is_true(t:done())
    assert.equal("done", t:status())
    -- join again: the same results
    assert.equal(7, (t:join()))
  end)

  it("runs on a worker VM, not on the caller's", function()
    local vm = parx.spawn(function() return require("parx.c.task").vm_id() end):join()
    assert.is_true(vm >= 1)
  end)

  it("copies tables across, nested and with cycles", function()
    local t = {1, {2, {3}}, s = "x"}
    t.me = t
    local r = parx.spawn(function(v) assert(v.me == v); v.added = true; return v end, t):join()
    assert.equal(r, r.me)
    assert.is_true(r.added)
    assert.is_nil(t.added)
    assert.equal(3, r[2][2][1])
  end)

  it("re-raises a task's error at join with the worker's traceback", function()
    local t = parx.spawn(function() error("spawned failure") end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("spawned failure", err)
    assert.matches("stack traceback", err)
    assert.matches("task_spec", err)
    assert.equal("failed", t:status())
    -- the worker carries on
    assert.equal(5, parx.spawn(function() return 5 end):join())
  end)

  it("re-raises an error raised without position (level 0) as it is", function()
    local t = parx.spawn(function() error("plain message", 0) end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("plain message", tostring(err))
  end)

  it("re-raises a table error value", function()
    local t = parx.spawn(function() error({code = 42}) end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.same({code = 42}, err)
  end)

  it("names an argument that cannot be sent", function()
    local co = coroutine.create(function() end)
    local ok, err = pcall(parx.spawn, function(x) return x end, co)
    assert.is_false(ok)
    assert.matches("coroutine", err)
  end)

  it("lets a spawned function use pcall and xpcall", function()
    -- regression: the runtime's own pcall (a Lua function) could not be sent
    local t = parx.spawn(function()
      local ok, msg = pcall(function() error("caught") end)
      local ok2, msg2 = xpcall(function() error("again") end, function(e) return "handled " .. e end)
      return ok, msg, ok2, msg2
    end)
    local ok, msg, ok2, msg2 = t:join()
    assert.is_false(ok)
    assert.matches("caught", msg)
    assert.is_false(ok2)
    assert.matches("handled .*again", msg2)
  end)
end)

describe("parx.async", function()
  it("runs on the calling VM and shares its upvalues", function()
    local counter = 0
    local t = parx.async(function(n) counter = counter + n; return counter end, 5)
    assert.equal(5, t:join())
    assert.equal(5, counter)
    local vm = parx.async(function() return require("parx.c.task").vm_id() end):join()
    assert.equal(require("parx.c.task").vm_id(), vm)
  end)

  it("interleaves with the caller at parks", function()
    local log = {}
    local a = parx.async(function()
      log[#log + 1] = "a1"; parx.sleep(0.02); log[#log + 1] = "a2"
    end)
    local b = parx.async(function()
      log[#log + 1] = "b1"; parx.sleep(0.01); log[#log + 1] = "b2"
    end)
    parx.gather(a, b)
    assert.same({"a1", "b1", "b2", "a2"}, log)
  end)

  it("re-raises its error at join", function()
    local t = parx.async(function() error("async failure") end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("async failure", err)
  end)

  it("refuses to join itself", function()
    local t
    t = parx.async(function() parx.sleep(0); return t:join() end)
    assert.has_error(function() t:join() end)
  end)
end)

describe("Task methods", function()
  it("result(timeout) returns nil, 'timeout' first, then the results", function()
    local t = parx.spawn(function() parx.sleep(0.2); return "late" end)
    local r, why = t:result(0.01)
    assert.is_nil(r)
    assert.equal("timeout", why)
    assert.equal("late", t:result())
  end)

  it("wait(timeout) says whether the task finished", function()
    local t = parx.spawn(function() parx.sleep(0.1) end)
    assert.is_false(t:wait(0))
    assert.is_false(t:done())
    assert.is_true(t:wait(5))
    assert.is_true(t:done())
  end)

  it("cancel() removes a task that has not started", function()
    local release = occupy_workers()
    local ran = parx.atomic(0)
    local t = parx.spawn(function(ran) ran:set(1) end, ran)
    assert.equal("queued", t:status())
    assert.is_true(t:cancel())
    assert.equal("cancelled", t:status())
    release()
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("cancelled", tostring(err))
    parx.sleep(0.01)
    assert.equal(0, ran:get())
  end)

  it("cancel() stops a running task at its next park", function()
    local reached = parx.atomic(0)
    local t = parx.spawn(function(reached)
      parx.sleep(30)
      reached:set(1)
    end, reached)
    while t:status() ~= "running" do parx.sleep(0.001) end
    parx.sleep(0.01)
    assert.is_true(t:cancel())
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("cancelled", tostring(err))
    assert.equal("cancelled", t:status())
    assert.equal(0, reached:get())
  end)

  it("a pcall inside the task cannot swallow its cancellation", function()
    local after = false
    local t = parx.async(function()
      pcall(parx.sleep, 30)
      after = true
      parx.sleep(30)
    end)
    parx.sleep(0.01)
    t:cancel()
    assert.has_error(function() t:join() end)
    assert.is_false(after)
    assert.equal("cancelled", t:status())
  end)

  it("cancel() of a finished task returns false", function()
    local t = parx.spawn(function() return 1 end)
    t:join()
    assert.is_false(t:cancel())
    assert.equal("done", t:status())
  end)
end)

describe("parx.gather", function()
  it("returns the results in order, as values or as a list", function()
    local a = parx.spawn(function() parx.sleep(0.03); return "a" end)
    local b = parx.spawn(function() return "b" end)
    local c = parx.async(function() parx.sleep(0.01); return "c" end)
    assert.same({"a", "b", "c"}, {parx.gather(a, b, c)})
    assert.same({"a", "b", "c"}, parx.gather({a, b, c}))
  end)

  it("raises the first error and cancels the tasks still running", function()
    local slow = parx.spawn(function() parx.sleep(30); return "slow" end)
    local bad = parx.spawn(function() parx.sleep(0.01); error("gather failure") end)
    local ok, err = pcall(parx.gather, slow, bad)
    assert.is_false(ok)
    assert.matches("gather failure", err)
    assert.is_true(slow:wait(10))
    assert.equal("cancelled", slow:status())
  end)
end)

describe("parx.wait and parx.as_completed", function()
  it("wait returns the finished and pending tasks", function()
    local fast = parx.spawn(function() return 1 end)
    local slow = parx.spawn(function() parx.sleep(0.5) end)
    local done, pending = parx.wait({fast, slow}, {timeout = 0.1})
    assert.same({fast}, done)
    assert.same({slow}, pending)
    done, pending = parx.wait({slow})
    assert.same({slow}, done)
    assert.same({}, pending)
  end)

  it("wait with any returns at the first finished task", function()
    local a = parx.spawn(function() parx.sleep(0.3) end)
    local b = parx.spawn(function() parx.sleep(0.01) end)
    local done, pending = parx.wait({a, b}, {any = true})
    assert.same({b}, done)
    assert.same({a}, pending)
    a:join()
  end)

  it("as_completed yields tasks in the order they finish", function()
    local tasks = {}
    for i, d in ipairs({0.15, 0.01, 0.08}) do
      tasks[i] = parx.spawn(function(d, i) parx.sleep(d); return i end, d, i)
    end
    local order = {}
    for t in parx.as_completed(tasks) do order[#order + 1] = t:join() end
    assert.same({2, 3, 1}, order)
  end)
end)

describe("parx.timeout, parx.sleep and parx.now", function()
  it("timeout returns fn's results or nil, 'timeout'", function()
    assert.equal(7, parx.timeout(5, function(x) return x + 1 end, 6))
    local r, why = parx.timeout(0.02, function() parx.sleep(30) end)
    assert.is_nil(r)
    assert.equal("timeout", why)
  end)

  it("now is monotonic and sleep waits at least that long", function()
    local t0 = parx.now()
    assert.is_number(t0)
    parx.sleep(0.05)
    local t1 = parx.now()
    assert.is_true(t1 - t0 >= 0.045)
    parx.sleep(0)
    assert.is_true(parx.now() >= t1)
  end)

  it("sleeping tasks on one worker all run concurrently", function()
    local tasks = {}
    for i = 1, 4 * workers() do
      tasks[i] = parx.spawn(function() parx.sleep(0.1); return true end)
    end
    for _, t in ipairs(tasks) do assert.is_true(t:join()) end
  end)
end)

describe("deadlocks", function()
  it("are reported when main joins a task that joins itself", function()
    local out, status = run_script([[
      local t = parx.spawn(function() return parx.current():join() end)
      t:join()
    ]])
    assert.matches("deadlock", out)
    assert.matches("join", out)
    assert.is_true(status ~= 0 and status ~= 124 and status ~= 137)
  end)

  it("are reported when main joins a task waiting on a never-finishing join", function()
    local out, status = run_script([[
      local never = parx.spawn(function() return parx.current():join() end)
      local t = parx.spawn(function(x) return x:join() end, never)
      t:join()
    ]])
    assert.matches("deadlock", out)
    assert.is_true(status ~= 0 and status ~= 124 and status ~= 137)
  end)

  it("can be caught in the joining task, and parx keeps working", function()
    local out, status = run_script([[
      local t = parx.spawn(function() return parx.current():join() end)
      local ok, err = pcall(t.join, t)
      print("caught", ok, (tostring(err):match("deadlock")))
      print("after", parx.spawn(function() return 6 * 7 end):join())
    ]])
    assert.matches("caught\tfalse\tdeadlock", out)
    assert.matches("after\t42", out)
  end)

  it("are reported for a pool.map whose function waits forever", function()
    local out, status = run_script([[
      parx.pool.map(function(x) return parx.current():join() end, {1, 2})
    ]])
    assert.matches("deadlock", out)
    assert.matches("pool results", out)
  end)
end)

describe("workers' search paths", function()
  -- DESIGN.md: workers search the same package.path and package.cpath as
  -- the sender, so a module found through a path the script added loads
  -- on a worker too.
  it("follow the package.path of the VM that sends code", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0 or true)
    local name = "parx_paths_probe_" .. tostring(math.random(1e9))
    local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
    f:write("return {hello = function() return 'found on the worker' end}")
    f:close()
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    local ok, a, b = pcall(function()
      local via_upvalue = require(name)
      local t1 = parx.spawn(function() return via_upvalue.hello() end)
      local t2 = parx.spawn(function(n) return require(n).hello() end, name)
      return t1:join(), t2:join()
    end)
    package.path = saved
    package.loaded[name] = nil
    os.remove(dir .. "/" .. name .. ".lua")
    os.remove(dir)
    assert.is_true(ok, a)
    assert.are.equal("found on the worker", a)
    assert.are.equal("found on the worker", b)
  end)
end)

describe("results that cannot cross VMs", function()
  it("fail the join with a message naming the result", function()
    local t = parx.spawn(function() return 1, coroutine.create(print) end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("result #2 %(a coroutine%)", err)
  end)

  it("name the error value when the error itself cannot cross", function()
    local t = parx.spawn(function() error(coroutine.create(print)) end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.matches("the error value %(a coroutine%)", err)
  end)
end)

describe("timeouts out of a timer's range (issue 9)", function()
  -- A double -> uint64 ms cast of math.huge or 1e300 is undefined and used
  -- to end the wait at once.  The rule (px_timeout_ms): math.huge or any
  -- value too large means no limit, NaN raises, a negative counts as 0.
  it("sleep(math.huge) means no limit", function()
    local t = parx.async(function() parx.sleep(math.huge); return "woke" end)
    parx.sleep(0.1)
    assert.equal("running", t:status())
    t:cancel()
    assert.is_true(t:wait(5))
    assert.equal("cancelled", t:status())
    local w = parx.spawn(function() parx.sleep(1e300); return "woke" end)
    assert.is_false(w:wait(0.1))
    w:cancel()
    assert.is_true(w:wait(5))
    assert.equal("cancelled", w:status())
  end)

  it("t:result(1e300) and t:wait(math.huge) mean no limit", function()
    local t = parx.spawn(function() parx.sleep(0.1); return "late" end)
    assert.equal("late", t:result(1e300))
    local u = parx.async(function() parx.sleep(0.1); return "late" end)
    assert.is_true(u:wait(math.huge))
    assert.equal("late", u:result(math.huge))
  end)

  it("parx.wait with timeout = math.huge means no limit", function()
    local t = parx.spawn(function() parx.sleep(0.1) end)
    local done, pending = parx.wait({t}, {timeout = math.huge})
    assert.same({t}, done)
    assert.same({}, pending)
  end)

  it("parx.timeout(math.huge, f) means no limit", function()
    assert.equal("late", parx.timeout(math.huge, function() parx.sleep(0.1); return "late" end))
    assert.equal("late", parx.timeout(1e300, function() parx.sleep(0.1); return "late" end))
  end)

  it("a NaN timeout raises and a negative one counts as 0", function()
    local nan = 0 / 0
    local t = parx.async(function() parx.sleep(0.05) end)
    assert.has_error(function() parx.sleep(nan) end)
    assert.has_error(function() t:wait(nan) end)
    assert.has_error(function() t:result(nan) end)
    assert.has_error(function() parx.wait({t}, {timeout = nan}) end)
    assert.has_error(function() parx.timeout(nan, function() end) end)
    local t0 = parx.now()
    parx.sleep(-1)
    parx.sleep(-math.huge)
    assert.is_false(t:wait(-1))
    assert.is_nil((t:result(-5)))
    assert.is_true(parx.now() - t0 < 5)
    t:join()
  end)
end)
