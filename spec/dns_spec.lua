-- parx.dns: only names the host resolves by itself (localhost, numeric
-- addresses) so the specs never touch the network.
local dns = parx.dns

local function has(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

describe("parx.dns", function()
  it("resolves localhost to loopback addresses", function()
    local addrs = assert(dns.resolve("localhost"))
    assert.is_true(#addrs >= 1)
    assert.is_true(has(addrs, "127.0.0.1") or has(addrs, "::1"))
    local seen = {}
    for _, a in ipairs(addrs) do
      assert.is_nil(seen[a]) -- no duplicates
      seen[a] = true
    end
  end)

  it("filters by family", function()
    local v4 = assert(dns.resolve("localhost", {family = "inet"}))
    for _, a in ipairs(v4) do assert.is_nil(a:find(":", 1, true)) end
    assert.is_true(has(v4, "127.0.0.1"))
  end)

  it("returns numeric addresses as they are, without a lookup", function()
    assert.same({"127.0.0.1"}, dns.resolve("127.0.0.1"))
    assert.same({"::1"}, dns.resolve("::1"))
    assert.same({"::1"}, dns.resolve("[::1]"))
  end)

  it("resolves many names concurrently from tasks and workers", function()
    local tasks = {}
    for i = 1, 20 do tasks[i] = parx.async(dns.resolve, "localhost") end
    for _, addrs in ipairs(parx.gather(tasks)) do assert.is_true(#addrs >= 1) end
    local t = parx.spawn(function() return parx.dns.resolve("localhost")[1] end)
    assert.is_string(t:join())
  end)

  it("returns nil, msg, code when the family does not match", function()
    local v, msg, code = dns.resolve("localhost", {family = "inet6"})
    if v then
      assert.is_true(has(v, "::1"))
    else
      assert.is_string(msg)
      assert.is_truthy(code:match("^EAI_"))
    end
  end)

  it("raises on misuse", function()
    assert.has_error(function() dns.resolve(42) end)
    assert.has_error(function() dns.resolve("") end)
    assert.has_error(function() dns.resolve("localhost", {family = "ipx"}) end)
    assert.has_error(function() dns.resolve("localhost", 5) end)
  end)
end)
