-- lua/parx/dispatch.lua: the dispatcher that runs timer and signal
-- callbacks as tasks.  What a failing callback reports, seen from a parx
-- process of its own (the report goes to stderr).

local PARX = os.getenv("PARX_BIN") or "build/parx"

-- Run code read from standard input by a parx of its own: what it printed
-- on stderr (chunk name "stdin").
local function stderr_of(code)
  local r = assert(parx.process.exec(PARX, {"-"}, {stdin = code, timeout = 60}))
  return r.stderr
end

describe("parx.dispatch", function()
  it("an error in a timer callback reports the callback's file:line traceback", function()
    local out = stderr_of([[
local function boom()
  error("kaboom")
end
parx.timer(0.01, function() boom() end)
]])
    assert.matches("nobody joined it: stdin:2: kaboom\nstack traceback:\n", out)
    assert.matches("stdin:2: in function 'boom'", out)
    assert.matches("stdin:4: in function", out)
    -- one traceback, the callback's: none of a task made to re-raise it
    assert.equal(1, select(2, out:gsub("stack traceback:", "")), out)
    assert.falsy(out:find("builtin#", 1, true), out)
  end)

  it("a timer callback's error object keeps its traceback", function()
    local out = stderr_of([[
local function boom()
  error({code = 7})
end
parx.timer(0.01, function() boom() end)
]])
    assert.matches("nobody joined it: table\nstack traceback:\n", out)
    assert.matches("stdin:2: in function 'boom'", out)
  end)

  it("an error in a signal handler reports the handler's file:line traceback", function()
    local out = stderr_of([[
local P = parx.process
local s
s = parx.signal("usr2", function()
  s:stop()
  error("handler failed")
end)
P.kill(P.pid(), "usr2")
parx.sleep(0.2)
]])
    assert.matches("nobody joined it: stdin:5: handler failed\nstack traceback:\n", out)
    assert.matches("stdin:5: in function", out)
    assert.equal(1, select(2, out:gsub("stack traceback:", "")), out)
  end)

  it("callbacks queued behind a failing one still run", function()
    local n = 0
    parx.timer(0, function() error("first fails") end)
    for _ = 1, 3 do parx.timer(0, function() n = n + 1 end) end
    local t0 = parx.now()
    while n < 3 and parx.now() - t0 < 10 do parx.sleep(0.002) end
    assert.equal(3, n)
  end)
end)
