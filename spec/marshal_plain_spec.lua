-- The marshaller's plain paths: PARX_NO_LJ=1 turns off every use of
-- LuaJIT internals (the table layout, closure factories; see
-- runtime/core/marshal_lj.c), and the specs of what crosses between VMs --
-- marshal, records by shape, channels, select, pool -- run again in that
-- mode, so the fallbacks that no LuaJIT build takes otherwise are tested too.
local PARX = os.getenv("PARX_BIN") or "build/parx"
local SPECS = {"spec/marshal_spec.lua", "spec/marshal_shape_spec.lua", "spec/chan_spec.lua",
               "spec/select_spec.lua", "spec/pool_spec.lua"}

-- Run a shell command; its output and exit status (the last line).
local function sh(cmd)
  local pipe = io.popen(("%s 2>&1; echo \"exit=$?\""):format(cmd))
  local out = pipe:read("*a")
  pipe:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

describe("the marshaller without LuaJIT internals (PARX_NO_LJ=1)", function()
  it("PARX_NO_LJ=1 turns off the table layout and the closure factories", function()
    local code = "local f = require('parx.c.debug').fast_paths() print(f.layout, f.factories)"
    local on = sh(("%s -e %q"):format(PARX, code))
    local off = sh(("PARX_NO_LJ=1 %s -e %q"):format(PARX, code))
    assert.matches("^true\ttrue", on)
    assert.matches("^false\tfalse", off)
  end)

  it("the marshal, channel, select and pool specs pass on the plain paths", function()
    local out, status = sh(("PARX_NO_LJ=1 SPEC_TIMEOUT=120 scripts/tools/runspecs %s %s")
                           :format(PARX, table.concat(SPECS, " ")))
    local tail = out:sub(-3000)
    assert.equal(0, status, tail)
    local passed, failed = out:match("(%d+) passed, (%d+) failed[^\n]*%s*exit=")
    assert.equal("0", failed, tail)
    assert.is_true(tonumber(passed) > 100, tail)
  end)
end)
