-- parx.mutex, semaphore, barrier, waitgroup, atomic across workers.

local function workers()
  return math.max(2, parx.pool and parx.pool.size and parx.pool.size() or 2)
end

describe("parx.atomic", function()
  it("gets, sets, adds and compares-and-swaps", function()
    local a = parx.atomic(5)
    assert.equal(5, a:get())
    a:set(-3)
    assert.equal(-3, a:get())
    assert.equal(7, a:add(10))
    assert.equal(8, a:add())
    assert.is_true(a:cas(8, 100))
    assert.is_false(a:cas(8, 200))
    assert.equal(100, a:get())
    assert.equal(0, parx.atomic():get())
    assert.has_error(function() a:set(1.5) end)
  end)

  it("ends exact under contention from every worker", function()
    local a = parx.atomic(0)
    local tasks = {}
    local n = 2 * workers()
    for i = 1, n do
      tasks[i] = parx.spawn(function(a)
        for _ = 1, 20000 do a:add(1) end
      end, a)
    end
    for i = 1, n do tasks[i]:join() end
    assert.equal(n * 20000, a:get())
  end)
end)

describe("parx.mutex", function()
  it("protects a read-modify-write under contention from every worker", function()
    -- counter:set(counter:get() + 1) is not atomic: without the mutex
    -- updates get lost; the sleep(0) makes tasks interleave inside it.
    local m, counter = parx.mutex(), parx.atomic(0)
    local tasks = {}
    local n = 2 * workers()
    for i = 1, n do
      tasks[i] = parx.spawn(function(m, counter)
        for k = 1, 2000 do
          m:lock()
          local v = counter:get()
          if k % 100 == 0 then parx.sleep(0) end
          counter:set(v + 1)
          m:unlock()
        end
      end, m, counter)
    end
    for i = 1, n do tasks[i]:join() end
    assert.equal(n * 2000, counter:get())
  end)

  it("with() unlocks on return and on error", function()
    local m = parx.mutex()
    assert.same({1, 2}, {m:with(function(a, b) return a, b end, 1, 2)})
    assert.is_false(m:locked())
    local ok, err = pcall(m.with, m, function() error("boom") end)
    assert.is_false(ok)
    assert.truthy(tostring(err):match("boom"))
    assert.is_false(m:locked())
    assert.is_true(m:try_lock())
    m:unlock()
  end)

  it("with() serialises tasks on every worker", function()
    local m, inside, worst = parx.mutex(), parx.atomic(0), parx.atomic(0)
    local tasks = {}
    for i = 1, 6 do
      tasks[i] = parx.spawn(function(m, inside, worst)
        for _ = 1, 50 do
          m:with(function()
            local now = inside:add(1)
            if now > worst:get() then worst:set(now) end
            parx.sleep(0)
            inside:add(-1)
          end)
        end
      end, m, inside, worst)
    end
    for i = 1, 6 do tasks[i]:join() end
    assert.equal(1, worst:get())
  end)

  it("raises when unlocking a mutex the task does not hold", function()
    local m = parx.mutex()
    assert.has_error(function() m:unlock() end, "unlock of a mutex that is not locked")
    local t = parx.spawn(function(m) m:lock() end, m)
    t:join()
    assert.has_error(function() m:unlock() end, "unlock of a mutex held by another task")
  end)

  it("a cancelled waiter leaves the queue without taking the mutex", function()
    local m = parx.mutex()
    m:lock()
    local waiter = parx.async(function() m:lock(); return "got it" end)
    parx.sleep(0.01)
    waiter:cancel()
    assert.is_false(pcall(waiter.join, waiter))
    m:unlock()
    assert.is_false(m:locked())
    assert.is_true(m:try_lock())
    m:unlock()
  end)

  it("is not recursive", function()
    local m = parx.mutex()
    m:lock()
    assert.has_error(function() m:lock() end)
    m:unlock()
  end)
end)

describe("parx.semaphore", function()
  it("admits at most n holders at once", function()
    local s, inside, worst = parx.semaphore(2), parx.atomic(0), parx.atomic(0)
    local tasks = {}
    for i = 1, 6 do
      tasks[i] = parx.spawn(function(s, inside, worst)
        for _ = 1, 20 do
          s:acquire()
          local now = inside:add(1)
          while true do
            local w = worst:get()
            if now <= w or worst:cas(w, now) then break end
          end
          parx.sleep(0.001)
          inside:add(-1)
          s:release()
        end
      end, s, inside, worst)
    end
    for i = 1, 6 do tasks[i]:join() end
    assert.is_true(worst:get() <= 2)
    assert.equal(2, s:value())
  end)

  it("a cancelled acquire does not swallow a permit", function()
    local s = parx.semaphore(0)
    local waiter = parx.async(function() s:acquire() end)
    parx.sleep(0.01)
    waiter:cancel()
    pcall(waiter.join, waiter)
    s:release()
    assert.is_true(s:try_acquire())
  end)

  it("try_acquire never parks", function()
    local s = parx.semaphore(1)
    assert.is_true(s:try_acquire())
    assert.is_false(s:try_acquire())
    s:release()
    assert.is_true(s:try_acquire())
  end)

  it("rejects a negative count", function()
    assert.has_error(function() parx.semaphore(-1) end)
  end)

  it("semaphore:acquire(n) takes n permits", function()
    local s = parx.semaphore(5)
    s:acquire(3)
    assert.equal(2, s:value())
    assert.is_false(s:try_acquire(3))
    assert.is_true(s:try_acquire(2))
    assert.equal(0, s:value())
    s:release(5)
    assert.equal(5, s:value())
  end)

  it("semaphore:acquire(n) parks until n permits are free", function()
    local s = parx.semaphore(1)
    local got = false
    local t = parx.async(function() s:acquire(3); got = true end)
    parx.sleep(0.01)
    assert.is_false(got)
    s:release(1)
    parx.sleep(0.01)
    assert.is_false(got)          -- 2 free, 3 wanted
    s:release(1)
    t:join()
    assert.is_true(got)
    assert.equal(0, s:value())
  end)

  it("a large acquire(n) at the head of the queue is not starved by small ones", function()
    local s = parx.semaphore(0)
    local order = {}
    local big = parx.async(function() s:acquire(2); order[#order + 1] = "big" end)
    parx.sleep(0.005)
    local small = parx.async(function() s:acquire(1); order[#order + 1] = "small" end)
    parx.sleep(0.005)
    s:release(1)                  -- not enough for the head: nobody goes
    parx.sleep(0.01)
    assert.same({}, order)
    s:release(1)                  -- 2 free: the head takes both
    big:join()
    parx.sleep(0.01)
    assert.same({"big"}, order)
    s:release(1)
    small:join()
    assert.same({"big", "small"}, order)
  end)

  it("a cancelled acquire(n) at the head lets the smaller ones behind it go", function()
    local s = parx.semaphore(1)
    local big = parx.async(function() s:acquire(5) end)
    parx.sleep(0.005)
    local small = parx.async(function() s:acquire(1) end)
    parx.sleep(0.005)
    big:cancel()
    pcall(big.join, big)
    assert.is_true(small:wait(5))
    assert.equal(0, s:value())
  end)

  it("semaphore acquire/release reject bad permit counts", function()
    local s = parx.semaphore(1)
    for _, n in ipairs({0, -1, 1.5, 0/0, math.huge, 2^60}) do
      assert.has_error(function() s:acquire(n) end)
      assert.has_error(function() s:try_acquire(n) end)
      assert.has_error(function() s:release(n) end)
    end
    assert.equal(1, s:value())
  end)
end)

describe("parx.barrier", function()
  it("releases all parties together, round after round", function()
    local n = 4
    local b, arrived = parx.barrier(n), parx.atomic(0)
    local tasks = {}
    for i = 1, n do
      tasks[i] = parx.spawn(function(b, arrived, n)
        local ok = true
        for round = 1, 10 do
          arrived:add(1)
          b:wait()
          -- nobody passes before all n of this round arrived
          if arrived:get() < round * n then ok = false end
          b:wait() -- keep rounds apart
        end
        return ok
      end, b, arrived, n)
    end
    for i = 1, n do assert.is_true(tasks[i]:join()) end
    assert.equal(10 * n, arrived:get())
  end)

  it("returns each party's arrival number", function()
    local b = parx.barrier(3)
    local tasks = {}
    for i = 1, 3 do tasks[i] = parx.spawn(function(b) return b:wait() end, b) end
    local seen = {}
    for i = 1, 3 do seen[tasks[i]:join()] = true end
    assert.same({true, true, true}, seen)
  end)

  it("of one party never waits", function()
    assert.equal(1, parx.barrier(1):wait())
  end)

  it("rejects 0 parties", function()
    assert.has_error(function() parx.barrier(0) end)
    for _, n in ipairs({0 / 0, 1.5, math.huge, 2 ^ 31, 1e300}) do
      assert.has_error(function() parx.barrier(n) end)
      assert.has_error(function() parx.semaphore(n) end)
      assert.has_error(function() parx.waitgroup(n) end)
    end
    assert.has_error(function() parx.barrier() end)
  end)

  it("b:parties() is the count the barrier was made with, before and after a round", function()
    local b = parx.barrier(2)
    assert.equal(2, b:parties())
    local t = parx.async(function() return b:wait() end)
    local mine = b:wait()
    local arrivals = {mine, t:join()}
    table.sort(arrivals)
    assert.same({1, 2}, arrivals)
    assert.equal(2, b:parties())
    assert.equal(5, parx.spawn(function(b) return b:parties() end, parx.barrier(5)):join())
  end)
end)

describe("parx.waitgroup", function()
  it("waits until every task is done", function()
    local wg, done = parx.waitgroup(), parx.atomic(0)
    wg:add(5)
    for _ = 1, 5 do
      parx.spawn(function(wg, done)
        parx.sleep(0.01)
        done:add(1)
        wg:done()
      end, wg, done)
    end
    wg:wait()
    assert.equal(5, done:get())
    assert.equal(0, wg:count())
    wg:wait() -- at zero: returns at once
  end)

  it("raises when done() outnumbers add()", function()
    local wg = parx.waitgroup()
    assert.has_error(function() wg:done() end)
  end)
end)

describe("parx.event", function()
  it("wakes every waiter on set, from another worker", function()
    local ev = parx.event()
    assert.is_false(ev:is_set())
    local tasks = {}
    for i = 1, 4 do tasks[i] = parx.spawn(function(ev) return ev:wait() end, ev) end
    parx.sleep(0.02)
    ev:set()
    for i = 1, 4 do assert.is_true(tasks[i]:join()) end
    assert.is_true(ev:is_set())
  end)

  it("lets waits through while set; clear makes them park again", function()
    local ev = parx.event()
    ev:set()
    assert.is_true(ev:wait())
    assert.is_true(ev:wait(0))
    ev:clear()
    assert.is_false(ev:is_set())
    assert.is_false(ev:wait(0))
  end)

  it("wait(timeout) returns false when the timeout passes first", function()
    local ev = parx.event()
    assert.is_false(ev:wait(0.02))
    local t = parx.spawn(function(ev) return ev:wait(10) end, ev)
    parx.sleep(0.02)
    ev:set()
    assert.is_true(t:join())
  end)

  it("a cancelled waiter leaves the queue and its cleanup runs", function()
    local ev = parx.event()
    local cleaned = parx.atomic(0)
    local t = parx.async(function()
      local ok, err = pcall(ev.wait, ev, 5)
      cleaned:add(1)
      error(err, 0)
    end)
    parx.sleep(0.02)
    t:cancel()
    assert.is_false(pcall(t.join, t))
    assert.equal(1, cleaned:get())
    assert.truthy(tostring(ev):match("^parx%.event%(clear%)"))
    ev:set() -- nobody left to wake
  end)

  it("is shared by reference with another worker", function()
    local ev = parx.event()
    parx.spawn(function(ev) ev:set() end, ev):join()
    assert.is_true(ev:is_set())
  end)
end)

describe("parx.condition", function()
  it("wait releases the mutex and holds it again when notified", function()
    local c = parx.condition()
    local d = parx.dict()
    local consumers = {}
    for i = 1, 4 do
      consumers[i] = parx.spawn(function(c, d)
        return c:with(function()
          c:wait_for(function() return (d.items or 0) > 0 end)
          assert(c:mutex():owned())
          d.items = d.items - 1
          return true
        end)
      end, c, d)
    end
    parx.sleep(0.02)
    for _ = 1, 4 do
      c:with(function()
        d.items = (d.items or 0) + 1
        c:notify()
      end)
    end
    for i = 1, 4 do assert.is_true(consumers[i]:join()) end
    assert.equal(0, d.items)
    assert.is_false(c:mutex():locked())
  end)

  it("notify_all wakes every waiter; notify(n) at most n", function()
    local m = parx.mutex()
    local c = parx.condition(m)
    local woke = parx.atomic(0)
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = parx.spawn(function(c, woke)
        c:with(function() c:wait() end)
        woke:add(1)
      end, c, woke)
    end
    local function waiting() return tonumber(tostring(c):match("%((%d+) waiting")) end
    while waiting() < 3 do parx.sleep(0.005) end
    assert.equal(1, c:with(function() return c:notify(1) end))
    assert.equal(2, c:with(function() return c:notify_all() end))
    for i = 1, 3 do tasks[i]:join() end
    assert.equal(3, woke:get())
    assert.equal(0, m:with(function() return c:notify_all() end))
  end)

  it("wait(timeout) returns false and holds the mutex again", function()
    local c = parx.condition()
    c:lock()
    assert.is_false(c:wait(0.01))
    assert.is_true(c:mutex():owned())
    c:unlock()
  end)

  it("wait and notify without the mutex raise", function()
    local c = parx.condition()
    assert.has_error(function() c:wait() end,
      "wait on a condition whose mutex this task does not hold (lock it first, or use c:with(fn))")
    assert.has_error(function() c:notify() end)
    assert.has_error(function() parx.condition(parx.semaphore()) end)
  end)

  it("a cancelled waiter's with() re-raises the cancellation, not an unlock error", function()
    local c = parx.condition()
    local cleaned = parx.atomic(0)
    local t = parx.async(function()
      local ok, err = pcall(c.with, c, function() c:wait() end)
      cleaned:add(1)
      error(err, 0)
    end)
    parx.sleep(0.02)
    t:cancel()
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.equal(parx.CANCELLED, err)
    assert.equal(1, cleaned:get())
    assert.is_false(c:mutex():locked())
  end)
end)

describe("parx.mutex owned", function()
  it("tells whether the calling task holds it", function()
    local m = parx.mutex()
    assert.is_false(m:owned())
    m:lock()
    assert.is_true(m:owned())
    assert.is_false(parx.spawn(function(m) return m:owned() end, m):join())
    m:unlock()
  end)
end)

describe("work queues", function()
  it("ch:empty() tells whether a channel buffers nothing", function()
    local ch = parx.channel()
    assert.is_true(ch:empty())
    ch:send(1)
    assert.is_false(ch:empty())
    ch:recv()
    assert.is_true(ch:empty())
  end)

  it("a waitgroup beside a channel is queue.join()/task_done()", function()
    local jobs, wg, total = parx.channel(), parx.waitgroup(), parx.atomic(0)
    for _ = 1, 2 do
      parx.spawn(function(jobs, wg, total)
        for job in jobs:iter() do total:add(job); wg:done() end
      end, jobs, wg, total)
    end
    for i = 1, 20 do wg:add(); jobs:send(i) end
    wg:wait()
    assert.equal(210, total:get())
    jobs:close()
  end)
end)
