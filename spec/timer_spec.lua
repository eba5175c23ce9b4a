-- parx.timer / parx.every: callbacks run as tasks; timers end cleanly.
-- No assertion is about how long anything took, only about order and counts.

local function wait_until(pred, limit)
  local t0 = parx.now()
  while not pred() do
    if parx.now() - t0 > (limit or 5) then return false end
    parx.sleep(0.002)
  end
  return true
end

describe("parx.timer", function()
  it("runs the callback once with its arguments, as a task", function()
    local got
    local t = parx.timer(0.01, function(a, b, c)
      parx.sleep(0.001) -- a task may park
      got = {a, b, c}
    end, 1, nil, "three")
    assert.is_true(t:active())
    assert.is_true(wait_until(function() return got ~= nil end))
    assert.same({1, nil, "three"}, got)
    assert.is_false(t:active())
    assert.is_false(t:stop())
  end)

  it("fires in the order of the delays", function()
    local order = {}
    for _, d in ipairs({30, 10, 20, 0}) do
      parx.timer(d / 1000, function() order[#order + 1] = d end)
    end
    assert.is_true(wait_until(function() return #order == 4 end))
    assert.same({0, 10, 20, 30}, order)
  end)

  it("does not let a parking callback delay the others", function()
    local log = {}
    parx.timer(0, function()
      log[#log + 1] = "a start"
      parx.sleep(0.1)
      log[#log + 1] = "a end"
    end)
    parx.timer(0, function() log[#log + 1] = "b" end)
    parx.timer(0.01, function() log[#log + 1] = "c" end)
    assert.is_true(wait_until(function() return #log == 4 end))
    assert.same({"a start", "b", "c", "a end"}, log)
  end)

  it("keeps firing after a callback raised", function()
    local n = 0
    parx.timer(0, function() error("boom") end)
    parx.timer(0, function() n = n + 1 end)
    parx.timer(0.005, function() n = n + 1 end)
    assert.is_true(wait_until(function() return n == 2 end))
  end)

  it("does not fire once stopped", function()
    local fired = false
    local t = parx.timer(0.02, function() fired = true end)
    assert.is_true(t:stop())
    assert.is_false(t:active())
    parx.sleep(0.05)
    assert.is_false(fired)
  end)

  it("keeps a dropped timer alive until it fires", function()
    local fired = false
    parx.timer(0.01, function() fired = true end)
    collectgarbage()
    collectgarbage()
    assert.is_true(wait_until(function() return fired end))
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() parx.timer(-1, function() end) end)
    assert.has_error(function() parx.timer("soon", function() end) end)
    assert.has_error(function() parx.timer(1) end)
    assert.has_error(function() parx.every(0, function() end) end)
    assert.has_error(function() parx.every(0.1, "f") end)
  end)

  it("handles 100,000 pending timers", function()
    local n, N = 0, 100000
    local function cb() n = n + 1 end
    for i = 1, N do parx.timer((i % 11) / 1000, cb) end
    assert.is_true(wait_until(function() return n == N end, 60))
    assert.equal(0, require("parx.timer").pending())
  end)
end)

describe("parx.every", function()
  it("repeats until stopped", function()
    local n = 0
    local t = parx.every(0.005, function(step) n = n + step end, 1)
    assert.is_true(wait_until(function() return n >= 3 end))
    assert.is_true(t:stop())
    local seen = n
    parx.sleep(0.03)
    assert.equal(seen, n)
    assert.is_false(t:active())
  end)

  it("can stop itself from its callback", function()
    local n = 0
    local t
    t = parx.every(0.002, function()
      n = n + 1
      if n == 3 then t:stop() end
    end)
    assert.is_true(wait_until(function() return not t:active() end))
    parx.sleep(0.02)
    assert.equal(3, n)
  end)

  it("works in worker VMs", function()
    local r = parx.spawn(function()
      local n = 0
      local t = parx.every(0.002, function() n = n + 1 end)
      local fired = false
      parx.timer(0.001, function() fired = true end)
      while n < 3 do parx.sleep(0.002) end
      t:stop()
      return n >= 3, fired
    end)
    local ok, fired = r:join()
    assert.is_true(ok)
    assert.is_true(fired)
  end)

  it("lets the script end once stopped (no handle left)", function()
    local bin = os.getenv("PARX_BIN") or "build/parx"
    local r = parx.process.exec(bin, {"-e", [[
      local n = 0
      local t
      t = parx.every(0.001, function() n = n + 1; if n == 5 then t:stop() end end)
      parx.timer(0.001, function() io.write("once ") end)
    ]]}, {timeout = 20})
    assert.is_table(r)
    assert.equal(0, r.status)
    assert.equal("once ", r.stdout)
  end)
end)

describe("parx.timer bounds (issue 9)", function()
  it("a repeating timer stopped while its tick is queued does not run again", function()
    -- c, b and a expire in one batch (the VM is busy past their due time);
    -- c parks, so the dispatcher queues b and a before b runs; b stops a,
    -- whose tick is then already in the queue.
    local ran = false
    local a
    parx.timer(0.01, function() parx.sleep(0) end)
    parx.timer(0.01, function() a:stop() end)
    a = parx.every(0.01, function() ran = true end)
    local t0 = os.clock()
    while os.clock() - t0 < 0.05 do end
    parx.sleep(0.1)
    assert.is_false(ran)
    assert.is_false(a:active())
  end)

  it("a timer or an interval of math.huge never fires and can be stopped", function()
    local fired = false
    local t = parx.timer(math.huge, function() fired = true end)
    local e = parx.every(math.huge, function() fired = true end)
    local big = parx.timer(1e300, function() fired = true end)
    assert.is_true(t:active())
    parx.sleep(0.05)
    assert.is_false(fired)
    assert.is_true(t:stop())
    assert.is_true(e:stop())
    assert.is_true(big:stop())
    assert.is_false(fired)
    -- NaN is no number of seconds
    assert.has_error(function() parx.timer(0/0, function() end) end)
    assert.has_error(function() parx.every(0/0, function() end) end)
  end)
end)
