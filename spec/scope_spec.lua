-- parx.scope (structured concurrency) and parx.gather's return_errors.

-- A task's string error, without the traceback the runtime may append.
local function msg(e)
  if type(e) ~= "string" then return e end
  return (e:gsub("\nstack traceback:.*$", ""))
end

describe("parx.scope", function()
  it("an error group's entries hold each error as raised, its traceback apart", function()
    for _, how in ipairs({"spawn", "async"}) do
      local ok, g = pcall(parx.scope, function(s)
        s[how](s, function() error("in " .. how, 0) end)
        s[how](s, function() error({code = 3}) end)
      end)
      assert.is_false(ok)
      assert.is_true(#g.errors >= 1)
      for _, e in ipairs(g.errors) do
        if type(e.error) == "string" then
          assert.equal("in " .. how, e.error)
        else
          assert.equal(3, e.error.code)
        end
        assert.matches("^stack traceback:\n", e.traceback)
        assert.matches("scope_spec%.lua:%d+:", e.traceback)
      end
    end
  end)

  it("waits for every task started in it and returns the body's results", function()
    local finished = parx.atomic(0)
    local a, b = parx.scope(function(s, x)
      for i = 1, 3 do
        s:spawn(function(f) parx.sleep(0.01); f:add(1) end, finished)
        s:async(function() parx.sleep(0.01); finished:add(1) end)
      end
      return x, "b"
    end, "a")
    assert.equal(6, finished:get())
    assert.equal("a", a)
    assert.equal("b", b)
  end)

  it("the first failure cancels the rest, whose cleanup runs, and raises an error group", function()
    local cleaned = parx.atomic(0)
    local ok, g = pcall(parx.scope, function(s)
      for _ = 1, 3 do
        s:spawn(function(c)
          local ok, err = pcall(parx.sleep, 10)
          c:add(1)
          error(err, 0)
        end, cleaned)
      end
      s:spawn(function() parx.sleep(0.02); error("boom", 0) end)
    end)
    assert.is_false(ok)
    assert.is_true(parx.is_error_group(g))
    assert.equal(3, cleaned:get())
    assert.equal(1, #g.errors)
    assert.equal("boom", msg(g.errors[1].error))
    assert.equal("failed", g.errors[1].task:status())
  end)

  it("collects every failure, with its task, and tostring lists them", function()
    local tasks = {}
    local ok, g = pcall(parx.scope, function(s)
      tasks[1] = s:async(function() error("first", 0) end)
      tasks[2] = s:async(function() error({code = 2}) end)
    end)
    assert.is_false(ok)
    assert.equal(2, #g.errors)
    local seen = {}
    for _, e in ipairs(g.errors) do seen[e.task] = e.error end
    assert.equal("first", msg(seen[tasks[1]]))
    assert.equal(2, seen[tasks[2]].code)
    local text = tostring(g)
    assert.truthy(text:match("^parx%.scope: 2 tasks failed"))
    assert.truthy(text:find("first", 1, true))
  end)

  it("an error in the body cancels the tasks and is in the group", function()
    local cleaned = parx.atomic(0)
    local started = parx.event()
    local ok, g = pcall(parx.scope, function(s)
      s:spawn(function(c, started)
        started:set()
        pcall(parx.sleep, 10)
        c:add(1)
      end, cleaned, started)
      started:wait()
      error("body failed", 0)
    end)
    assert.is_false(ok)
    assert.equal(1, cleaned:get())
    assert.equal(1, #g.errors)
    assert.is_nil(g.errors[1].task)
    assert.equal("body failed", g.errors[1].error)
  end)

  it("refuses new tasks once it has ended", function()
    local saved
    parx.scope(function(s) saved = s end)
    assert.has_error(function() saved:spawn(print) end,
      "parx.scope: the scope has ended; start tasks inside its function")
  end)

  it("cancelling the scope's task cancels its tasks", function()
    local cleaned = parx.atomic(0)
    local started = parx.event()
    local outer = parx.async(function()
      parx.scope(function(s)
        s:spawn(function(c, started) started:set(); pcall(parx.sleep, 10); c:add(1) end,
          cleaned, started)
      end)
    end)
    started:wait()
    outer:cancel()
    assert.is_false(pcall(outer.join, outer))
    local deadline = parx.now() + 10
    while cleaned:get() == 0 and parx.now() < deadline do parx.sleep(0.005) end
    assert.equal(1, cleaned:get())
  end)

  it("s:cancel() ends the scope without an error", function()
    local r = parx.scope(function(s)
      s:async(parx.sleep, 10)
      s:cancel()
      return "ok"
    end)
    assert.equal("ok", r)
  end)
end)

describe("parx.gather with return_errors", function()
  it("returns each error in place and cancels nothing", function()
    local slow_done = parx.atomic(0)
    local a = parx.spawn(function() return 1 end)
    local b = parx.spawn(function() error("bad", 0) end)
    local c = parx.spawn(function(d) parx.sleep(0.02); d:add(1); return 3 end, slow_done)
    local x, y, z = parx.gather(a, b, c, {return_errors = true})
    assert.equal(1, x)
    assert.equal("bad", msg(y))
    assert.equal(3, z)
    assert.equal(1, slow_done:get())
    local list = parx.gather({a, b}, {return_errors = true})
    assert.equal(1, list[1])
    assert.equal("bad", msg(list[2]))
  end)

  it("without return_errors raises as before", function()
    local b = parx.spawn(function() error("bad", 0) end)
    local ok, err = pcall(parx.gather, b, {return_errors = false})
    assert.is_false(ok)
    assert.equal("bad", msg(err))
  end)

  it("rejects unknown options, naming the known ones", function()
    local a = parx.spawn(function() return 1 end)
    assert.has_error(function() parx.gather(a, {return_exceptions = true}) end,
      "gather: unknown option 'return_exceptions' (known: return_errors)")
  end)
end)

describe("Task:on_done", function()
  it("runs fn(t) on the caller's VM once the task has ended, whatever the outcome", function()
    local ok_t = parx.spawn(function() parx.sleep(0.01); return 1 end)
    local bad_t = parx.spawn(function() error("no", 0) end)
    local seen = {}
    local c1 = ok_t:on_done(function(t) seen[#seen + 1] = t:status(); return "cb" end)
    local c2 = bad_t:on_done(function(t) seen[#seen + 1] = t:status() end)
    assert.equal("cb", c1:join())
    c2:join()
    table.sort(seen)
    assert.same({"done", "failed"}, seen) -- `seen` is this VM's table: fn ran here
    assert.is_false(pcall(bad_t.join, bad_t))
  end)

  it("runs at once for a task that has already ended", function()
    local t = parx.async(function() return 1 end)
    t:join()
    local ran = false
    t:on_done(function() ran = true end):join()
    assert.is_true(ran)
  end)

  it("rejects a callback that is not a function", function()
    local t = parx.async(function() end)
    assert.has_error(function() t:on_done(42) end,
      "bad argument #1 to 'on_done' (function expected, got number)")
  end)
end)
