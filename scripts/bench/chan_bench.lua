-- chan_bench.lua -- parx channels: throughput producer -> consumer on two
-- workers, ping-pong latency over two rendezvous channels, select over 8
-- channels.  Prints "name value unit" lines for scripts/bench/chan.sh.
-- Usage: parx chan_bench.lua [messages]
local N = tonumber(arg and arg[1]) or 1000000

-- Run producer and consumer bodies on two different workers: each task
-- busy-waits (without parking) until the other one runs, so a single
-- worker cannot take both jobs.
local function pair(a, b, ...)
  local go = parx.atomic(0)
  local function start(go)
    go:add(1)
    while go:get() < 2 do end
  end
  local ta = parx.spawn(function(start, a, go, ...) start(go); return a(...) end, start, a, go, ...)
  local tb = parx.spawn(function(start, b, go, ...) start(go); return b(...) end, start, b, go, ...)
  -- Both must be running before either starts: keep poking the workers
  -- with empty jobs until they are (cheap insurance against a worker that
  -- sleeps through the poke for tb while the other spins in ta).
  while go:get() < 2 do
    parx.spawn(function() end)
    parx.sleep(0.001)
  end
  return ta, tb
end

local function throughput(cap, n)
  local ch = parx.channel(cap)
  -- Timed from the producer's first send to the consumer's last receive
  -- (parx.now is one monotonic clock for every thread).
  local p, c = pair(function(ch, n)
    local t0 = parx.now()
    for i = 1, n do ch:send(i) end
    ch:close()
    return t0
  end, function(ch)
    local sum = 0
    for v in ch:iter() do sum = sum + v end
    return sum, parx.now()
  end, ch, n)
  local t0 = p:join()
  local sum, t1 = c:join()
  local dt = t1 - t0
  assert(sum == n * (n + 1) / 2, "lost messages")
  return n / dt
end

-- The same with short strings (16 distinct, 6 bytes each); the consumer
-- sums their lengths.
local function throughput_strings(cap, n)
  local ch = parx.channel(cap)
  local strs = {}
  for k = 0, 15 do strs[k + 1] = string.format("item%02d", k) end
  local p, c = pair(function(ch, n, strs)
    local t0 = parx.now()
    for i = 1, n do ch:send(strs[i % 16 + 1]) end
    ch:close()
    return t0
  end, function(ch)
    local total = 0
    for v in ch:iter() do total = total + #v end
    return total, parx.now()
  end, ch, n, strs)
  local t0 = p:join()
  local total, t1 = c:join()
  assert(total == 6 * n, "lost messages")
  return n / (t1 - t0)
end

local function pingpong(rounds)
  local ping, pong = parx.channel(0), parx.channel(0)
  local echo, timer = pair(function(ping, pong)
    for v in ping:iter() do pong:send(v) end
  end, function(ping, pong, rounds)
    local now, lat = parx.now, {}
    for i = 1, rounds do
      local t0 = now()
      ping:send(i)
      pong:recv()
      lat[i] = now() - t0
    end
    ping:close()
    table.sort(lat)
    return lat[math.floor(rounds / 2)], lat[math.floor(rounds * 0.99)]
  end, ping, pong, rounds)
  local median, p99 = timer:join()
  echo:join()
  return median, p99
end

local function select8(n)
  local chans = {}
  for k = 1, 8 do chans[k] = parx.channel(1024) end
  local p, c = pair(function(chans, n)
    local t0 = parx.now()
    for i = 1, n do chans[i % 8 + 1]:send(i) end
    for k = 1, 8 do chans[k]:close() end
    return t0
  end, function(chans)
    local cases = {}
    for k = 1, 8 do cases[k] = {chans[k], "recv"} end
    local select, open, got = parx.select, 8, 0
    while open > 0 do
      local i, v, ok = select(cases)
      if ok then
        got = got + 1
      else
        open = open - 1
        table.remove(cases, i)
      end
    end
    return got, parx.now()
  end, chans, n)
  local t0 = p:join()
  local got, t1 = c:join()
  assert(got == n, "lost messages")
  return n / (t1 - t0)
end

print(string.format("throughput_buffered1024 %.0f msg/s", throughput(1024, N)))
print(string.format("throughput_unbounded %.0f msg/s", throughput(nil, N)))
print(string.format("throughput_unbuffered %.0f msg/s", throughput(0, math.floor(N / 5))))
print(string.format("throughput_buffered1024_str %.0f msg/s", throughput_strings(1024, N)))
print(string.format("throughput_unbuffered_str %.0f msg/s", throughput_strings(0, math.floor(N / 5))))
local median, p99 = pingpong(20000)
print(string.format("pingpong_median %.2f us", median * 1e6))
print(string.format("pingpong_p99 %.2f us", p99 * 1e6))
print(string.format("select8 %.0f msg/s", select8(math.floor(N / 2))))
