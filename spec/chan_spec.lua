-- parx.channel: unbounded, bounded and rendezvous channels across VMs.

local channel = parx.channel

-- P producers on workers send disjoint ranges of 1..P*per; C consumers on
-- workers drain until close.  Every message must arrive exactly once:
-- count, sum and sum of squares of what the consumers saw.
local function mpmc(cap, P, C, per)
  local ch = channel(cap)
  local producers, consumers = {}, {}
  for p = 1, P do
    producers[p] = parx.spawn(function(ch, first, last)
      for i = first, last do ch:send(i) end
      return last - first + 1
    end, ch, (p - 1) * per + 1, p * per)
  end
  for c = 1, C do
    consumers[c] = parx.spawn(function(ch)
      local n, sum, sq = 0, 0, 0
      for v in ch:iter() do
        n = n + 1
        sum = sum + v
        sq = sq + v * v
      end
      return n, sum, sq
    end, ch)
  end
  for _, t in ipairs(producers) do assert.equal(per, t:join()) end
  ch:close()
  local n, sum, sq = 0, 0, 0
  for _, t in ipairs(consumers) do
    local a, b, c = t:join()
    n, sum, sq = n + a, sum + b, sq + c
  end
  local total = P * per
  assert.equal(total, n)
  assert.equal(total * (total + 1) / 2, sum)
  assert.equal(total * (total + 1) * (2 * total + 1) / 6, sq)
end

describe("parx.channel", function()
  describe("construction", function()
    it("makes unbounded, bounded and rendezvous channels", function()
      assert.equal(math.huge, channel():capacity())
      assert.equal(8, channel(8):capacity())
      assert.equal(0, channel(0):capacity())
      assert.equal(math.huge, channel(math.huge):capacity())
    end)

    it("rejects a negative or fractional capacity", function()
      local ok, err = pcall(channel, -1)
      assert.is_false(ok)
      assert.truthy(err:match("capacity must be >= 0"))
      assert.has_error(function() channel(1.5) end)
      assert.has_error(function() channel("x") end)
    end)

    it("keeps a capacity above 2^31 and rejects NaN and finite capacities beyond 2^53", function()
      assert.equal(2 ^ 40, channel(2 ^ 40):capacity())
      assert.truthy(tostring(channel(2 ^ 40)):match("^parx.channel%(1099511627776, 0 queued%)"))
      assert.has_error(function() channel(0 / 0) end)
      assert.has_error(function() channel(1e300) end)
      assert.has_error(function() channel(2 ^ 60) end)
    end)

    it("prints its kind", function()
      assert.truthy(tostring(channel(3)):match("^parx.channel%(3, 0 queued%)"))
      assert.truthy(tostring(channel()):match("unbounded"))
    end)
  end)

  describe("on one VM", function()
    it("keeps FIFO order and counts queued values with #", function()
      local ch = channel(4)
      for i = 1, 4 do ch:send(i) end
      assert.equal(4, #ch)
      for i = 1, 4 do
        local v, ok = ch:recv()
        assert.equal(i, v)
        assert.is_true(ok)
      end
      assert.equal(0, #ch)
    end)

    it("carries every kind of value", function()
      local ch = channel()
      local long = string.rep("x", 1000)
      local inner = channel(1)
      ch:send(nil)
      ch:send(true)
      ch:send(false)
      ch:send(3.25)
      ch:send("short")
      ch:send(long)
      ch:send({1, 2, {a = "b"}})
      ch:send(inner)
      local function get() local v, ok = ch:recv(); assert.is_true(ok); return v end
      assert.is_nil(get())
      assert.is_true(get())
      assert.is_false(get())
      assert.equal(3.25, get())
      assert.equal("short", get())
      assert.equal(long, get())
      assert.same({1, 2, {a = "b"}}, get())
      local got = get()
      got:send("through")
      assert.equal("through", inner:recv())
    end)

    it("try_send and try_recv never park", function()
      local ch = channel(1)
      assert.is_true(ch:try_send(1))
      assert.is_false(ch:try_send(2))
      assert.same({1, true}, {ch:try_recv()})
      assert.same({nil, false}, {ch:try_recv()})
      local r = channel(0)
      assert.is_false(r:try_send(1)) -- nobody is receiving
    end)

    it("recv on a closed channel drains it, then returns nil, false", function()
      local ch = channel()
      ch:send(1)
      ch:send(2)
      assert.is_true(ch:close())
      assert.is_false(ch:close()) -- closing twice is allowed
      assert.is_true(ch:closed())
      assert.same({1, true}, {ch:recv()})
      assert.same({2, true}, {ch:recv()})
      assert.same({nil, false}, {ch:recv()})
      assert.same({nil, false}, {ch:recv()})
    end)

    it("raises on send to a closed channel", function()
      local ch = channel(1)
      ch:close()
      assert.has_error(function() ch:send(1) end, "send on closed channel")
      assert.has_error(function() ch:try_send(1) end, "send on closed channel")
    end)

    it("a sender parked on a full channel proceeds after a single receive", function()
      local ch = channel(2)
      ch:send(1)
      ch:send(2)
      local t = parx.async(function() ch:send(3); return "sent" end)
      parx.sleep(0.01)
      assert.is_false(t:done())
      assert.equal(1, ch:recv())
      assert.equal("sent", t:join()) -- needs no second receive
      assert.equal(2, #ch)
      assert.same({2, 3}, {ch:recv(), (ch:recv())})
    end)

    it("iterates until closed", function()
      local ch = channel()
      for i = 1, 5 do ch:send(i) end
      ch:close()
      local got = {}
      for v in ch:iter() do got[#got + 1] = v end
      assert.same({1, 2, 3, 4, 5}, got)
    end)

    -- Sends 1..n from this task to an async task of the same VM over ch,
    -- which sums them.
    local function sum_on_one_vm(ch, n)
      local t = parx.async(function()
        local sum = 0
        for v in ch:iter() do sum = sum + v end
        return sum
      end)
      for i = 1, n do ch:send(i) end
      ch:close()
      return t:join()
    end

    it("hands values between async tasks of the same VM", function()
      assert.equal(5050, sum_on_one_vm(channel(0), 100))
    end)

    it("a producer and a consumer on one VM never spin before parking (the other one is ready)", function()
      local spins = require("parx.c.chan").spins
      for _, cap in ipairs({0, 1, 1024, 5000}) do
        local ch = channel(cap)
        assert.equal(2001000, sum_on_one_vm(ch, 2000))
        assert.equal(0, spins(ch), "capacity " .. cap)
      end
    end)

    it("refuses values that cannot cross VMs, naming them", function()
      local ch = channel()
      local co = coroutine.create(function() end)
      local ok, err = pcall(ch.send, ch, co)
      assert.is_false(ok)
      assert.truthy(tostring(err):match("coroutine"))
      assert.equal(0, #ch)
    end)
  end)

  describe("across workers", function()
    it("unbounded: 4 producers x 4 consumers, 100,000 messages exactly once", function()
      mpmc(nil, 4, 4, 25000)
    end)

    it("bounded: 4 producers x 3 consumers, 100,000 messages exactly once", function()
      mpmc(16, 4, 3, 25000)
    end)

    it("rendezvous: 3 producers x 4 consumers, 30,000 messages exactly once", function()
      mpmc(0, 3, 4, 10000)
    end)

    it("capacity 1 with one producer and one consumer", function()
      mpmc(1, 1, 1, 20000)
    end)

    it("a lock contended by more tasks than CPUs, beside a busy task, makes progress and loses nothing", function()
      -- Eight tasks hammer one channel's lock with try_send/try_recv (giving
      -- way only when it fails, so tasks of one worker take turns) while
      -- another keeps a CPU busy: the lock's spin-then-sleep must neither
      -- deadlock nor lose or duplicate a message.
      local ch = channel(16)
      local stop = parx.atomic(0)
      local hog = parx.spawn(function(stop)
        local x = 0
        while stop:get() == 0 do
          for _ = 1, 100000 do x = x + 1 end
          parx.sleep(0)
        end
        return x
      end, stop)
      local per, tasks = 3000, {}
      for p = 1, 4 do
        tasks[#tasks + 1] = parx.spawn(function(ch, first, last)
          for i = first, last do
            while not ch:try_send(i) do parx.sleep(0) end
          end
          return 0
        end, ch, (p - 1) * per + 1, p * per)
      end
      local got = parx.atomic(0)
      for c = 1, 4 do
        tasks[#tasks + 1] = parx.spawn(function(ch, got, total)
          local sum = 0
          while got:get() < total do
            local v, ok = ch:try_recv()
            if ok then
              sum = sum + v
              got:add(1)
            else
              parx.sleep(0)
            end
          end
          return sum
        end, ch, got, 4 * per)
      end
      local sum = 0
      for _, t in ipairs(tasks) do sum = sum + t:join() end
      stop:set(1)
      hog:join()
      local total = 4 * per
      assert.equal(total, got:get())
      assert.equal(total * (total + 1) / 2, sum)
    end)

    it("crosses VMs as an upvalue, a spawn argument and inside a message", function()
      local a, b = channel(), channel()
      local t = parx.spawn(function()
        local inner = a:recv() -- a is an upvalue
        inner:send("hello from " .. tostring(parx.worker_id and parx.worker_id() or "worker"))
        local box = a:recv()
        box.reply:send(box.n * 2)
      end)
      a:send(b)
      assert.truthy(b:recv():match("^hello"))
      local reply = channel(1)
      a:send({reply = reply, n = 21})
      assert.equal(42, reply:recv())
      t:join()
    end)

    it("ping-pongs over two rendezvous channels", function()
      local ping, pong = channel(0), channel(0)
      local t = parx.spawn(function(ping, pong)
        for v in ping:iter() do pong:send(v + 1) end
        return "done"
      end, ping, pong)
      local v = 0
      for _ = 1, 1000 do
        ping:send(v)
        v = pong:recv()
      end
      ping:close()
      assert.equal(1000, v)
      assert.equal("done", t:join())
    end)

    it("close wakes every parked receiver", function()
      local ch = channel()
      local started = parx.waitgroup()
      started:add(6)
      local tasks = {}
      for i = 1, 6 do
        tasks[i] = parx.spawn(function(ch, started)
          started:done()
          return ch:recv()
        end, ch, started)
      end
      started:wait()
      parx.sleep(0.05) -- let them park (the assertions hold either way)
      ch:close()
      for i = 1, 6 do
        local v, ok = tasks[i]:join()
        assert.is_nil(v)
        assert.is_false(ok)
      end
    end)

    it("close wakes every parked sender, which raises", function()
      local ch = channel(0)
      local started = parx.waitgroup()
      started:add(5)
      local tasks = {}
      for i = 1, 5 do
        tasks[i] = parx.spawn(function(ch, started, i)
          started:done()
          ch:send(i)
        end, ch, started, i)
      end
      started:wait()
      parx.sleep(0.05)
      ch:close()
      for i = 1, 5 do
        local ok, err = pcall(tasks[i].join, tasks[i])
        assert.is_false(ok)
        assert.truthy(tostring(err):match("send on closed channel"))
      end
    end)

    it("a channel that holds itself in its buffer is freed", function()
      local live = require("parx.c.chan").live
      collectgarbage(); collectgarbage()
      local before = live()
      for _ = 1, 20000 do
        local c = channel(1)
        c:send(c)
      end
      for _ = 1, 1000 do
        local c = channel()
        c:send({c, {again = c}})      -- inside a table, twice
        c:send(c)
      end
      collectgarbage(); collectgarbage()
      assert.is_true(live() <= before + 1, ("%d channels still alive"):format(live() - before))
    end)

    it("a channel received from its own buffer works and is freed after", function()
      local live = require("parx.c.chan").live
      collectgarbage(); collectgarbage()
      local before = live()
      local function addr(x) return tostring(x):match("0x%x+") end
      do
        local c = channel(2)
        c:send(c)
        c:send({me = c})
        local got = c:recv()
        assert.equal(addr(c), addr(got))
        got:send("through the received proxy")
        assert.equal(addr(c), addr(c:recv().me))
        assert.equal("through the received proxy", (c:recv()))
        c:send(c)                      -- left in the buffer
      end
      collectgarbage(); collectgarbage()
      assert.equal(before, live())
    end)

    it("a cancelled receiver leaves the queue and loses no message", function()
      local ch = channel()
      local t = parx.async(function() return ch:recv() end)
      parx.sleep(0.01)
      t:cancel()
      pcall(t.join, t)
      ch:send("kept")
      assert.same({"kept", true}, {ch:try_recv()})
    end)
  end)
end)

-- Channels of capacity 1..4096 buffer in a lock-free queue (chan_queue.c):
-- sends and receives that need no party parked take no lock, and the
-- locked path (parked parties, close, tables) shares the cells.
describe("the lock-free buffer", function()
  -- P producers send p * 1e6 + i for i = 1..per; C consumers check that
  -- each producer's values reach them in increasing order (a FIFO channel
  -- seen by one consumer), and all of them exactly once.  Every `table`-th
  -- value goes as a table (the locked path) among the numbers.
  local function ordered(cap, P, C, per, table_every)
    local ch = channel(cap)
    local producers, consumers = {}, {}
    for p = 1, P do
      producers[p] = parx.spawn(function(ch, p, per, every)
        for i = 1, per do
          local v = p * 1e6 + i
          if every and i % every == 0 then ch:send({v}) else ch:send(v) end
        end
      end, ch, p, per, table_every)
    end
    for c = 1, C do
      consumers[c] = parx.spawn(function(ch)
        local last, n, sum = {}, 0, 0
        for v in ch:iter() do
          if type(v) == "table" then v = v[1] end
          local p, i = math.floor(v / 1e6), v % 1e6
          if i <= (last[p] or 0) then error(("producer %d: %d after %d"):format(p, i, last[p])) end
          last[p] = i
          n, sum = n + 1, sum + v
        end
        return n, sum
      end, ch)
    end
    for _, t in ipairs(producers) do t:join() end
    ch:close()
    local n, sum = 0, 0
    for _, t in ipairs(consumers) do
      local a, b = t:join()
      n, sum = n + a, sum + b
    end
    local want = 0
    for p = 1, P do want = want + p * 1e6 * per + per * (per + 1) / 2 end
    assert.equal(P * per, n)
    assert.equal(want, sum)
  end

  it("keeps each producer's order, exactly once, at capacities 1, 2, 3 and 1024", function()
    ordered(1, 3, 3, 4000)
    ordered(2, 3, 2, 4000)
    ordered(3, 2, 3, 4000)
    ordered(1024, 4, 4, 20000)
  end)

  it("keeps order when tables (the locked path) go among numbers", function()
    ordered(2, 3, 3, 3000, 7)
    ordered(64, 2, 2, 10000, 3)
  end)

  it("unbounded: keeps each producer's order through the cells and what overflows them", function()
    -- producers far ahead of one consumer: most values overflow the 1024 cells
    ordered(nil, 3, 1, 20000)
    ordered(nil, 2, 3, 20000, 5)
    local ch = channel()
    for i = 1, 5000 do ch:send(i) end
    assert.equal(5000, #ch)
    ch:close()
    local n = 0
    for v in ch:iter() do n = n + 1; assert.equal(n, v) end
    assert.equal(5000, n)
  end)

  it("never holds more than its capacity", function()
    local ch = channel(3)
    local p = parx.spawn(function(ch) for i = 1, 20000 do ch:send(i) end ch:close() end, ch)
    local most, n = 0, 0
    while true do
      local len = #ch
      if len > most then most = len end
      local v, ok = ch:try_recv()
      if ok then n = n + 1 elseif ch:closed() and #ch == 0 then break end
    end
    p:join()
    for _ = 1, 10 do assert.is_false(select(2, ch:try_recv())) end
    assert.equal(20000, n)
    assert.is_true(most <= 3, "held " .. most)
  end)

  it("wakes receivers that park again and again (bursts with pauses between)", function()
    local ch = channel(4)
    local consumers = {}
    for c = 1, 3 do
      consumers[c] = parx.spawn(function(ch)
        local n = 0
        for _ in ch:iter() do n = n + 1 end
        return n
      end, ch)
    end
    for burst = 1, 60 do
      for i = 1, burst % 7 + 1 do ch:send(i) end
      parx.sleep(0.0005)
    end
    ch:close()
    local n, want = 0, 0
    for burst = 1, 60 do want = want + burst % 7 + 1 end
    for _, t in ipairs(consumers) do n = n + t:join() end
    assert.equal(want, n)
  end)

  it("a close that races with sends: every send that did not raise is received once", function()
    for _ = 1, 5 do
      local ch = channel(8)
      local producers = {}
      for p = 1, 3 do
        producers[p] = parx.spawn(function(ch, p)
          local sent = 0
          for i = 1, 100000 do
            if not pcall(ch.send, ch, p) then break end
            sent = sent + p
          end
          return sent
        end, ch, p)
      end
      local consumer = parx.spawn(function(ch)
        local got = 0
        for v in ch:iter() do got = got + v end
        return got
      end, ch)
      parx.sleep(0.002)
      ch:close()
      local sent = 0
      for _, t in ipairs(producers) do sent = sent + t:join() end
      assert.equal(sent, consumer:join())
    end
  end)

  it("a select over two full channels sends once either drains, and only there", function()
    local a, b = channel(1), channel(1)
    a:send("a0")
    b:send("b0")
    local t = parx.spawn(function(a, b) return parx.select({{a, "send", "a1"}, {b, "send", "b1"}}) end, a, b)
    parx.sleep(0.01)
    assert.same({"b0", true}, {b:recv()})
    assert.equal(2, t:join())
    assert.same({"b1", true}, {b:recv()})
    assert.equal(1, #a)
    assert.same({"a0", true}, {a:recv()})
    assert.is_false(select(2, a:try_recv()))
  end)

  it("takes no buffer memory until a value is buffered, then its whole buffer (48 bytes a value; 1024 cells when unbounded)", function()
    if os.getenv("PARX_SANITIZER") then
      -- a sanitizer's allocator and shadow memory are in the count
      pending("resident memory is not the program's own under " .. os.getenv("PARX_SANITIZER"))
      return
    end
    -- in a fresh process: this one's freed heap would be reused unseen
    local code = [[
      local function rss()
        local f = assert(io.open("/proc/self/statm"))
        local _, pages = f:read("*n", "*n")
        f:close()
        return pages * 4096
      end
      collectgarbage()
      local before = rss()
      local chans = {}
      for i = 1, 100 do chans[i] = parx.channel(4096) end
      local made = rss()
      for i = 1, 100 do chans[i]:send(i) end
      local used = rss()
      local unbounded = {}
      for i = 1, 100 do unbounded[i] = parx.channel() end
      local made2 = rss()
      for i = 1, 100 do unbounded[i]:send(i) end
      print(made - before, used - made, rss() - made2)]]
    local r = assert(parx.process.exec(os.getenv("PARX_BIN") or "build/parx", {"-e", code}))
    local made, used, unb = r.stdout:match("^(%d+)\t(%d+)\t(%d+)")
    made, used, unb = tonumber(made), tonumber(used), tonumber(unb)
    assert(made, r.stdout .. r.stderr)
    assert.is_true(made < 4e6, ("100 new channels took %d bytes"):format(made))
    local want = 100 * 4096 * 48
    assert.is_true(used > 0.9 * want and used < 1.5 * want,
      ("100 first sends took %d bytes, not about %d"):format(used, want))
    -- an unbounded channel: 1024 cells
    want = 100 * 1024 * 48
    assert.is_true(unb > 0.9 * want and unb < 1.5 * want,
      ("100 first sends on unbounded channels took %d bytes, not about %d"):format(unb, want))
  end)

  it("a value put back by a cancelled receiver is received first", function()
    local ch = channel(4)
    local t = parx.async(function() return ch:recv() end)
    parx.sleep(0.01)
    ch:send("first")
    t:cancel()
    pcall(t.join, t)
    ch:send("second")
    local got = {}
    for _ = 1, 2 do
      local v, ok = ch:try_recv()
      if ok then got[#got + 1] = v end
    end
    -- the receiver either took "first" before its cancel (then gave it
    -- back, to the head) or never got it: the order is the same
    assert.same({"first", "second"}, got)
  end)
end)

-- Rendezvous channels: a sender or receiver first waits a few microseconds
-- at the channel's exchange (chan_queue.c) before it parks.
describe("the rendezvous exchange", function()
  it("a close while a receiver or a sender waits there: nil, false and a raise, never a hang", function()
    for round = 1, 200 do
      local ch = channel(0)
      local recv = round % 2 == 0
      local t = parx.spawn(function(ch, recv)
        if recv then return ch:recv() end
        return pcall(ch.send, ch, "lost")
      end, ch, recv)
      local spin = (round * 37) % 3000
      for _ = 1, spin do end -- the close lands before, during or after its wait
      ch:close()
      local a, b = t:join()
      if recv then
        assert.same({nil, false}, {a, b})
      else
        assert.is_false(a)
        assert.truthy(tostring(b):find("send on closed channel", 1, true))
      end
    end
  end)

  it("many senders and receivers meet there: every value exactly once", function()
    mpmc(0, 3, 3, 5000)
  end)

  it("the main VM receives each value a worker's sender waited there with", function()
    local ch = channel(0)
    local t = parx.spawn(function(ch) for i = 1, 50 do ch:send(i) end ch:close() end, ch)
    local sum = 0
    for v in ch:iter() do sum = sum + v end
    t:join()
    assert.equal(50 * 51 / 2, sum)
  end)
end)

-- parx.h's host access: spec/chan_host.c, built against libparx.so.
describe("the FFI fast path of send and recv", function()
  -- The first operation on a proxy goes through the C functions; the ones
  -- after it try the FFI path (lua/parx/chan.lua, runtime/mod/chan_fast.c).
  it("refuses a closed channel with the C path's error", function()
    local ch = channel(4)
    ch:send(1) -- the proxy is known to the fast path from here
    assert.equal(1, ch:recv())
    ch:close()
    local ok, err = pcall(ch.send, ch, 2)
    assert.is_false(ok)
    assert.truthy(err:match("send on closed channel"))
    local fresh = channel(4)
    fresh:close()
    local ok2, err2 = pcall(fresh.send, fresh, 2)
    assert.is_false(ok2)
    assert.equal(err:gsub("^.-: ", ""), err2:gsub("^.-: ", ""))
    assert.same({nil, false}, {ch:recv()})
  end)

  it("refuses what is not a channel with the C path's error, a forged one included", function()
    local ch = channel(4)
    ch:send(1)
    ch:recv()
    local forged = newproxy(true)
    getmetatable(forged).__metatable = "parx.channel"
    for _, bad in ipairs({5, "x", {}, forged}) do
      local ok, err = pcall(ch.send, bad, 1)
      assert.is_false(ok)
      assert.truthy(err:match("parx.channel expected"), err)
      ok, err = pcall(ch.recv, bad)
      assert.is_false(ok)
      assert.truthy(err:match("parx.channel expected"), err)
    end
  end)

  it("carries numbers, strings around the inline limit, booleans and nil intact, in order with tables", function()
    local ch = channel()
    ch:send(0) -- warm: the rest may take the fast path
    ch:recv()
    local values = {1, -0.0, 0.5, 2 ^ 53, -2 ^ 31 - 1, 1e308, math.huge, -math.huge, 127, 128, 32768,
                    "", "a", string.rep("s", 20), string.rep("t", 21), string.rep("u", 22),
                    string.rep("v", 200), "nul\0inside", true, false, {1, {2}}, 3}
    for _, v in ipairs(values) do ch:send(v) end
    ch:send(nil)
    ch:send(0 / 0)
    for i, v in ipairs(values) do
      local got, ok = ch:recv()
      assert.is_true(ok)
      if type(v) == "number" and v == 0 then
        assert.equal(1 / v, 1 / got) -- the sign of zero
      else
        assert.same(v, got, "value " .. i)
      end
    end
    assert.same({nil, true}, {ch:recv()})
    local nan = ch:recv()
    assert.is_true(nan ~= nan)
  end)

  it("leaves a table or a 64-bit integer at the head of the queue for the C path", function()
    local ch = channel(8)
    ch:send(1)
    ch:recv()
    ch:send({x = 1})
    ch:send(1)
    ch:send(5LL)
    ch:send("after")
    assert.same({x = 1}, ch:recv())
    assert.equal(1, ch:recv())
    assert.is_true(ch:recv() == 5LL)
    assert.equal("after", ch:recv())
  end)

  it("methods and parx.select held as upvalues still cross to a worker", function()
    local ch = channel(4)
    ch:send(1) -- known to the fast path in this VM
    ch:recv()
    local send, recv, select = ch.send, ch.recv, parx.select
    local t = parx.spawn(function(c)
      send(c, 41)
      local v = recv(c)
      send(c, v + 1)
      local i, w = select({{c, "recv"}})
      return i, w
    end, ch)
    local i, w = t:join()
    assert.equal(1, i)
    assert.equal(42, w)
  end)

  it("select's fast pass refuses a forged channel with the C path's error", function()
    local a = channel(4)
    a:send(1)
    a:recv()
    parx.select({{a, "recv"}}, {timeout = 0}) -- a is known from here
    local forged = newproxy(true)
    getmetatable(forged).__metatable = "parx.channel"
    local ok, err = pcall(parx.select, {{a, "recv"}, {forged, "recv"}}, {timeout = 0})
    assert.is_false(ok)
    assert.truthy(err:match("select case 2: channel expected"), err)
    ok, err = pcall(parx.select, {{a, "recv"}, {a, "peek"}}, {timeout = 0})
    assert.is_false(ok)
    assert.truthy(err:match("operation must be"), err)
    a:send("x")
    assert.same({1, "x", true}, {parx.select({{a, "recv"}})})
  end)

  it("hands plain values and tables to a parked peer on another worker (rendezvous)", function()
    local ch, back = channel(0), channel(0)
    local t = parx.spawn(function(ch, back)
      local n = 0
      for v in ch:iter() do
        n = n + 1
        back:send(v)
      end
      return n
    end, ch, back)
    local sent = {1, "s", {k = "v"}, 2.5, true, string.rep("x", 30)}
    for round = 1, 200 do
      for _, v in ipairs(sent) do
        ch:send(v)
        assert.same(v, back:recv())
      end
    end
    ch:close()
    assert.equal(200 * #sent, t:join())
  end)
end)

describe("channels from the host", function()
  it("pass numbers, strings and booleans between a host thread and a worker task", function()
    local build = os.getenv("PARX_BUILD") or "build"
    local cc = os.getenv("PARX_CC") or "cc"
    local ldflags = os.getenv("PARX_LDFLAGS") or ""
    local f = io.open(build .. "/libparx.so")
    if not f then
      pending("no " .. build .. "/libparx.so (run through make test)")
      return
    end
    f:close()
    local exe = os.tmpname()
    local cmd = string.format(
      "%s -std=gnu11 -O1 -g -Iruntime $(pkg-config --cflags luajit) -o %s spec/chan_host.c "
        .. "-L%s -lparx -Wl,-rpath,%s $(pkg-config --libs luajit) -lpthread %s 2>&1 && %s 2>&1",
      cc, exe, build, build, ldflags, exe)
    local p = io.popen(cmd)
    local out = p:read("*a")
    local ok = p:close()
    os.remove(exe)
    assert.truthy(out:find("chan host ok", 1, true), out)
    assert.truthy(ok, out)
  end)
end)
