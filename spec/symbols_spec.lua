-- What libparx shows a host: nm -D on the built library and binary.  The
-- export list is runtime/parx.map (parx.h's parx_* functions and
-- luaopen_parx); everything else is built -fvisibility=hidden.
local BUILD = os.getenv("PARX_BUILD") or "build"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The dynamic symbols a file defines, as a list of names (nm -D).
local function defined_symbols(path)
  local p = io.popen("nm -D --defined-only " .. q(path) .. " 2>&1")
  local out = p:read("*a")
  local ok = p:close()
  assert.truthy(ok, out)
  local names = {}
  for line in out:gmatch("[^\n]+") do
    local name = line:match("^%x*%s+%a%s+(%S+)$")
    if name then names[#names + 1] = name:gsub("@.*", "") end
  end
  return names, out
end

local function have_nm()
  return os.execute("command -v nm >/dev/null 2>&1") == 0
end

describe("exported symbols", function()
  it("libparx.so defines only parx_* symbols (and luaopen_parx)", function()
    if not have_nm() then return pending("nm is not installed") end
    local names, out = defined_symbols(BUILD .. "/libparx.so")
    local seen = {}
    for _, name in ipairs(names) do
      seen[name] = true
      assert(name:match("^parx_") or name == "luaopen_parx",
        "libparx.so exports " .. name .. ", which parx.h does not declare")
    end
    -- The check above would pass on an empty list: the API must be there.
    for _, fn in ipairs({"parx_open", "parx_close", "parx_run_string", "parx_channel_new"}) do
      assert(seen[fn], fn .. " is not exported:\n" .. out)
    end
  end)

  it("neither libparx.so nor the parx binary defines a libcurl or BLAS symbol", function()
    if not have_nm() then return pending("nm is not installed") end
    for _, file in ipairs({BUILD .. "/libparx.so", BUILD .. "/parx"}) do
      local names = defined_symbols(file)
      assert(#names > 0, file .. " exports nothing")
      for _, name in ipairs(names) do
        assert(not name:match("^curl_") and not name:match("^cblas_")
          and not name:match("^openblas_"),
          file .. " defines " .. name .. ": a host that links the library would get two")
      end
    end
  end)
end)
