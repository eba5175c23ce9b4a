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
  assert.truthy(out:find("host closed the runtime", 1, true), out)
end

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
          .. "-ledit -lm -ldl -lpthread %s",
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
