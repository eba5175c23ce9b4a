-- scripts/examples/python/: parx programs that do what Python programs do
-- (the seeds' and examples from Python's documentation).  Each X.lua names
-- the Python program it answers in a comment ("Answers: ...") and has
-- X.out beside it: what the Python program prints (with the program's
-- timings left out).  Each runs with two workers and must print exactly
-- that, on standard output, and exit with status 0.
local PARX = os.getenv("PARX_BIN") or "build/parx"
local DIR = "scripts/examples/python"

-- The file's bytes, or nil when it cannot be opened.
local function slurp(path)
  local f = io.open(path, "rb")
  return f and f:read("*a"), f and f:close()
end

local names = {}
do
  local p = io.popen("ls " .. DIR .. "/*.lua 2>/dev/null")
  for path in p:read("*a"):gmatch("[^\n]+") do
    names[#names + 1] = path:match("([^/]+)%.lua$")
  end
  p:close()
end

describe("scripts/examples/python", function()
  it("holds the seeds' programs and at least ten from Python's documentation", function()
    local seeds, docs = 0, 0
    for _, name in ipairs(names) do
      if name:match("^seed_") then seeds = seeds + 1 else docs = docs + 1 end
    end
    assert.is_true(seeds >= 5, "seed ports: " .. seeds)
    assert.is_true(docs >= 10, "documentation ports: " .. docs)
  end)

  for _, name in ipairs(names) do
    it(name .. ".lua prints what the Python program prints (" .. name .. ".out)", function()
      local src = slurp(DIR .. "/" .. name .. ".lua")
      assert.truthy(src:match("^%-%- Answers: "), name .. ".lua must start by naming the Python program")
      local want = assert(slurp(DIR .. "/" .. name .. ".out"), name .. ".out is missing")
      local out = os.tmpname()
      local cmd = ("PARX_WORKERS=2 timeout -k 5 60 %s %s/%s.lua </dev/null >%s 2>%s.err; echo $?")
        :format(PARX, DIR, name, out, out)
      local p = io.popen(cmd)
      local status = tonumber(p:read("*a"))
      p:close()
      local got, err = slurp(out), slurp(out .. ".err")
      os.remove(out)
      os.remove(out .. ".err")
      assert.equal(0, status, name .. ": exit status " .. tostring(status) .. "\n" .. tostring(err))
      assert.equal(want, got)
    end)
  end
end)
