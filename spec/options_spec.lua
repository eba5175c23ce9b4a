-- Options tables across the API (issue 14): an unknown option name raises
-- "fname: unknown option 'x' (known: a, b, c)" instead of being ignored,
-- and misuse is raised at the caller's line, never inside lua/parx/*.lua.
-- The checks are parx.opts (Lua) and px_check_options/px_error_user
-- (runtime/core/errors.c).
--
-- Each case is a one-line function (no tail call, so that its own frame is
-- the caller parx names): the error must start with this file and the line
-- the function is on.

local function noop() end

-- The caller's location a case's error must start with.
local function where(fn)
  local info = debug.getinfo(fn, "S")
  return info.short_src .. ":" .. info.linedefined .. ":"
end

local function raises_at_caller(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error")
  err = tostring(err)
  local want = where(fn)
  assert.equal(want, err:sub(1, #want), err)
  return err
end

local timeline = require "parx.timeline"
local repl = require "parx.repl"
local gpu = parx.gpu
local A = parx.array.from("float32", {{1, 2}, {3, 4}})
local tmp = os.tmpname()
local pool_object -- made in setup: one VM, closed in teardown

-- {function name as the error names it, an option it knows, the call}
local CASES = {
  {"parx.spawn", "daemon", function(o) parx.spawn(o, noop) end},
  {"parx.async", "name", function(o) parx.async(o, noop) end},
  {"parx.wait", "timeout", function(o) parx.wait({}, o) end},
  {"parx.as_completed", "timeout", function(o) parx.as_completed({}, o) end},
  {"gather", "return_errors", function(o) parx.gather(parx.async(noop), o) end},
  {"select", "timeout", function(o) parx.select({}, o) end},
  {"pool.map", "chunksize", function(o) parx.pool.map(noop, {1}, o) end},
  {"pool.starmap", "workers", function(o) parx.pool.starmap(noop, {{1}}, o) end},
  {"pool.imap", "timeout", function(o) parx.pool.imap(noop, {1}, o) end},
  {"pool.imap_unordered", "progress", function(o) parx.pool.imap_unordered(noop, {1}, o) end},
  {"pool.reduce", "n", function(o) parx.pool.reduce(noop, {1}, nil, o) end},
  {"pool.parallel_for", "chunksize", function(o) parx.pool.parallel_for(1, 2, noop, o) end},
  {"pool.map_async", "callback", function(o) parx.pool.map_async(noop, {1}, o) end},
  {"pool.submit", "error_callback", function(o) parx.pool.submit(o, noop) end},
  {"pool.new", "initializer", function(o) parx.pool.new(o) end},
  {"pool.map", "chunksize", function(o) pool_object:map(noop, {1}, o) end},
  {"pool.imap", "chunksize", function(o) pool_object:imap(noop, {1}, o) end},
  {"pool.reduce", "chunksize", function(o) pool_object:reduce(noop, {1}, nil, o) end},
  {"pool.parallel_for", "chunksize", function(o) pool_object:parallel_for(1, 2, noop, o) end},
  {"map_async", "error_callback", function(o) pool_object:map_async(noop, {1}, o) end},
  {"submit", "callback", function(o) pool_object:submit(o, noop) end},
  {"pp", "depth", function(o) parx.pp(1, o) end},
  {"pformat", "width", function(o) parx.pformat(1, o) end},
  {"repl.format", "indent", function(o) repl.format(1, o) end},
  {"parx.progress", "label", function(o) parx.progress(3, o) end},
  {"timeline.write", "title", function(o) timeline.write(tmp, {}, o) end},
  {"timeline.render", "by", function(o) timeline.render({}, o) end},
  {"fs.writefile", "atomic", function(o) parx.fs.writefile(tmp, "x", o) end},
  {"fs.mkdir", "parents", function(o) parx.fs.mkdir(tmp .. ".d", o) end},
  {"fs.remove", "recursive", function(o) parx.fs.remove(tmp .. ".none", o) end},
  {"tcp.connect", "timeout", function(o) parx.tcp.connect("127.0.0.1", 9, o) end},
  {"tcp.listen", "backlog", function(o) parx.tcp.listen("127.0.0.1", 0, noop, o) end},
  {"dns.resolve", "family", function(o) parx.dns.resolve("127.0.0.1", o) end},
  {"http.request", "url", function(o) parx.http.request(o) end},
  {"http.get", "headers", function(o) parx.http.get("http://127.0.0.1:9/", o) end},
  {"http.post", "timeout", function(o) parx.http.post("http://127.0.0.1:9/", "b", o) end},
  {"process.exec", "cwd", function(o) parx.process.exec("true", {}, o) end},
  {"process.spawn", "stdout", function(o) parx.process.spawn("true", {}, o) end},
  {"gpu.matmul", "transa", function(o) gpu.matmul(A, A, o) end},
  {"gpu.rand", "seed", function(o) gpu.rand("float32", {2}, o) end},
  {"gpu.randn", "host", function(o) gpu.randn("float32", {2}, o) end},
}

describe("an unknown option", function()
  setup(function() pool_object = parx.pool.new{workers = 1} end)
  teardown(function()
    pool_object:close()
    os.remove(tmp)
  end)

  for _, case in ipairs(CASES) do
    local fname, known, call = case[1], case[2], case[3]
    it(fname .. " rejects an unknown option and names the valid ones", function()
      local opts = {bogus = 1}
      if fname == "http.request" then opts.url = "http://127.0.0.1:9/" end
      local ok, err = pcall(call, opts)
      assert.is_false(ok, fname .. " accepted {bogus = 1}")
      err = tostring(err)
      assert.truthy(err:find(fname .. ": unknown option 'bogus' (known: ", 1, true), err)
      assert.truthy(err:match("%(known: [^)]*%f[%w_]" .. known .. "%f[^%w_]"), err)
    end)
  end

  it("is named at the caller's line, from Lua and from C", function()
    local lua_err = raises_at_caller(function() parx.wait({}, {bogus = 1}) end)
    assert.truthy(lua_err:find("parx.wait: unknown option 'bogus' (known: any, timeout)", 1, true), lua_err)
    local c_err = raises_at_caller(function() parx.spawn({bogus = 1}, noop) end)
    assert.truthy(c_err:find("parx.spawn: unknown option 'bogus' (known: daemon, name)", 1, true), c_err)
  end)

  it("called straight through pcall, is named at the line of the pcall", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local _, err = pcall(parx.wait, {}, {bogus = 1})
    local want = debug.getinfo(1, "S").short_src .. ":" .. line .. ": parx.wait: unknown option 'bogus'"
    assert.equal(want, tostring(err):sub(1, #want))
  end)

  it("gpu.matmul rejects it before any device work (also without a GPU)", function()
    local ok, err = pcall(gpu.matmul, A, parx.array.from("float64", {{1}}), {bogus = 1})
    assert.is_false(ok)
    -- The option check comes before the operands' own checks.
    assert.truthy(tostring(err):find("gpu.matmul: unknown option 'bogus'", 1, true), err)
  end)

  it("a known option with a wrong value still gives that option's own error", function()
    local err = raises_at_caller(function() parx.spawn({daemon = "yes"}, noop) end)
    assert.truthy(err:find("parx.spawn: option 'daemon' must be a boolean", 1, true), err)
  end)

  it("process.exec rejects stdout and stderr, which only process.spawn reads", function()
    for _, name in ipairs({"stdout", "stderr"}) do
      local err = raises_at_caller(function() parx.process.exec("true", {}, {[name] = "inherit"}) end)
      assert.truthy(err:find("process.exec: unknown option '" .. name .. "' (known: cwd, env, stdin, timeout)", 1, true),
        err)
    end
    local p = parx.process.spawn("true", {}, {stdout = "ignore", stderr = "ignore"})
    assert.equal(0, p:wait())
  end)

  it("mpi.map, mpi.imap and mpi.imap_unordered reject one too", function()
    local PARX = os.getenv("PARX_BIN") or "build/parx"
    local p = io.popen(PARX .. [[ -e '
      local ok, mpi = pcall(require, "parx.mpi")
      if not ok then print("no mpi") return end
      for _, f in ipairs({"map", "imap", "imap_unordered"}) do
        print(select(2, pcall(mpi[f], print, {1}, {bogus = 1})))
      end' 2>&1]])
    local out = p:read("*a")
    p:close()
    if out:find("no mpi", 1, true) then
      pending("parx was built without MPI")
      return
    end
    for _, f in ipairs({"map", "imap", "imap_unordered"}) do
      assert.truthy(out:find("(command line):5: mpi." .. f .. ": unknown option 'bogus' (known: all, chunksize, progress)",
        1, true), out)
    end
  end)
end)

describe("misuse is raised at the caller's line", function()
  local t = parx.async(noop)
  local ended -- a scope whose function has returned
  parx.scope(function(s) ended = s end)
  local closed = parx.channel()
  closed:close()

  local LOCATED = {
    {"parx.gather(1, 2)", function() parx.gather(1, 2) end, "task expected"},
    {"parx.gather{1}", function() parx.gather({1}) end, "item 1 is not a task"},
    {"t:result with a bad timeout", function() t:result("x") end, "timeout must be a number"},
    {"t:wait with a bad timeout", function() t:wait("x") end, "timeout must be a number"},
    {"parx.wait with an item that is not a task", function() parx.wait({t, 5}) end, "item 2 is not a task"},
    {"parx.as_completed with an item that is not a task", function() parx.as_completed({5}) end, "not a task"},
    {"pool.map with a bad option value", function() parx.pool.map(noop, {1}, {chunksize = 0}) end, "chunksize"},
    {"pool.imap with a bad list", function() parx.pool.imap(noop, 5) end, "table expected"},
    {"pool.submit with no function", function() parx.pool.submit({daemon = true}, 5) end, "function expected"},
    {"a scope's spawn after it ended", function() ended:spawn(noop) end, "the scope has ended"},
    {"select with a case that is not a channel", function() parx.select({{5, "recv"}}) end,
     "channel expected"},
    {"select with a bad operation", function() parx.select({{parx.channel(), "peek"}}) end,
     "operation must be"},
    {"parx.timer with no function", function() parx.timer(1, 5) end, "function expected"},
    {"http.request with a bad field", function() parx.http.request({url = 5}) end, "bad field 'url'"},
    {"process.exec with a bad option value", function() parx.process.exec("true", {}, {cwd = 1}) end,
     "bad option 'cwd'"},
    {"fs.lines with no path", function() parx.fs.lines(nil) end, "bad argument #1 to 'lines'"},
    {"fs.exists with no path", function() parx.fs.exists(5) end, "bad argument #1 to 'exists'"},
    {"process.spawn with no command", function() parx.process.spawn(nil) end, "bad argument #1 to 'spawn'"},
    {"process.spawn with bad args", function() parx.process.spawn("true", "x") end, "bad argument #2 to 'spawn'"},
    {"gpu.randn with opts that are not a table", function() gpu.randn("float32", {2}, 5) end,
     "bad argument #3 to 'gpu.randn'"},
    {"parx.timeout with no function", function() parx.timeout(1, nil) end, "bad argument #2 to 'parx.timeout'"},
    {"a send on a closed channel", function() closed:send(1) end, "send on closed channel"},
    {"a condition's wait without its mutex", function() parx.condition():wait(0) end, "does not hold"},
    {"a condition's wait_for with no predicate", function() parx.condition():wait_for(nil) end,
     "bad argument #1 to 'wait_for'"},
    {"parx.timer with a negative delay", function() parx.timer(-1, noop) end, "bad argument #1 to 'timer'"},
    {"parx.signal with an unknown signal", function() parx.signal("SIGFOO", noop) end,
     "bad argument #1 to 'signal' (unknown signal 'SIGFOO')"},
    {"gpu.matmul with mismatched dtypes", function() gpu.matmul(A, parx.array.from("float64", {{1}})) end,
     "dtype mismatch"},
  }

  it("a scope's spawn with no function names the line in the scope's body", function()
    local body = function(s) s:spawn(5) end
    local ok, err = pcall(parx.scope, body)
    assert.is_false(ok)
    err = tostring(err)
    assert.truthy(err:find(where(body) .. " bad argument #1 to 'spawn' (function expected, got number)", 1, true),
      err)
  end)

  for _, case in ipairs(LOCATED) do
    local what, call, msg = case[1], case[2], case[3]
    it(what .. " names the caller's file and line", function()
      local err = raises_at_caller(call)
      assert.truthy(err:find(msg, 1, true), err)
      assert.falsy(err:find("lua/parx/", 1, true), err)
    end)
  end
end)
