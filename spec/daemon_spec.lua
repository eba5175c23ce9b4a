-- Tasks left when the main chunk returns: the process waits for them
-- (as Node.js does) unless they were started with {daemon = true}; daemon
-- tasks are cancelled at exit, with their cleanup run; on a terminal a
-- long wait gets a one-line note (scripts/tools/ptyrun.py gives it one).
local process = parx.process
local PARX = os.getenv("PARX_BIN") or "build/parx"

-- The script, written to a file of its own.
local function script_file(code)
  local file = os.tmpname()
  parx.fs.writefile(file, code)
  return file
end

-- Run a script with stdout and stderr on pipes; the hang guard is the
-- timeout (a daemon that kept the process alive would run into it).
local function run(code)
  local file = script_file(code)
  local r = assert(process.exec(PARX, {file}, {env = {PARX_WORKERS = "2"}, timeout = 30}))
  os.remove(file)
  return r.status, r.stdout, r.stderr
end

-- The same with both on a pseudo-terminal; nil when python3 is missing.
local function on_terminal(code)
  if process.exec("sh", {"-c", "command -v python3"}).status ~= 0 then return nil end
  local root = debug.getinfo(1, "S").source:match("^@(.*)spec/daemon_spec.lua$") or ""
  local file = script_file(code)
  local r = assert(process.exec("python3", {root .. "scripts/tools/ptyrun.py", "--timeout", "30", "--", PARX, file},
                                {env = {LANG = "C", LC_ALL = false, PARX_WORKERS = "2"}, timeout = 60}))
  os.remove(file)
  return r.status, r.stdout .. r.stderr
end

describe("daemon tasks", function()
  it("do not keep the process alive; they are cancelled at exit and their cleanup runs", function()
    local status, out, err = run([[
      parx.spawn({daemon = true}, function()
        local ok, e = pcall(function() while true do parx.sleep(0.01) end end)
        print("worker daemon cleanup: " .. tostring(e))
      end)
      parx.async({daemon = true}, function()
        local ok, e = pcall(parx.sleep, math.huge)
        print("async daemon cleanup: " .. tostring(e))
      end)
      parx.sleep(0.05)
      print("main chunk returns")
    ]])
    assert.equal(0, status, err)
    assert.matches("main chunk returns", out)
    assert.matches("worker daemon cleanup: parx: task was cancelled", out, 1, true)
    assert.matches("async daemon cleanup: parx: task was cancelled", out, 1, true)
  end)

  it("run while a task that is not a daemon keeps the process alive", function()
    local status, out, err = run([[
      local log = parx.channel(100)
      parx.async({daemon = true}, function()
        local n = 0
        while true do n = n + 1; parx.sleep(0.01) end
      end)
      parx.spawn(function() parx.sleep(0.2); print("the non-daemon task ended") end)
    ]])
    assert.equal(0, status, err)
    assert.matches("the non%-daemon task ended", out)
  end)

  it("a daemon waiting on a channel nobody sends to is cancelled and cleans up", function()
    local status, out, err = run([[
      local ch = parx.channel()
      parx.async({daemon = true}, function()
        local ok, e = pcall(ch.recv, ch)
        print("cleanup after recv: " .. tostring(e))
      end)
    ]])
    assert.equal(0, status, err)
    assert.matches("cleanup after recv: parx: task was cancelled", out, 1, true)
  end)
end)

describe("the options table of parx.spawn and parx.async", function()
  it("raises for an unknown option, naming the known ones", function()
    for _, start in ipairs({parx.spawn, parx.async}) do
      local ok, err = pcall(start, {processes = 2}, print)
      assert.is_false(ok)
      assert.matches("unknown option 'processes' %(known: daemon, name%)", err)
      ok, err = pcall(start, {daemon = "yes"}, print)
      assert.matches("option 'daemon' must be a boolean", err)
    end
  end)

  it("takes a callable table as the function, and a name that shows in tostring", function()
    local callable = setmetatable({}, {__call = function(_, x) return x * 2 end})
    assert.equal(6, parx.async(callable, 3):join())
    local t = parx.async({name = "fetch"}, function(x) return x + 1 end, 1)
    assert.equal(2, t:join())
    assert.matches("'fetch'", tostring(t))
    local w = parx.spawn({name = "work", daemon = false}, function(x) return x end, 5)
    assert.equal(5, w:join())
    assert.matches("parx.task %d+ 'work' %(spawned%)", tostring(w))
  end)
end)

describe("waiting for tasks after the main chunk", function()
  it("notes on a terminal, after a few seconds, which tasks it waits for", function()
    local status, screen = on_terminal([[
      parx.spawn({name = "slow"}, function() parx.sleep(4) end)
      parx.async({daemon = true}, function() parx.sleep(math.huge) end)
    ]])
    if status == nil then pending("needs python3 (scripts/tools/ptyrun.py)") return end
    assert.equal(0, status, screen)
    assert.matches("waiting for 1 task: task %d+ 'slow' on worker %d", screen)
    assert.matches("daemon = true", screen, 1, true)
  end)

  it("says nothing when standard error is not a terminal", function()
    local status, out, err = run([[
      parx.spawn(function() parx.sleep(3.5) end)
    ]])
    assert.equal(0, status, err)
    assert.equal("", err)
  end)
end)
