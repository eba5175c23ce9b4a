-- parx.signal: handlers run as tasks; default actions stay without one.
local P = parx.process
local bin = os.getenv("PARX_BIN") or "build/parx"

local function wait_until(pred)
  local t0 = parx.now()
  while not pred() do
    if parx.now() - t0 > 5 then return false end
    parx.sleep(0.002)
  end
  return true
end

describe("parx.signal", function()
  it("runs the handler as a task with the signal's name", function()
    local got = {}
    local s = parx.signal("usr1", function(name)
      parx.sleep(0.001) -- handlers may park
      got[#got + 1] = name
    end)
    assert.is_true(s:active())
    assert.is_true(P.kill(P.pid(), "usr1"))
    assert.is_true(wait_until(function() return #got == 1 end))
    assert.equal("usr1", got[1])
    assert.is_true(s:stop())
    assert.is_false(s:active())
    assert.is_false(s:stop())
  end)

  it("accepts SIG names and numbers and runs every handler", function()
    local a, b = 0, 0
    local s1 = parx.signal("SIGUSR2", function() a = a + 1 end)
    local s2 = parx.signal(12, function() b = b + 1 end) -- SIGUSR2 on Linux
    P.kill(P.pid(), "usr2")
    assert.is_true(wait_until(function() return a == 1 and b == 1 end))
    s1:stop()
    s2:stop()
  end)

  it("raises on bad names and handlers", function()
    assert.has_error(function() parx.signal("nosuch", function() end) end)
    assert.has_error(function() parx.signal("kill", function() end) end)
    assert.has_error(function() parx.signal("int") end)
    for _, n in ipairs({5.5, 0, 65, -1, 0 / 0, 1 / 0, 2 ^ 40}) do
      assert.has_error(function() parx.signal(n, function() end) end, nil, tostring(n))
    end
  end)

  it("does not keep a script running", function()
    local r = P.exec(bin, {"-e", [[
      parx.signal("hup", function() end)
      io.write("done")
    ]]}, {timeout = 20})
    assert.is_table(r)
    assert.equal(0, r.status)
    assert.equal("done", r.stdout)
  end)

  it("handles SIGINT in a child script, which then exits by itself", function()
    local p = assert(P.spawn(bin, {"-e", [[
      local s
      s = parx.signal("int", function(name)
        io.write("caught " .. name .. "\n")
        io.stdout:flush()
        s:stop()
      end)
      io.write("ready\n")
      io.stdout:flush()
      while s:active() do parx.sleep(0.01) end
    ]]}, {timeout = 20}))
    assert.equal("ready", p.stdout:readline())
    p:kill("int")
    assert.equal("caught int", p.stdout:readline())
    local status, sig = p:wait()
    assert.equal(0, status)
    assert.is_nil(sig)
  end)

  it("keeps a handler installed when its Signal object is dropped", function()
    local got = 0
    parx.signal("usr1", function() got = got + 1 end)
    collectgarbage()
    collectgarbage()
    assert.is_true(P.kill(P.pid(), "usr1"))
    assert.is_true(wait_until(function() return got == 1 end))
  end)

  it("runs the next delivery while an earlier handler is still parked", function()
    local first, second = false, false
    local release = parx.channel()
    local n = 0
    local s = parx.signal("usr2", function()
      n = n + 1
      if n == 1 then
        first = true
        release:recv() -- parks until the second delivery has run
      else
        second = true
        release:send(true)
      end
    end)
    P.kill(P.pid(), "usr2")
    assert.is_true(wait_until(function() return first end))
    P.kill(P.pid(), "usr2")
    assert.is_true(wait_until(function() return second end))
    s:stop()
  end)

  it("lets Ctrl-C end a script without a handler, workers included", function()
    local p = assert(P.spawn(bin, {"-e", [[
      local t = parx.spawn(function() parx.sleep(60) end)
      io.write("ready\n")
      io.stdout:flush()
      t:join()
    ]]}, {timeout = 20}))
    assert.equal("ready", p.stdout:readline())
    p:kill("int")
    local status, sig = p:wait()
    -- ended by the signal's default action (no status, signal 2) or by a
    -- runtime that turns SIGINT into exit status 130; not by the timeout
    -- (which returns nil, "ETIMEDOUT: ...")
    assert.is_true((status == nil and sig == 2) or status == 130, tostring(sig))
  end)
end)
