-- One error table, one out-of-memory path, one export list: the error
-- values C functions give back to Lua, and what libparx.so shows a host.
local gpu = parx.gpu

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
