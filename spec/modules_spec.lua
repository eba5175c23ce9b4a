-- Modules, classes and preloaded modules inside workers: what crosses by
-- name (DESIGN.md "Crossing VMs").
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A directory on package.path with Lua modules written by the spec
-- (workers search the sender's package.path).
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. q(dir))
package.path = dir .. "/?.lua;" .. package.path
local function module_file(name, src)
  local path = dir .. "/" .. name:gsub("%.", "/") .. ".lua"
  os.execute("mkdir -p " .. q(path:match("^(.*)/")))
  local f = assert(io.open(path, "wb"))
  f:write(src)
  f:close()
end

-- md5-style pairs: NAME.core is the bare part, NAME requires it and adds
-- sumhexa to the same table (as Debian's lua-md5 and luasocket do).
local names = {"fmd5", "fsock", "ab", "zz", "m1", "q", "lib_x", "hash"}
for _, name in ipairs(names) do
  module_file(name .. ".core", "return {bare = true}\n")
  module_file(name, ("local core = require %q\ncore.sumhexa = function(s) return %q .. s end\nreturn core\n")
    :format(name .. ".core", name .. ":"))
end

describe("a module loaded under two names", function()
  it("crosses under its public name when the script required the public name (md5 loads md5.core)", function()
    local mods = {}
    for i = 1, 4 do mods[i] = require(names[i]) end
    for i = 1, 4 do assert.are.equal(package.loaded[names[i] .. ".core"], mods[i]) end
    local got = parx.spawn(function(ms)
      local out = {}
      for i, m in ipairs(ms) do out[i] = m.sumhexa and m.sumhexa("x") or "no sumhexa" end
      return out
    end, mods):join()
    for i = 1, 4 do assert.are.equal(names[i] .. ":x", got[i]) end
  end)

  it("crosses under its public name when the core part was required first", function()
    local mods = {}
    for i = 5, 8 do require(names[i] .. ".core") end
    for i = 5, 8 do mods[#mods + 1] = require(names[i]) end
    local got = parx.spawn(function(ms)
      local out = {}
      for i, m in ipairs(ms) do out[i] = m.sumhexa and m.sumhexa("y") or "no sumhexa" end
      return out
    end, mods):join()
    for i = 5, 8 do assert.are.equal(names[i] .. ":y", got[i - 4]) end
  end)

  it("a module used as an upvalue is the worker's own copy of the same module", function()
    local m = require "fmd5"
    local same = parx.spawn(function() return m == package.loaded["fmd5"], m.bare end):join()
    assert.is_true(same)
  end)
end)

describe("package.preload in workers", function()
  local PARX = os.getenv("PARX_BIN") or "build/parx"

  it("a bundled single-file application's preloaded modules work in workers and pool.map", function()
    -- As bundlers (amalg, luacc, squish) write them: every module a
    -- package.preload entry, then the main program.
    local app = os.tmpname()
    local f = assert(io.open(app, "wb"))
    f:write([[
package.preload["app.words"] = function(...)
  local M = {name = ...}
  function M.count(s) local n = 0 for _ in s:gmatch("%S+") do n = n + 1 end return n end
  return M
end
package.preload["app.main"] = function()
  local words = require "app.words"
  return function(lines)
    local counts = parx.pool.map(function(l) return require("app.words").count(l) end, lines)
    local t = parx.spawn(function() return words.name, words.count("a b c d") end)
    return counts, t:join()
  end
end
local counts, name, four = require("app.main")({"one", "two words", "three more words"})
print(table.concat(counts, ","), name, four)
]])
    f:close()
    local p = io.popen("timeout 30 " .. q(PARX) .. " " .. q(app) .. " 2>&1; echo \"::$?\"")
    local out = p:read("*a")
    p:close()
    os.remove(app)
    assert.are.equal("1,2,3\tapp.words\t4\n::0\n", out)
  end)

  it("an entry added after the first spawn reaches workers too", function()
    package.preload["spec.late_mod"] = function() return {v = 7} end
    assert.are.equal(7, parx.spawn(function() return require("spec.late_mod").v end):join())
  end)
end)

-- A middleclass-style class library: instances have Class.__instanceDict
-- as their metatable, the methods live there.
local function class(name)
  local dict = {}
  dict.__index = dict
  local c = {name = name, __instanceDict = dict}
  function c:new(...)
    local o = setmetatable({}, dict)
    if o.init then o:init(...) end
    return o
  end
  return c
end

describe("metatables crossing VMs", function()
  it("a middleclass-style instance keeps its methods in a worker when its class lives in a module", function()
    module_file("spec_animals", [[
      local function class(name)
        local dict = {}
        dict.__index = dict
        local c = {name = name, __instanceDict = dict}
        function c:new(n) local o = setmetatable({}, dict) o.n = n return o end
        return c
      end
      local M = {Dog = class("Dog")}
      function M.Dog.__instanceDict:bark() return "woof from " .. self.n end
      return M
    ]])
    local animals = require "spec_animals"
    local rex = animals.Dog:new("rex")
    local said, same = parx.spawn(function(d)
      return d:bark(), getmetatable(d) == require("spec_animals").Dog.__instanceDict
    end, rex):join()
    assert.are.equal("woof from rex", said)
    assert.is_true(same)
    -- and back: the sender's own class again
    local back = parx.spawn(function(d) return d end, rex):join()
    assert.are.equal(animals.Dog.__instanceDict, getmetatable(back))
  end)

  it("parx.register_type makes a script's own class cross to every VM and back", function()
    local Point = class("Point")
    function Point.__instanceDict:init(x, y) self.x, self.y = x, y end
    function Point.__instanceDict:len2() return self.x * self.x + self.y * self.y end
    parx.register_type("spec.Point", Point.__instanceDict)
    local p = Point:new(3, 4)
    local results = parx.pool.map(function(q) return q:len2() end, {p, p, p, p})
    assert.are.same({25, 25, 25, 25}, results)
    local moved = parx.spawn(function(q) q.x = 6 return q end, p):join()
    assert.are.equal(Point.__instanceDict, getmetatable(moved))
    assert.are.equal(52, moved:len2())
  end)

  it("a registered type crosses through channels to a worker that never received code", function()
    local Box = class("Box")
    function Box.__instanceDict:open() return "opened " .. self.what end
    parx.register_type("spec.Box", Box.__instanceDict)
    local ch, out = parx.channel(), parx.channel()
    local t = parx.spawn(function() local b = ch:recv() out:send(b:open()) end)
    local b = Box:new()
    b.what = "gift"
    ch:send(b)
    assert.are.equal("opened gift", out:recv())
    t:join()
  end)

  it("a table whose metatable cannot be found on the other side raises a clear error instead of losing it", function()
    local Secret = class("Secret")
    local s = Secret:new()
    local ok, err = pcall(function() return parx.spawn(function(x) return x end, s):join() end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("cannot send argument #2 (a table whose metatable is not a loaded module's, "
      .. "reachable from one or registered with parx.register_type)", 1, true), err)
    local ok2, err2 = pcall(function() parx.channel():send({inner = s}) end)
    assert.is_false(ok2)
    assert.truthy(tostring(err2):find("field 'inner'", 1, true), err2)
  end)

  it("an error group raised by a scope on a worker arrives as an error group", function()
    local ok, err = pcall(function()
      return parx.spawn(function()
        parx.scope(function(s) s:async(function() error("inner boom", 0) end) end)
      end):join()
    end)
    assert.is_false(ok)
    assert.is_true(parx.is_error_group(err))
    assert.truthy(tostring(err.errors[1].error):find("^inner boom"), tostring(err))
  end)

  it("parx.CANCELLED crosses as the receiver's own", function()
    local got = parx.spawn(function()
      local t = parx.async(function() parx.sleep(10) end)
      t:cancel()
      return select(2, pcall(t.join, t))
    end):join()
    assert.are.equal(parx.CANCELLED, got)
  end)

  it("parx.register_type checks its arguments", function()
    assert.has_error(function() parx.register_type(1, {}) end)
    assert.has_error(function() parx.register_type("x", "not a table") end)
    assert.has_error(function() parx.register_type("", {}) end)
  end)

  it("the data-only reader refuses a metatable by path without requiring anything", function()
    -- Bytes from a file or a socket (px_unmarshal_data) must never make the
    -- reader require a module or follow a path: refused before either.
    local dbg = require "parx.c.debug"
    local bytes = dbg.marshal(require("spec_animals").Dog:new("x"))
    package.loaded["spec_animals"] = nil
    local ok, err = pcall(dbg.unmarshal, bytes)
    assert.is_nil(package.loaded["spec_animals"])
    assert.is_false(ok)
    assert.truthy(tostring(err):find("metatable", 1, true), err)
  end)
end)
