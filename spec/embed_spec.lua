-- Embedding: scripts/embed/host.c built against libparx (by `make test`,
-- as build/embed-host) and, after `make install` into a scratch directory,
-- through pkg-config.
local BUILD = os.getenv("PARX_BUILD") or "build"
local CC = os.getenv("PARX_CC") or "cc"
local LDFLAGS = os.getenv("PARX_LDFLAGS") or ""

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function capture(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"::$?\"")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)::(%d+)\n?$")
  return tonumber(code), body
end

local function check_host_output(out)
  assert.truthy(out:find("lua says\t42", 1, true), out)
  assert.truthy(out:find("host reads answer = 42", 1, true), out)
  assert.truthy(out:find("host drove the task: steps_done = 3", 1, true), out)
  assert.truthy(out:find("error result PARX_ERRRUN: host-error:1: raised on purpose", 1, true), out)
  assert.truthy(out:find("syntax result PARX_ERRSYNTAX", 1, true), out)
  assert.truthy(out:find('after success: result 0, last error ""', 1, true), out)
  assert.truthy(out:find("timeout from now: shrinks to 0", 1, true), out)
  assert.truthy(out:find("host closed the runtime", 1, true), out)
end

-- The calls a host with work of its own needs (host.c, sections 6-11):
-- one run of the host, one behaviour per spec.
describe("the embedding API from a C host", function()
  local out
  local function host_output()
    if not out then
      local code
      code, out = capture("timeout 60 " .. q(BUILD .. "/embed-host"))
      assert.are.equal(0, code, out)
    end
    return out
  end
  local function has(line) assert.truthy(host_output():find(line, 1, true), host_output()) end

  it("parx_register_module gives every VM a luaL_Reg module, global and required", function()
    has("parx_call on a worker: n=3 sum=120 module=hostlib")
  end)
  it("parx_register_module once workers run fails with a reason", function()
    has("register after workers: PARX_ERRRUN: parx_register_module: workers are running")
  end)
  it("parx_call runs a Lua function on a worker and pushes its results, tables included", function()
    has("parx_call on a worker: n=3 sum=120 module=hostlib, then second")
  end)
  it("parx_call of a failing function returns PARX_ERRRUN with the error value pushed", function()
    has("parx_call error: PARX_ERRRUN, error value .why = on purpose")
  end)
  it("parx_spawn gives a handle the host polls between parx_step calls", function()
    has("parx_spawn polled between steps: 1 result, slept")
  end)
  it("tables cross host channels both ways through the marshaller", function()
    has("host channel: a table back, who=from C, #list=3, list[3].deep=true")
  end)
  it("a value that cannot cross a host channel gives PARX_CHAN_ERRVALUE and the reason", function()
    has("a coroutine: PARX_CHAN_ERRVALUE (cannot send argument #1 (a coroutine) to another VM)")
  end)
  it("after os.exit returned PARX_EXIT once, the next run runs", function()
    has("os.exit: PARX_EXIT (code 3), then PARX_OK with after_exit = 42")
  end)
  -- It once dropped the new coroutine from that stack before registering
  -- the task (only there: a task's own coroutine is a different state).
  it("parx.async called by the host on the main VM's own state starts a task", function()
    has("parx.async on the main state: ran, async_ran = 42")
  end)

  describe("runtimes (host.c runtimes)", function()
    local rout
    local function has_r(line)
      if not rout then
        local code
        code, rout = capture("timeout 60 " .. q(BUILD .. "/embed-host") .. " runtimes")
        assert.are.equal(0, code, rout)
      end
      assert.truthy(rout:find(line, 1, true), rout)
    end
    it("two runtimes open at once in one process keep their own VMs and globals", function()
      has_r("two runtimes: 30 39, globals a b")
    end)
    it("a runtime opens, runs and closes on a thread other than main, two at a time", function()
      has_r("on other threads: 114 114")
    end)
    it("a runtime can be opened again after close", function()
      has_r("reopened: 5 of 5")
    end)
  end)
end)

-- Hosts around their own event loops (scripts/embed/lines.h): each line
-- of input becomes a task on a worker; results print in input order.
describe("hosts with their own event loop", function()
  local input = "a bb ccc\nfail\nhello wide world of parx\none\n"
  local expected = "line 1: 3 words, longest 'ccc', A BB CCC\n"
    .. "line 2: failed: asked to fail\n"
    .. "line 3: 5 words, longest 'hello', HELLO WIDE WORLD OF PARX\n"
    .. "line 4: 1 words, longest 'one', ONE\n"
  local function run_host(exe)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(input)
    f:close()
    local code, out = capture("timeout 30 " .. q(exe) .. " < " .. q(path))
    os.remove(path)
    return code, out
  end

  it("a poll() loop host drives parx through parx_backend_fd and parx_backend_timeout", function()
    local code, out = run_host(BUILD .. "/embed-poll-host")
    assert.are.equal(0, code, out)
    assert.are.equal(expected .. "poll host: 4 lines, stepped from its own loop\n", out)
  end)

  it("a GLib main loop host drives parx with the backend fd as a GLib source", function()
    if os.execute("pkg-config --exists glib-2.0") ~= 0 then
      pending("GLib is not installed (libglib2.0-dev)")
      return
    end
    local code, out = run_host(BUILD .. "/embed-glib-host")
    assert.are.equal(0, code, out)
    assert.are.equal(expected .. "glib host: 4 lines, stepped from a GLib main loop\n", out)
  end)
end)

describe("embedding libparx", function()
  it("runs the host program linked against libparx.a", function()
    local host = BUILD .. "/embed-host"
    local code, out = capture(q(host))
    assert.are.equal(0, code, out)
    check_host_output(out)
  end)

  it("parx_run returns PARX_EXIT and the host can close at once while a worker runs a compiled loop", function()
    local host = BUILD .. "/embed-host"
    local code, out = capture("timeout 20 " .. q(host) .. " exit")
    assert.are.equal(0, code, out)
    assert.truthy(out:find("run result PARX_EXIT, exit code 5", 1, true), out)
    assert.truthy(out:find("close: worker abandoned", 1, true), out)
  end)

  -- spec/panic_host.c breaks the rule on purpose (an unprotected error in
  -- a loop callback): the runtime reports it and stops, the host goes on.
  for _, where in ipairs({ "main", "worker" }) do
    it("a panic on the " .. where .. " VM is reported and stops the runtime instead of exiting the process", function()
      local exe = os.tmpname()
      local build = capture(string.format(
        "%s -std=gnu11 -O1 -g -pthread -Iruntime -Iruntime/core $(pkg-config --cflags luajit libuv) "
          .. "-o %s spec/panic_host.c %s/libparx.a -Wl,-E $(pkg-config --libs luajit libuv) "
          .. "-lm -ldl -lpthread %s",
        CC, q(exe), q(BUILD), LDFLAGS))
      assert.are.equal(0, build)
      local code, out = capture("timeout 20 " .. q(exe) .. " " .. where)
      os.remove(exe)
      assert.are.equal(0, code, out)
      assert.truthy(out:find("parx: PANIC: unprotected error in", 1, true), out)
      assert.truthy(out:find("host survived the panic: PANIC", 1, true), out)
      assert.truthy(out:find("host closed the runtime", 1, true), out)
    end)
  end

  -- spec/api_host.c calls what no other host program does: parx_strerror,
  -- parx_set_args, parx_run_file (a file, standard input), parx_start_function,
  -- parx_task_wait, parx_channel_retain, parx_channel_recv_lua,
  -- parx_dump_on_sigusr1.
  it("the rest of parx.h works from a host: strerror, args, run_file, start_function, task_wait, retain, recv_lua, the SIGUSR1 dump", function()
    local exe, tmp = os.tmpname(), os.tmpname()
    os.remove(tmp)
    assert(parx.fs.mkdir(tmp))
    local build, msg = capture(string.format(
      "%s -std=gnu11 -O1 -g -pthread -Iruntime $(pkg-config --cflags luajit libuv) "
        .. "-o %s spec/api_host.c %s/libparx.a -Wl,-E $(pkg-config --libs luajit libuv) "
        .. "-lm -ldl -lpthread %s",
      CC, q(exe), q(BUILD), LDFLAGS))
    assert.are.equal(0, build, msg)
    local code, out = capture("echo 'FROM_STDIN = 42' | TMPDIR=" .. q(tmp) .. " timeout 20 " .. q(exe))
    os.remove(exe)
    local dumps = parx.fs.readdir(tmp)
    parx.fs.remove(tmp, {recursive = true})
    assert.are.equal(0, code, out)
    for _, line in ipairs({
      "strerror: the code does not compile, unknown result",
      "args: one two",
      "run_file: file twice, stdin 42",
      "start_function: sum 5, then started and failed",
      "task_wait: 42, then worker failed",
      "channel: list[3] = 3, then closed",
      "parx: SIGUSR1: every task of process",
      "dump: the process went on",
      "host closed the runtime",
    }) do
      assert.truthy(out:find(line, 1, true), line .. " missing from:\n" .. out)
    end
    assert.are.equal(1, #dumps)
    assert.truthy(dumps[1]:match("^parx%-%d+%-1%.json$"), dumps[1])
  end)

  it("builds the host with pkg-config after make install", function()
    if os.execute("command -v pkg-config >/dev/null 2>&1") ~= 0 then
      pending("pkg-config is not installed")
      return
    end
    local root = os.tmpname()
    os.remove(root)
    local prefix = "/opt/parx-test"
    -- make inherits BUILD, CC and the flags from `make test` (MAKEFLAGS).
    local code, out = capture("make -s --no-print-directory install DESTDIR="
      .. q(root) .. " PREFIX=" .. prefix)
    assert.are.equal(0, code, out)
    local libdir = root .. prefix .. "/lib"
    local pc = io.open(libdir .. "/pkgconfig/parx.pc"):read("*a")
    assert.truthy(pc:find("Name: parx", 1, true))
    local env = "PKG_CONFIG_PATH=" .. q(libdir .. "/pkgconfig")
    code, out = capture(env .. " pkg-config --cflags --libs parx")
    assert.are.equal(0, code, out)
    local flags = out:gsub("\n", " ")
    assert.truthy(flags:find("-I" .. prefix .. "/include", 1, true), flags)
    assert.truthy(flags:find("-L" .. prefix .. "/lib -lparx", 1, true), flags)
    -- The files are staged under DESTDIR: point the flags there.
    flags = flags:gsub(prefix:gsub("%-", "%%-"), root .. prefix)
    local exe = root .. "/host"
    code, out = capture(string.format("%s -o %s scripts/embed/host.c %s %s",
      CC, q(exe), flags, LDFLAGS))
    assert.are.equal(0, code, out)
    code, out = capture("LD_LIBRARY_PATH=" .. q(libdir) .. " " .. q(exe))
    assert.are.equal(0, code, out)
    check_host_output(out)
    os.execute("rm -rf " .. q(root))
  end)
end)

-- `require "parx"` from a plain luajit: libparx.so as a Lua C module
-- (runtime/luaopen_parx.c), found through LUA_CPATH as parx.so.
describe("require 'parx' from a plain luajit", function()
  local have_luajit = os.execute("command -v luajit >/dev/null 2>&1") == 0
  local sanitizer = os.getenv("PARX_SANITIZER")
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. q(dir))
  local lib = BUILD .. "/libparx.so.0"
  os.execute("ln -sf " .. q(lib:sub(1, 1) == "/" and lib or (os.getenv("PWD") .. "/" .. lib)) .. " " .. q(dir .. "/parx.so"))

  local function luajit(script)
    local path = dir .. "/script.lua"
    local f = assert(io.open(path, "wb"))
    f:write(script)
    f:close()
    return capture("LUA_CPATH=" .. q(dir .. "/?.so") .. " timeout 30 luajit " .. q(path))
  end

  local function usable()
    if not have_luajit then pending("luajit is not installed") return false end
    if sanitizer then pending("a sanitizer runtime cannot be loaded by a plain luajit") return false end
    return true
  end

  it("a plain luajit script requires parx and maps over its workers", function()
    if not usable() then return end
    local code, out = luajit([[
      local parx = require "parx"
      local squares = parx.map(function(x) return x * x end, {1, 2, 3, 4, 5})
      print(#squares, squares[1], squares[5])
      print(parx.run(function() return parx.spawn(function() return "on a worker" end):join() end))
    ]])
    assert.are.equal(0, code, out)
    assert.are.equal("5\t1\t25\non a worker\n", out)
  end)

  it("values, tables and errors cross between the host VM and parx", function()
    if not usable() then return end
    local code, out = luajit([[
      local parx = require "parx"
      local t = parx.run(function(a, b) return {sum = a.x + b, list = {b, b}} end, {x = 1}, 2)
      print(t.sum, t.list[2])
      print(pcall(parx.run, function() error("raised in parx") end))
    ]])
    assert.are.equal(0, code, out)
    assert.truthy(out:find("^3\t2\nfalse\t[^\n]*raised in parx\n"), out)
  end)

  it("the host's own loop drives the main VM with parx.step", function()
    if not usable() then return end
    local code, out = luajit([[
      local parx = require "parx"
      local h = parx.start(function() parx.sleep(0.05) return "stepped" end)
      local steps = 0
      while not h:done() do parx.step(true) steps = steps + 1 end
      print(h:result(), steps > 0, parx.fd() >= 0, type(parx.timeout()))
      parx.close()
      print(pcall(parx.run, function() end))
    ]])
    assert.are.equal(0, code, out)
    assert.truthy(out:find("^stepped\ttrue\ttrue\tnumber\nfalse\t[^\n]*closed"), out)
  end)
end)

describe("libparx as an installed library", function()
  it("libparx.so has the SONAME libparx.so.0", function()
    if os.execute("command -v objdump >/dev/null 2>&1") ~= 0 then
      pending("objdump is not installed")
      return
    end
    local code, out = capture("objdump -p " .. q(BUILD .. "/libparx.so"))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("SONAME%s+libparx%.so%.0\n"), out)
  end)

  it("after make install PREFIX=dir, the host built with pkg-config runs without LD_LIBRARY_PATH", function()
    if os.execute("command -v pkg-config >/dev/null 2>&1") ~= 0 then
      pending("pkg-config is not installed")
      return
    end
    local prefix = os.tmpname()
    os.remove(prefix)
    local code, out = capture("make -s --no-print-directory install PREFIX=" .. q(prefix))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("rpath", 1, true), out) -- says how the library will be found
    local env = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig")
    local exe = prefix .. "/host"
    code, out = capture(string.format("%s %s -o %s scripts/embed/host.c $(%s pkg-config --cflags --libs parx) %s",
      env, CC, q(exe), env, LDFLAGS))
    assert.are.equal(0, code, out)
    code, out = capture("env -u LD_LIBRARY_PATH " .. q(exe))
    assert.are.equal(0, code, out)
    check_host_output(out)
    -- A static link takes what Libs.private and Requires.private add.
    code, out = capture(string.format("%s -o %s scripts/embed/host.c $(%s pkg-config --cflags parx) %s/lib/libparx.a "
      .. "$(%s pkg-config --static --libs parx | sed 's/-lparx//') %s", CC, q(exe .. "-static"), env,
      q(prefix), env, LDFLAGS))
    assert.are.equal(0, code, out)
    code, out = capture(q(exe .. "-static"))
    assert.are.equal(0, code, out)
    check_host_output(out)
    -- parx.so where luajit looks for C modules, and the man page.
    assert.truthy(io.open(prefix .. "/lib/lua/5.1/parx.so"), "parx.so")
    assert.truthy(io.open(prefix .. "/share/man/man1/parx.1"), "parx.1")
    os.execute("rm -rf " .. q(prefix))
  end)

  it("make deb builds a package with the binary, library, header, Lua module and man page", function()
    if os.execute("command -v dpkg-deb >/dev/null 2>&1") ~= 0 then
      pending("dpkg-deb is not installed")
      return
    end
    local code, out = capture("make -s --no-print-directory deb && dpkg-deb -c " .. q(BUILD) .. "/parx_*.deb")
    assert.are.equal(0, code, out)
    for _, path in ipairs({ "./usr/bin/parx", "/libparx.so.0.1.0", "/libparx.so.0 ->", "./usr/include/parx.h",
                            "/lua/5.1/parx.so ->", "./usr/share/man/man1/parx.1.gz", "/pkgconfig/parx.pc" }) do
      assert.truthy(out:find(path, 1, true), path .. "\n" .. out)
    end
  end)
end)
