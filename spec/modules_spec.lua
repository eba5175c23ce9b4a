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
