-- The REPL: the pretty printer and chunk handling of parx.repl, and the
-- interactive loop driven through a pseudo-terminal
-- (scripts/tools/ptyrun.py).
local repl = require "parx.repl"
local PARX = os.getenv("PARX_BIN") or "build/parx"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. q(tmp))

local have_python = os.execute("command -v python3 >/dev/null 2>&1") == 0
local driver = (debug.getinfo(1, "S").source:match("^@(.*)spec/repl_spec.lua$") or "")
  .. "scripts/tools/ptyrun.py"

-- Type keys into `parx` (plus args) on a terminal; returns status, output.
local function session(keys, args, env)
  local input = tmp .. "/keys"
  local f = assert(io.open(input, "wb"))
  f:write(keys)
  f:close()
  local out = tmp .. "/screen"
  local cmd = string.format("%s python3 %s -- %s %s <%s >%s 2>&1; echo $?",
    env or ("PARX_HISTORY=" .. q(tmp .. "/history")), q(driver), q(PARX),
    args or "", q(input), q(out))
  local p = io.popen(cmd)
  local code = tonumber(p:read("*a"))
  p:close()
  return code, slurp(out)
end

-- Type keys; the session must end with status 0 and its screen show each
-- of the plain strings in `shown`.  Returns the screen.
local function shows(keys, shown)
  local code, screen = session(type(keys) == "table" and table.concat(keys) or keys)
  assert.are.equal(0, code, screen)
  for _, text in ipairs(shown) do
    assert.truthy(screen:find(text, 1, true), screen)
  end
  return screen
end

describe("parx.repl.format", function()
  local fmt = repl.format

  it("prints scalars like Lua source", function()
    assert.are.equal("2", fmt(2))
    assert.are.equal("0.5", fmt(0.5))
    assert.are.equal("nil", fmt(nil))
    assert.are.equal("true", fmt(true))
    assert.are.equal('"hi\\n"', fmt("hi\n"))
  end)

  it("prints arrays and records, keys in a stable order", function()
    assert.are.equal("{a = 1, b = {2, 3}}", fmt({ a = 1, b = { 2, 3 } }))
    assert.are.equal("{}", fmt({}))
    assert.are.equal('{1, 2, [10] = 3, ["not id"] = true, x = "y"}',
      fmt({ 1, 2, [10] = 3, x = "y", ["not id"] = true }))
    assert.are.equal('{["end"] = 1}', fmt({ ["end"] = 1 }))
  end)

  it("marks cycles instead of looping", function()
    local t = { name = "t" }
    t.self = t
    assert.are.equal('{name = "t", self = <cycle>}', fmt(t))
  end)

  it("prints a table seen twice (not a cycle) both times", function()
    local shared = { 1 }
    assert.are.equal("{{1}, {1}}", fmt({ shared, shared }))
  end)

  it("stops at the depth limit", function()
    local deep = { { { { { { 1 } } } } } }
    assert.are.equal("{{{{{...}}}}}", fmt(deep))
    assert.are.equal("{{{...}}}", fmt(deep, { depth = 2 }))
  end)

  it("breaks long tables over lines", function()
    local t = {}
    for i = 1, 30 do t[i] = "item" .. i end
    local s = fmt(t)
    assert.truthy(s:find("\n  \"item1\",", 1, true), s)
    assert.truthy(s:match("\n}$"), s)
  end)

  it("limits the items shown", function()
    local t = {}
    for i = 1, 10 do t[i] = i end
    assert.are.equal("{1, 2, 3, ...}", fmt(t, { items = 3 }))
  end)

  it("uses __tostring", function()
    local obj = setmetatable({}, { __tostring = function() return "<obj>" end })
    assert.are.equal("{<obj>}", fmt({ obj }))
  end)
end)

describe("parx.repl.prepare", function()
  it("compiles expressions and statements", function()
    assert.are.equal("ok", repl.prepare("1+1"))
    assert.are.equal("ok", repl.prepare("x = 1"))
    assert.are.equal("ok", repl.prepare("print(1) -- comment"))
  end)

  it("asks for more input when the chunk is incomplete", function()
    assert.are.equal("incomplete", repl.prepare("for i = 1, 2 do"))
    assert.are.equal("incomplete", repl.prepare("x = [[long"))
    assert.are.equal("incomplete", repl.prepare("f("))
  end)

  it("asks for more input after an unfinished expression", function()
    assert.are.equal("incomplete", repl.prepare("1 +"))
    assert.are.equal("incomplete", repl.prepare("x = 1 +"))
  end)

  it("compiles =expr as return expr, as the Lua 5.1 REPL does", function()
    assert.are.equal("ok", repl.prepare("=1+1"))
    assert.are.equal(2, select(2, pcall(repl.pending, function(...) return ... end)))
  end)

  it("reports real syntax errors", function()
    local status, msg = repl.prepare("x = = 1")
    assert.are.equal("error", status)
    assert.truthy(msg:find("stdin:1:", 1, true))
  end)
end)

describe("parx.repl.complete", function()
  it("completes globals, fields and methods", function()
    assert.are.same({ "string.format" }, repl.complete("string.form"))
    assert.truthy(#repl.complete("pri") >= 1)
    assert.are.equal("print", repl.complete("pri")[1])
    local found = false
    for _, w in ipairs(repl.complete("io.stdout:wr")) do
      if w == "io.stdout:write" then found = true end
    end
    assert.is_true(found)
    assert.are.same({}, repl.complete("no_such_global_xyz.f"))
    assert.are.same({}, repl.complete(":x"))
  end)

  it("lists the whole parx API, modules loaded on first use included", function()
    local words = {}
    for _, w in ipairs(repl.complete("parx.")) do words[w] = true end
    for _, name in ipairs({ "spawn", "async", "channel", "select", "pool", "mutex", "fs",
                            "tcp", "http", "gpu", "timer", "array" }) do
      assert.is_true(words["parx." .. name], name)
    end
    assert.are.same({ "parx.channel" }, repl.complete("parx.ch"))
  end)

  it("hides metamethods and underscore names unless the word starts with _", function()
    _G.repl_spec_t = setmetatable({ visible = 1, _hidden = 2, __call = 3 }, { __index = { __index = 4 } })
    assert.are.same({ "repl_spec_t.visible" }, repl.complete("repl_spec_t."))
    assert.are.same({ "repl_spec_t.__call", "repl_spec_t.__index", "repl_spec_t._hidden" },
      repl.complete("repl_spec_t._"))
    for _, w in ipairs(repl.complete("parx.")) do
      assert.falsy(w:find("parx._", 1, true), w)
    end
    _G.repl_spec_t = nil
  end)
end)

describe("parx.repl.format of tasks", function()
  it("shows a task with its state", function()
    local t = parx.async(function() parx.sleep(0.05) end)
    assert.truthy(repl.format(t):find("^parx%.task %d+ %(async%): running$"), repl.format(t))
    t:join()
    assert.truthy(repl.format(t):find(": done$"), repl.format(t))
    local f = parx.async(error, "x")
    f:wait()
    assert.truthy(repl.format(f):find(": failed$"), repl.format(f))
    pcall(f.join, f)
  end)
end)

describe("the REPL on a terminal", function()
  if not have_python then
    pending("python3 is needed to drive a pseudo-terminal")
    return
  end

  it("prints expressions, tables and errors, and survives them", function()
    local code, screen = session(table.concat({
      "1+1\n",
      "{a = 1, b = {2, 3}}\n",
      "error('oops')\n",
      "'still here'\n",
      "\4",
    }))
    assert.are.equal(0, code, screen)
    assert.truthy(screen:find("parx %d"), screen)
    assert.truthy(screen:find("\n2\n", 1, true), screen)
    assert.truthy(screen:find("{a = 1, b = {2, 3}}", 1, true), screen)
    assert.truthy(screen:find("stdin:1: oops", 1, true), screen)
    assert.truthy(screen:find('"still here"', 1, true), screen)
  end)

  it("reads multi-line chunks with a continuation prompt", function()
    shows("for i = 1, 3 do\nio.write(i, ' ')\nend\n\4", { ">> ", "1 2 3" })
  end)

  it("opens libedit for the terminal (a script run never loads it)", function()
    -- (no "> " in the typed line: the driver would take it for the prompt)
    local count = "local n = 0 for l in io.lines('/proc/self/maps') do "
      .. "if l:find('libedit', 1, true) then n = n + 1 end end print('edit maps', n ~= 0)\n"
    shows(count .. "\4", { "edit maps\ttrue" })
    local p = io.popen(q(PARX) .. " -e " .. q(count:sub(1, -2)) .. " 2>&1")
    local out = p:read("*a")
    p:close()
    assert.are.equal("edit maps\tfalse\n", out)
  end)

  it("abandons the line on Ctrl-C and leaves on Ctrl-D", function()
    local code, screen = session("for i = 1, 3 do\nabc\3'fresh'\n\4")
    assert.are.equal(0, code, screen)
    assert.truthy(screen:find('"fresh"', 1, true), screen)
    assert.falsy(screen:find("abc'fresh'", 1, true), screen)
  end)

  -- ThreadSanitizer delivers a signal only when the thread reaches
  -- instrumented code, which a loop inside LuaJIT never does.
  local tsan = os.getenv("PARX_SANITIZER") == "thread"

  it("interrupts running code on Ctrl-C", function()
    if tsan then pending("ThreadSanitizer holds SIGINT back inside LuaJIT") return end
    -- Hooks reach interpreted code only; LuaJIT's traces never call them.
    local code, screen = session("#nowait\njit.off() while true do end\n\3'alive'\n\4")
    assert.are.equal(0, code, screen)
    assert.truthy(screen:find("interrupted", 1, true), screen)
    assert.truthy(screen:find('"alive"', 1, true), screen)
  end)

  it("Ctrl-C interrupts a parked parx.sleep at once with 'interrupted' and the prompt back", function()
    local screen = shows("#nowait\nparx.sleep(1000)\n\3'back'\n\4", { "parx: interrupted", '"back"' })
    assert.falsy(screen:find("stopped waiting", 1, true), screen)
  end)

  it("Ctrl-C interrupts a chunk parked in a channel recv and in a join", function()
    local screen = shows({
      -- A sender that sleeps, so the recv waits without a deadlock.
      "ch = parx.channel() t = parx.async(function() parx.sleep(1000) ch:send(1) end)\n",
      "#nowait\n", "ch:recv()\n", "\3",
      "'after recv'\n",
      "#nowait\n", "t:join()\n", "\3",
      "'after join'\n",
      "t:cancel()\n",
      "\4",
    }, { '"after recv"', '"after join"' })
    local _, n = screen:gsub("parx: interrupted", "")
    assert.are.equal(2, n, screen)
  end)

  it("ends on a third Ctrl-C when compiled code cannot be interrupted", function()
    if tsan then pending("ThreadSanitizer holds SIGINT back inside LuaJIT") return end
    local code, screen = session("#nowait\nwhile true do end\n#nowait\n\3#nowait\n\3#nowait\n\3")
    assert.are_not.equal(0, code, screen)
    assert.are_not.equal(124, code, screen)
  end)

  it("completes names with Tab", function()
    local code, screen = session("string.for\t\n\4")
    assert.are.equal(0, code, screen)
    assert.truthy(screen:find("function: builtin", 1, true), screen)
  end)

  it("completes lazily loaded parx names with Tab", function()
    local screen = shows("parx.chann\t\n\4", { "function: " })
    assert.falsy(screen:find("\nnil\n", 1, true), screen)
  end)

  it("prints =expr and a runtime error of a statement at stdin:1", function()
    shows("=6*7\nx = nil + 1\n\4", { "\n42\n", "stdin:1: attempt to perform arithmetic" })
  end)

  it("honours _PROMPT and _PROMPT2", function()
    shows("_PROMPT = 'P> ' _PROMPT2 = 'Q>> '\nfor i = 1, 1 do\nend\n\4", { "P> for i = 1, 1 do", "Q>> end" })
  end)

  it("reports a background task that failed at the next prompt", function()
    local screen = shows({
      "t = parx.async(function() parx.sleep(0.1) error('bg' .. 'fail') end)\n",
      "#wait-for bgfail\n", "t\n", "\4",
    }, { "(async) failed: stdin:1: bgfail" })
    assert.truthy(screen:find("parx.task %d+ %(async%): failed"), screen)
  end)

  it("Ctrl-D with a pending task says what is pending and waits for it", function()
    local screen = shows({
      "parx.async(function() parx.sleep(0.5) print('late ' .. 'work done') end) == nil\n",
      "\4",
    }, { "late work done" })
    assert.truthy(screen:find("parx: waiting for parx.task %d+ %(async%) to finish"), screen)
  end)

  it("a second Ctrl-D leaves without waiting for pending tasks", function()
    shows({
      "parx.async(function() parx.sleep(1000) end) == nil\n",
      "#nowait\n", "\4", "\4",
    }, { "waiting for" })
  end)

  it("output from a background task does not garble the line being typed", function()
    local screen = shows({
      "parx.async(function() parx.sleep(0.5) print('from ' .. 'background') end) == nil\n",
      "abc\t", -- nothing to complete: the line stays "abc"
      "#wait-for from background\n",
      "\n\4",
    }, { "from background" })
    assert.falsy(screen:find("abcfrom background", 1, true), screen)
    -- The line is erased, the output printed, the prompt and line drawn again.
    assert.truthy(screen:find("\27%[Kfrom background\n"), screen)
    assert.truthy(screen:find("from background\n[^\n]*> abc"), screen)
  end)

  it("exits with os.exit's status", function()
    local code = session("os.exit(7)\n")
    assert.are.equal(7, code)
  end)

  it("keeps its history across runs", function()
    local hist = tmp .. "/history2"
    os.remove(hist)
    local env = "PARX_HISTORY=" .. q(hist)
    session("'remember' .. 'me'\n\4", "", env)
    assert.truthy(slurp(hist):find("remember", 1, true))
    -- Up-arrow in a new session recalls the line from the file.
    local code, screen = session("\27[A\n\4", "", env)
    assert.are.equal(0, code, screen)
    assert.truthy(screen:find('"rememberme"', 1, true), screen)
  end)

  it("keeps tasks running between prompts", function()
    local code, screen = session(table.concat({
      "parx.async(function() parx.sleep(0.2) print('background ' .. 'done') end)\n",
      "#wait-for background done\n",
      "'prompt still works'\n",
      "\4",
    }))
    assert.are.equal(0, code, screen)
    assert.truthy(screen:find("background done", 1, true), screen)
    assert.truthy(screen:find('"prompt still works"', 1, true), screen)
  end)
end)

-- Lines piped into `parx -i` (no terminal): status, stdout, stderr.
local function piped(input, args)
  local inp, out, err = tmp .. "/pin", tmp .. "/pout", tmp .. "/perr"
  local f = assert(io.open(inp, "wb"))
  f:write(input)
  f:close()
  local p = io.popen(string.format("timeout 20 %s %s -i <%s >%s 2>%s; echo $?",
    q(PARX), args or "", q(inp), q(out), q(err)))
  local code = tonumber(p:read("*a"))
  p:close()
  return code, slurp(out), slurp(err)
end

describe("the REPL and replaced globals", function()
  it("a replaced standard global in the REPL gives an error, not a panic", function()
    for _, name in ipairs({ "table", "string", "debug", "require", "print",
                            "tostring", "io", "ipairs", "pairs", "type" }) do
      local code, out, err = piped(name .. " = nil\nprint(1)\n'alive'\n{1, 2}\n")
      assert.are.equal(0, code, name .. ": " .. err)
      assert.falsy(err:find("PANIC", 1, true), name .. ": " .. err)
      assert.truthy(out:find('"alive"\n{1, 2}\n', 1, true), name .. ": " .. out .. err)
    end
    -- Replaced rather than removed: a tostring that raises, a strict _G.
    local code, out, err = piped(table.concat({
      "tostring = function() error('no tostring today') end\n",
      "print(1)\n",
      "setmetatable(_G, {__index = function(_, k) error('undefined ' .. k) end,",
      " __newindex = function(_, k) error('no new global ' .. k) end}) == nil\n",
      "zz = 1\n",
      "'alive'\n",
    }))
    assert.are.equal(0, code, err)
    assert.falsy(err:find("PANIC", 1, true), err)
    assert.truthy(err:find("no tostring today", 1, true), err)
    assert.truthy(err:find("no new global zz", 1, true), err)
    assert.truthy(out:find('"alive"', 1, true), out .. err)
  end)

  it("a REPL after -e code that removed standard globals still starts", function()
    local code, out, err = piped("1 + 1\n",
      "-e 'require = nil table = nil string = nil io = nil print = nil'")
    assert.are.equal(0, code, err)
    assert.are.equal("2\n", out, err)
  end)
end)
