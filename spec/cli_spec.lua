-- The parx command line: lua-compatible flags, the arg table, exit codes,
-- and one-line messages for bad input.  Runs build/parx (PARX_BIN) as a
-- child process.
local PARX = os.getenv("PARX_BIN") or "build/parx"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. q(tmp)) == 0 or true)

-- run(shell words, opts) -> exit status, stdout, stderr.  opts.input feeds
-- stdin, opts.env is a prefix like "PARX_WORKERS=2", opts.cd a directory,
-- opts.timeout a hang guard in seconds (status 124 when it fired),
-- opts.ulimit a limit on open files.
local function run(args, opts)
  opts = opts or {}
  local out, err, input = tmp .. "/out", tmp .. "/err", tmp .. "/in"
  write(input, opts.input or "")
  -- The limit applies inside the group, after its redirections are open.
  local cmd = string.format("%s{ %s%s %s%s %s; } <%s >%s 2>%s; echo $?",
    opts.cd and ("cd " .. q(opts.cd) .. " && ") or "",
    opts.ulimit and ("ulimit -n " .. opts.ulimit .. "; ") or "",
    opts.env or "", opts.timeout and ("timeout " .. opts.timeout .. " ") or "",
    opts.parx or q(PARX), args, q(input), q(out), q(err))
  local p = io.popen(cmd)
  local code = tonumber(p:read("*a"))
  p:close()
  return code, slurp(out), slurp(err)
end

local function lines(s)
  local n = 0
  for _ in s:gmatch("[^\n]*\n") do n = n + 1 end
  return n
end

describe("parx command line", function()
  it("runs -e statements in order", function()
    local code, out = run("-e 'print(1+1)' -e 'print(\"second\")'")
    assert.are.equal(0, code)
    assert.are.equal("2\nsecond\n", out)
  end)

  it("accepts -e with its statement attached", function()
    local code, out = run("-e'print(7)'")
    assert.are.equal(0, code)
    assert.are.equal("7\n", out)
  end)

  it("gives a script its arg table with negative indices and ...", function()
    local script = write(tmp .. "/args.lua", [[
      print(arg[0], arg[1], arg[2], #arg, select('#', ...), ...)
      print(arg[-1], arg[-2], arg[-3] ~= nil)
    ]])
    local code, out = run("-e 'x=1' " .. q(script) .. " a 'b c'")
    assert.are.equal(0, code)
    local first, second = out:match("([^\n]*)\n([^\n]*)\n")
    assert.are.equal(script .. "\ta\tb c\t2\t2\ta\tb c", first)
    assert.are.equal("x=1\t-e\ttrue", second)
  end)

  it("stops reading options at --", function()
    local script = write(tmp .. "/dash.lua", "print(arg[1])")
    local code, out = run("-- " .. q(script) .. " -v")
    assert.are.equal(0, code)
    assert.are.equal("-v\n", out)
  end)

  it("runs standard input for -", function()
    local code, out = run("- x", { input = "print('stdin', arg[1])\n" })
    assert.are.equal(0, code)
    assert.are.equal("stdin\tx\n", out)
  end)

  it("runs standard input when it is not a terminal and nothing is given", function()
    local code, out = run("", { input = "print(6*7)\n" })
    assert.are.equal(0, code)
    assert.are.equal("42\n", out)
  end)

  it("skips a shebang line", function()
    local script = write(tmp .. "/shebang.lua",
      "#!/usr/bin/env parx\nprint('after shebang')\n")
    local code, out = run(q(script))
    assert.are.equal(0, code)
    assert.are.equal("after shebang\n", out)
  end)

  it("requires a module with -l into a global of its name", function()
    write(tmp .. "/mymod.lua", "return { value = 'from mymod' }")
    local code, out = run("-l mymod -e 'print(mymod.value)'",
      { env = "LUA_PATH=" .. q(tmp .. "/?.lua;;") .. " " })
    assert.are.equal(0, code)
    assert.are.equal("from mymod\n", out)
  end)

  it("prints the version with -v", function()
    local code, out = run("-v")
    assert.are.equal(0, code)
    assert.truthy(out:match("^parx %d+%.%d+%.%d+ %(LuaJIT"))
  end)

  it("prints usage with --help", function()
    local code, out = run("--help")
    assert.are.equal(0, code)
    assert.truthy(out:find("usage: parx", 1, true))
    assert.truthy(out:find("--workers", 1, true))
  end)

  it("has the global parx and require 'parx' in any directory", function()
    local code, out = run("-e 'print(type(parx), require(\"parx\") == parx or type(require(\"parx\")))'",
      { cd = "/", env = "LUA_PATH= " })
    assert.are.equal(0, code)
    assert.truthy(out:match("^table\t"), out)
  end)

  describe("exit status", function()
    it("is os.exit's code", function()
      assert.are.equal(3, (run("-e 'os.exit(3)'")))
      assert.are.equal(0, (run("-e 'os.exit(true)'")))
      assert.are.equal(1, (run("-e 'os.exit(false)'")))
      assert.are.equal(0, (run("-e 'os.exit()'")))
    end)

    it("flushes output written before os.exit", function()
      local code, out = run("-e 'io.write(\"no newline\") os.exit(5)'")
      assert.are.equal(5, code)
      assert.are.equal("no newline", out)
    end)

    it("is 1 with a traceback for an uncaught error", function()
      local script = write(tmp .. "/boom.lua", [[
        local function inner() error("boom here") end
        inner()
      ]])
      local code, out, err = run(q(script))
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.truthy(err:find("boom.lua:1: boom here", 1, true), err)
      assert.truthy(err:find("stack traceback", 1, true), err)
      assert.truthy(err:find("inner", 1, true), err)
    end)

    it("is 1 for an error value that is not a string", function()
      local code, _, err = run("-e 'error({})'")
      assert.are.equal(1, code)
      assert.truthy(#err > 0)
    end)
  end)

  describe("bad input", function()
    local function one_line_error(code, out, err)
      assert.are_not.equal(0, code)
      assert.are.equal("", out)
      assert.are.equal(1, lines(err), err)
      assert.truthy(err:match("^parx: "), err)
    end

    it("names a missing script", function()
      local code, out, err = run(q(tmp .. "/no_such_script.lua"))
      one_line_error(code, out, err)
      assert.truthy(err:find("no_such_script.lua", 1, true))
    end)

    it("names an unknown option", function()
      local code, out, err = run("--frobnicate")
      one_line_error(code, out, err)
      assert.truthy(err:find("--frobnicate", 1, true))
    end)

    it("names an option missing its argument", function()
      local code, out, err = run("-e")
      one_line_error(code, out, err)
      assert.truthy(err:find("-e", 1, true))
    end)

    it("reports a syntax error in -e", function()
      local code, out, err = run("-e 'x = = 1'")
      one_line_error(code, out, err)
      assert.truthy(err:find("near", 1, true))
    end)

    it("reports a syntax error in a script", function()
      local script = write(tmp .. "/syntax.lua", "local = 1\n")
      local code, out, err = run(q(script))
      one_line_error(code, out, err)
      assert.truthy(err:find("syntax.lua:1:", 1, true), err)
    end)

    it("names a missing -l module and lists the paths searched, as luajit does", function()
      local code, out, err = run("-l no_such_module_xyz")
      assert.are_not.equal(0, code)
      assert.are.equal("", out)
      assert.truthy(err:find("^parx: module 'no_such_module_xyz' not found:\n"), err)
      assert.truthy(err:find("no field package.preload['no_such_module_xyz']", 1, true), err)
      assert.truthy(err:find("no file './no_such_module_xyz.lua'", 1, true), err)
      assert.falsy(err:find("stack traceback", 1, true), err)
    end)

    it("rejects a bad --workers count", function()
      for _, v in ipairs({ "0", "-3", "abc", "2x" }) do
        local code, out, err = run("--workers " .. v .. " -e 'print(1)'")
        one_line_error(code, out, err)
        assert.truthy(err:find("workers", 1, true))
      end
    end)

    it("rejects a bad PARX_WORKERS", function()
      local code, out, err = run("-e 'print(1)'", { env = "PARX_WORKERS=lots " })
      one_line_error(code, out, err)
      assert.truthy(err:find("PARX_WORKERS", 1, true))
    end)

    it("reports a directory given as the script", function()
      local code, out, err = run(q(tmp))
      assert.are_not.equal(0, code)
      assert.are.equal("", out)
      assert.truthy(err:match("^parx: "), err)
    end)
  end)

  describe("--workers", function()
    it("is accepted in both spellings", function()
      assert.are.equal(0, (run("--workers 2 -e 'print(1)'")))
      assert.are.equal(0, (run("--workers=3 -e 'print(1)'")))
    end)

    it("sets the pool size", function()
      local code, out = run("--workers 3 -e 'print(parx.pool.size())'")
      if code ~= 0 or not out:match("^%d") then
        pending("parx.pool.size() is not available yet")
        return
      end
      assert.are.equal("3\n", out)
    end)
  end)

  it("runs the REPL on piped input with -i and prints values", function()
    local code, out = run("-i", { input = "1+1\nx = {a = 1, b = {2, 3}}\nx\n" })
    assert.are.equal(0, code)
    assert.are.equal("2\n{a = 1, b = {2, 3}}\n", out)
  end)

  it("runs busted specs with busted --lua=parx", function()
    if os.execute("command -v lua >/dev/null 2>&1") ~= 0 then
      pending("no `lua` on PATH to start busted's outer process")
      return
    end
    local dir = tmp .. "/bustedrun"
    os.execute("mkdir -p " .. q(dir))
    write(dir .. "/inner_spec.lua", [[
      describe("under parx", function()
        it("has the parx global", function() assert.are.equal("table", type(parx)) end)
      end)
    ]])
    local code, out = run("--lua=" .. q(PARX) .. " -o TAP inner_spec.lua",
      { parx = "busted", cd = dir })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("ok 1", 1, true), out)
  end)
end)

describe("parx command line as luajit's", function()
  it("-joff and -jon switch the main VM's JIT as jit.off and jit.on do", function()
    local code, out, err = run("-joff -e 'print((jit.status()))' -j on -e 'print((jit.status()))'")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^false\ntrue"), out)
  end)

  it("-j with a jit.* module starts it with its options (-jv=file)", function()
    local log = tmp .. "/jitv.log"
    os.remove(log)
    local code, _, err = run("-jv=" .. q(log) .. " -e 'local x = 0 for i = 1, 1e5 do x = x + i end'")
    assert.are.equal(0, code, err)
    assert.truthy(slurp(log):find("TRACE", 1, true), slurp(log))
  end)

  it("an unknown -j command says so", function()
    local code, _, err = run("-jnosuchcmd -e 'print(1)'")
    assert.are_not.equal(0, code)
    assert.truthy(err:find("unknown luaJIT command", 1, true), err)
  end)

  it("-O passes its options to jit.opt.start", function()
    local code, out, err = run("-O-fold,hotloop=3 -e 'print(require(\"jit.util\") ~= nil)'")
    assert.are.equal(0, code, err)
    assert.are.equal("true\n", out)
    code, _, err = run("-Onosuchflag -e 'print(1)'")
    assert.are_not.equal(0, code)
    assert.truthy(err:find("nosuchflag", 1, true), err)
  end)

  it("-b saves bytecode that parx and luajit then run", function()
    local src, bc = write(tmp .. "/b.lua", "print('from bytecode', ...)"), tmp .. "/b.out"
    local code, _, err = run("-b " .. q(src) .. " " .. q(bc))
    assert.are.equal(0, code, err)
    assert.are.equal("\27LJ", slurp(bc):sub(1, 3))
    local out
    code, out, err = run(q(bc) .. " x")
    assert.are.equal(0, code, err)
    assert.are.equal("from bytecode\tx\n", out)
    code, out = run("-bl " .. q(src))
    assert.are.equal(0, code)
    assert.truthy(out:find("GGET", 1, true), out)
  end)

  it("runs LUA_INIT_5_1, else LUA_INIT, before -e; @file runs a file; -E skips them", function()
    local code, out = run("-e 'print(x)'", { env = "LUA_INIT='x = 1' LUA_INIT_5_1='x = 51' " })
    assert.are.equal(0, code)
    assert.are.equal("51\n", out)
    code, out = run("-e 'print(x)'", { env = "LUA_INIT='x = 1' " })
    assert.are.equal("1\n", out)
    local init = write(tmp .. "/init.lua", "x = 'from file'")
    code, out = run("-e 'print(x)'", { env = "LUA_INIT=@" .. q(init) .. " " })
    assert.are.equal("from file\n", out)
    code, out = run("-E -e 'print(x)'", { env = "LUA_INIT='x = 1' " })
    assert.are.equal("nil\n", out)
    local err
    code, out, err = run("-e 'print(x)'", { env = "LUA_INIT='error(\"bad init\")' " })
    assert.are_not.equal(0, code)
    assert.truthy(err:find("LUA_INIT:1: bad init", 1, true), err)
  end)

  it("gives -e-only runs the arg table luajit gives them", function()
    local code, out = run("-e 'print(arg[0], arg[-1], arg[-2], #arg)'")
    assert.are.equal(0, code)
    assert.are.equal("nil\tprint(arg[0], arg[-1], arg[-2], #arg)\t-e\t0\n", out)
  end)

  it("prints an error object through its __tostring", function()
    local code, out, err = run("-e 'error(setmetatable({}, {__tostring = function() return \"custom error\" end}))'")
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.truthy(err:find("^parx: custom error"), err)
    local script = write(tmp .. "/objerr.lua",
      "error(setmetatable({}, {__tostring = function() return 'from a script' end}))")
    code, out, err = run(q(script))
    assert.are.equal(1, code)
    assert.truthy(err:find("^parx: from a script"), err)
  end)
end)

describe("parx command line and replaced globals", function()
  it("a script after -e code that made the globals strict runs instead of panicking", function()
    local script = write(tmp .. "/strict.lua", "print('script ran', select('#', ...))")
    local code, out, err = run("-e " .. q("arg = nil setmetatable(_G, {__index = function(_, k) "
      .. "error('strict: ' .. k) end})") .. " " .. q(script) .. " a b", { timeout = 20 })
    assert.are.equal(0, code, err)
    assert.falsy(err:find("PANIC", 1, true), err)
    assert.are.equal("script ran\t0\n", out)
  end)
end)

describe("parx command line exits", function()
  -- A worker busy in a JIT-compiled loop that never parks.
  local busy = "parx.spawn(function() local x = 0 for i = 1, 1e12 do x = x + i end return x end) parx.sleep(0.1) "

  it("os.exit ends the process while a worker runs a compiled loop", function()
    local code, out = run("-e " .. q(busy .. "io.write('bye') os.exit(3)"), { timeout = 20 })
    assert.are.equal(3, code)
    assert.are.equal("bye", out)
  end)

  it("an uncaught error in the main chunk ends the process while a worker runs a compiled loop", function()
    local code, out, err = run("-e " .. q(busy .. "io.write('before') error('boom')"), { timeout = 20 })
    assert.are.equal(1, code, err)
    assert.are.equal("before", out)
    assert.truthy(err:find("boom", 1, true), err)
  end)

  it("os.exit in a worker ends the process while another worker runs a compiled loop", function()
    local code, out = run("--workers 2 -e " .. q(busy
      .. "parx.spawn(function() io.write('from worker') os.exit(4) end) parx.sleep(30) print('not reached')"),
      { timeout = 20 })
    assert.are.equal(4, code)
    assert.are.equal("from worker", out)
  end)

  -- Start parx, send it sig once it has written, return status and stdout
  -- (read through a pipe, where stdout is fully buffered).
  -- The signal must come after parx installed its handlers: a sanitizer
  -- build on a loaded machine can take seconds to start.
  local settle = os.getenv("PARX_SANITIZER") and 3 or 0.5
  local function stopped_by(sig, script)
    local pid, out, status = tmp .. "/sig.pid", tmp .. "/sig.out", tmp .. "/sig.status"
    os.remove(pid)
    -- parx itself gets the pid (exec), so the signal reaches it directly.
    local starter = write(tmp .. "/sig.sh", string.format("ulimit -t 30\necho $$ > %s\nexec %s -e %s\n",
      q(pid), q(PARX), q(script)))
    local cmd = string.format(
      "(for i in $(seq 200); do [ -s %s ] && break; sleep 0.05; done; sleep %s; kill -%s $(cat %s)) & "
      .. "{ sh %s; echo $? > %s; } | cat > %s; wait",
      q(pid), settle, sig, q(pid), q(starter), q(status), q(out))
    local p = io.popen(cmd)
    p:read("*a")
    p:close()
    return tonumber(slurp(status)), slurp(out)
  end

  it("stdout written to a pipe is flushed when parx is stopped by SIGTERM", function()
    local code, out = stopped_by("TERM", "io.write('hello') parx.sleep(30)")
    assert.are.equal("hello", out)
    assert.are.equal(128 + 15, code) -- died by the signal, as the shell sees it
  end)

  it("stdout written to a pipe is flushed when parx is stopped by SIGTERM during a compiled loop", function()
    if os.getenv("PARX_SANITIZER") == "thread" then
      -- TSan defers a signal to the thread's next intercepted call, which
      -- a compiled LuaJIT loop never makes: the handler would never run.
      pending("TSan holds signals back during uninstrumented LuaJIT code")
      return
    end
    local code, out = stopped_by("TERM", "io.write('hello') local x = 0 for i = 1, 1e12 do x = x + i end")
    assert.are.equal("hello", out)
    assert.are.equal(128 + 15, code)
  end)

  it("stdout written to a pipe is flushed when parx is stopped by SIGTERM while a worker runs a compiled loop", function()
    local code, out = stopped_by("TERM", busy .. "io.write('hello') parx.sleep(30)")
    assert.are.equal("hello", out)
    assert.are.equal(128 + 15, code)
  end)

  it("stdout written to a pipe is flushed when parx is stopped by SIGHUP while its workers write", function()
    local code, out = stopped_by("HUP", "io.write('hello') for i = 1, 2 do parx.spawn(function() "
      .. "while true do io.write('') parx.sleep(0.001) end end) end parx.sleep(30)")
    assert.are.equal("hello", out)
    assert.are.equal(128 + 1, code)
  end)

  it("a signal during start-up needs no thread: parx -e '' runs on one thread", function()
    -- The flushing is done by the handler itself (runtime/cli/exit.c):
    -- a waiting thread made every start-up about 1 ms slower.
    local code, out = run("-e " .. q("local f = io.open('/proc/self/status') local s = f:read('*a') f:close() "
      .. "io.write(s:match('Threads:%s*(%d+)'))"))
    assert.are.equal(0, code)
    assert.are.equal("1", out)
  end)

  it("parx started with no file descriptor left for its loop says why", function()
    if os.getenv("PARX_SANITIZER") then
      pending("the sanitizer's own runtime needs file descriptors at exit")
      return
    end
    local code, out, err = run("-e 'print(1)'", { ulimit = 5 })
    assert.are.equal(1, code, err)
    assert.are.equal("", out)
    assert.truthy(err:find("parx: cannot start the runtime: Too many open files", 1, true), err)
  end)

  -- A script's first lines: every descriptor the process may open is open.
  local exhaust_fds = [[
      local files = {}
      while true do
        local f = io.open("/dev/null")
        if not f then break end
        files[#files + 1] = f
      end
  ]]

  it("a spawn with no file descriptors left fails with EMFILE instead of hanging", function()
    local script = exhaust_fds .. [[
      local ok, err = pcall(parx.spawn, function() return 1 end)
      print(ok, err)
      for _, f in ipairs(files) do f:close() end
      print(parx.spawn(function() return "started later" end):join())
    ]]
    local code, out, err = run("--workers 2 -e " .. q(script), { ulimit = 64, timeout = 20 })
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^false\t[^\n]*EMFILE: too many open files"), out)
    assert.truthy(out:find("\nstarted later\n", 1, true), out)
  end)

  it("workers that find descriptors for only some of them start those, and the runtime goes on", function()
    local script = exhaust_fds .. [[
      for i = 1, 5 do table.remove(files):close() end -- room for one worker's loop
      print(parx.spawn(function() return "ran" end):join(), parx.pool.size())
      for _, f in ipairs(files) do f:close() end
      print(parx.pool.map(function(x) return x * 2 end, {1, 2, 3})[3])
    ]]
    local code, out, err = run("--workers 3 -e " .. q(script), { ulimit = 64, timeout = 20 })
    assert.are.equal(0, code, err)
    local ran, size = out:match("^(%a+)\t(%d+)\n")
    assert.are.equal("ran", ran, out)
    size = tonumber(size)
    assert.truthy(size >= 1 and size < 3, out)
    assert.truthy(out:find("\n6\n", 1, true), out)
  end)
end)
