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
