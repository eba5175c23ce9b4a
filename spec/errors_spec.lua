-- One error table, one out-of-memory path, one export list: the error
-- values C functions give back to Lua, and what libparx.so shows a host.
local gpu = parx.gpu
local BUILD = os.getenv("PARX_BUILD") or "build"
local CC = os.getenv("PARX_CC") or "cc"
local LDFLAGS = os.getenv("PARX_LDFLAGS") or ""

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

describe("out of memory", function()
  it("an allocation that cannot be satisfied raises '<what>: not enough memory' and the VM stays usable", function()
    -- A host array of 4 TiB: the allocator refuses it at once.
    local ok, err = pcall(gpu.rand, "float32", {2 ^ 40}, {host = true})
    assert.is_false(ok)
    assert.are.equal("rand: not enough memory", err)
    local a = gpu.zeros("float32", {10}, {host = true})
    a:fill(1)
    assert.are.equal(10, gpu.sum(a))
  end)
end)

describe("parx_strerror", function()
  it("gives each PARX_* result the message of its entry in the one error table", function()
    local src = os.tmpname() .. ".c"
    local exe = os.tmpname()
    local f = assert(io.open(src, "w"))
    f:write([[
#include <stdio.h>
#include "parx.h"
int main(void) {
  int results[] = {PARX_OK, PARX_ERRRUN, PARX_ERRSYNTAX, PARX_ERRFILE, PARX_ERRMEM,
                   PARX_EXIT, PARX_ERRDEADLOCK, PARX_ERRPANIC, 12345};
  for (unsigned i = 0; i < sizeof results / sizeof *results; i++)
    printf("%d=%s\n", results[i], parx_strerror(results[i]));
  return 0;
}
]])
    f:close()
    local p = io.popen(string.format(
      "%s -std=gnu11 -Iruntime $(pkg-config --cflags luajit) -o %s %s -L%s -lparx -Wl,-rpath,%s "
        .. "$(pkg-config --libs luajit) -lpthread %s 2>&1 && %s 2>&1",
      CC, q(exe), q(src), q(BUILD), q(BUILD), LDFLAGS, q(exe)))
    local out = p:read("*a")
    p:close()
    os.remove(src); os.remove(exe)
    -- The public numbers stay as they were; the messages are the table's.
    assert.matches("\n?0=no error\n", out)
    assert.matches("-1=a Lua error escaped the code\n", out, 1, true)
    assert.matches("-2=the code does not compile\n", out, 1, true)
    assert.matches("-3=the file cannot be read\n", out, 1, true)
    assert.matches("-4=not enough memory\n", out, 1, true)
    assert.matches("-5=the code called os.exit\n", out, 1, true)
    assert.matches("-6=all tasks are asleep: deadlock\n", out, 1, true)
    assert.matches("-7=a VM hit an error no protected call could catch\n", out, 1, true)
    assert.matches("12345=unknown result\n", out, 1, true)
  end)
end)
