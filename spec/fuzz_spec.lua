-- The unmarshaller under libFuzzer (fuzz/, `make fuzz`): a one-minute run
-- of both modes from seeds the real marshaller wrote, with ASan and UBSan.
-- Skipped, with the reason, where clang or its libFuzzer runtime is missing.
-- FUZZ_TIME=seconds overrides the length of the run.
local build = os.getenv("PARX_BUILD") or "build"
local seconds = tonumber(os.getenv("FUZZ_TIME")) or 60

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

local function why_not()
  local _, status = sh("command -v clang")
  if status ~= 0 then return "clang is not installed (make deps)" end
  local lib = sh("clang -print-file-name=libclang_rt.fuzzer-x86_64.a"):match("^(%S+)")
  local f = lib and io.open(lib)
  if not f then return "clang's libFuzzer runtime is missing (libclang-rt-14-dev)" end
  f:close()
  return nil
end

describe("fuzz", function()
  local reason = why_not()
  if reason then
    pending("the unmarshaller fuzz run: " .. reason)
    return
  end

  it("a minute of libFuzzer on the unmarshaller, both modes, finds nothing", function()
    local out, status = sh(("make --no-print-directory -s BUILD=%s fuzz FUZZ_TIME=%d"):format(build, seconds))
    local tail = out:sub(-3000)
    assert.equal(0, status, tail)
    assert.is_nil(out:find("ERROR: libFuzzer", 1, true), tail)
    assert.is_nil(out:find("ERROR: AddressSanitizer", 1, true), tail)
    assert.is_nil(out:find("runtime error:", 1, true), tail)
    local runs = tonumber(out:match("stat::number_of_executed_units:%s*(%d+)"))
    assert.is_true(runs ~= nil and runs > 1000, tail)
    print(("fuzz: %d runs in %d s, %s"):format(runs, seconds,
      out:match("(cov: %d+ ft: %d+ corp: %S+)") or "?"))
  end)
end)
