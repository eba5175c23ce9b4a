-- parx.select over channels.

local channel, select = parx.channel, parx.select

describe("parx.select", function()
  it("fires the ready receive and returns its index, value and ok", function()
    local a, b = channel(), channel()
    b:send("bee")
    local i, v, ok = select({{a, "recv"}, {b, "recv"}})
    assert.equal(2, i)
    assert.equal("bee", v)
    assert.is_true(ok)
  end)

  it("fires a send case only when it can proceed", function()
    local full, empty = channel(1), channel(1)
    full:send(0)
    local i = select({{full, "send", 1}, {empty, "send", 2}})
    assert.equal(2, i)
    assert.equal(1, #full)
    assert.same({2, true}, {empty:recv()})
  end)

  it("reports a closed channel as nil, false", function()
    local a = channel()
    a:close()
    assert.same({1, nil, false}, {select({{a, "recv"}}, {timeout = 1})})
  end)

  it("raises on a send case to a closed channel", function()
    local a = channel(1)
    a:close()
    assert.has_error(function() select({{a, "send", 1}}) end)
  end)

  it("with timeout = 0 never parks", function()
    local a = channel()
    assert.same({nil, "timeout"}, {select({{a, "recv"}}, {timeout = 0})})
    a:send(5)
    assert.same({1, 5, true}, {select({{a, "recv"}}, {timeout = 0})})
  end)

  it("honours a timeout", function()
    local a, b = channel(), channel(0)
    local t0 = parx.now()
    local i, why = select({{a, "recv"}, {b, "send", 1}}, {timeout = 0.05})
    assert.is_nil(i)
    assert.equal("timeout", why)
    assert.is_true(parx.now() - t0 >= 0.04)
    -- the expired select left no entry behind
    assert.is_false(b:try_send(1))
    a:send(1)
    assert.same({1, true}, {a:try_recv()})
  end)

  it("rejects unknown option names", function()
    local a = channel(1)
    local ok, err = pcall(select, {{a, "recv"}}, {timout = 0})
    assert.is_false(ok)
    assert.matches("unknown option 'timout'", err)
  end)

  it("timeout = math.huge means no limit (a select that can never fire is a deadlock)", function()
    local a = channel(1)
    local t = parx.async(function() return select({{a, "recv"}}, {timeout = math.huge}) end)
    parx.sleep(0.01)
    a:send("late")
    local i, v = t:join()
    assert.equal(1, i)
    assert.equal("late", v)
  end)

  it("an empty select with a timeout just waits", function()
    assert.same({nil, "timeout"}, {select({}, {timeout = 0.01})})
    assert.has_error(function() select({}) end)
  end)

  it("does not starve any ready case", function()
    local chans, cases, counts = {}, {}, {}
    for k = 1, 4 do
      chans[k] = channel()
      for _ = 1, 2000 do chans[k]:send(k) end
      cases[k] = {chans[k], "recv"}
      counts[k] = 0
    end
    for _ = 1, 2000 do
      local i, v = select(cases)
      assert.equal(i, v)
      counts[i] = counts[i] + 1
    end
    for k = 1, 4 do assert.is_true(counts[k] > 300, "case " .. k .. " starved: " .. counts[k]) end
  end)

  it("parks until another worker makes a case ready", function()
    local a, b = channel(), channel()
    local t = parx.spawn(function(b)
      parx.sleep(0.02)
      b:send("late")
    end, b)
    local i, v, ok = select({{a, "recv"}, {b, "recv"}})
    assert.same({2, "late", true}, {i, v, ok})
    t:join()
  end)

  it("a parked select fires exactly one case", function()
    for _ = 1, 50 do
      local a, b = channel(), channel()
      local t = parx.spawn(function(a, b)
        return select({{a, "recv"}, {b, "recv"}})
      end, a, b)
      parx.sleep(0.001)
      a:send(1)
      b:send(2)
      local i, v = t:join()
      assert.equal(i, v)
      assert.equal(1, #a + #b) -- the other value is still queued
    end
  end)

  it("matches a parked select's send with a receiver on another worker", function()
    local a = channel(0)
    local t = parx.spawn(function(a)
      return select({{a, "send", "sent"}})
    end, a)
    assert.same({"sent", true}, {a:recv()})
    assert.equal(1, t:join())
  end)

  it("a cancelled select leaves no entry behind", function()
    local a, b = channel(), channel()
    local t = parx.async(function() return select({{a, "recv"}, {b, "recv"}}, {timeout = 10}) end)
    parx.sleep(0.01)
    t:cancel()
    assert.is_false(pcall(t.join, t))
    a:send(1)
    b:send(2)
    assert.equal(1, #a)
    assert.equal(1, #b)
  end)

  it("checks its cases", function()
    local a = channel()
    assert.has_error(function() select({{a, "peek"}}) end)
    assert.has_error(function() select({{{}, "recv"}}) end)
    assert.has_error(function() select({1}) end)
    assert.has_error(function() select({{a, "recv"}}, {timeout = -1}) end)
  end)
end)
