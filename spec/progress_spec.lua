-- parx.progress: the tqdm-like bar of a user's loop and of pool calls.  The
-- bar draws only on a terminal, so the scripts run under a pseudo-terminal
-- (scripts/tools/ptyrun.py); the formatting helpers are checked directly.
local progress = require "parx.progress"
local fs, process = parx.fs, parx.process
local PARX = os.getenv("PARX_BIN") or "build/parx"
local ROOT = debug.getinfo(1, "S").source:match("^@(.*)spec/progress_spec.lua$") or ""
local tmp = fs.mkdtemp("/tmp/parx-progress-")
local have_python = process.exec("sh", {"-c", "command -v python3"}).status == 0

-- Run a script under a pseudo-terminal (stdout and stderr both on it);
-- returns the exit status and everything it drew, \r and escapes included.
local function on_terminal(script)
  local file = tmp .. "/script.lua"
  fs.writefile(file, script)
  local r = assert(process.exec("python3", {ROOT .. "scripts/tools/ptyrun.py", "--timeout", "30", "--", PARX, file},
                                {env = {LANG = "C", LC_ALL = false, PARX_WORKERS = "2", COLUMNS = "100"},
                                 timeout = 60}))
  return r.status, r.stdout .. r.stderr
end

-- The bar lines drawn (the text after each \r, escapes dropped).
local function frames(screen)
  local out = {}
  for frame in screen:gmatch("\r([^\r\n]*)") do
    frame = frame:gsub("\27%[K", "")
    if frame ~= "" then out[#out + 1] = frame end
  end
  return out
end

describe("parx.progress", function()
  teardown(function() fs.remove(tmp, {recursive = true}) end)

  it("abbreviates counts like tqdm (999, 1.23k, 12.3k, 123k, 1.23M)", function()
    assert.equal("999", progress.count(999))
    assert.equal("1.23k", progress.count(1234))
    assert.equal("12.3k", progress.count(12345))
    assert.equal("123k", progress.count(123456))
    assert.equal("1.23M", progress.count(1234567))
    assert.equal("00:07", progress.clock(7))
    assert.equal("02:05", progress.clock(125))
    assert.equal("1:01:01", progress.clock(3661))
  end)

  it("shows ? for the time left until there is a rate, then the time left and the rate", function()
    local bar = progress.bar(10000, {label = "files"})
    bar.cols = 100
    local first = bar:line(bar.start)
    assert.truthy(first:find("^files:   0%%|"), first)
    assert.truthy(first:find("| 0/10.0k [00:00<?, ?it/s]", 1, true), first)
    bar.n = 2500
    local later = bar:line(bar.start + 2)
    assert.truthy(later:find("^files:  25%%|"), later)
    assert.truthy(later:find("| 2.50k/10.0k [00:02<00:06, 1.25k it/s]", 1, true), later)
    assert.truthy(#later:gsub("[\128-\191]", "") <= 100, later)
    bar:close()
  end)

  it("shows count, elapsed time and rate when the total is unknown", function()
    local bar = setmetatable({n = 12345, start = 0, unit = "it", cols = 80}, {__index = getmetatable(
      progress.bar(1)).__index})
    assert.equal("12.3kit [00:10, 1.23k it/s]", bar:line(10))
  end)

  it("draws nothing when standard error is not a terminal", function()
    local r = assert(parx.process.exec(PARX, {"-e", "for i in parx.progress(3) do io.write(i) end print()"},
                                       {timeout = 20}))
    assert.equal(0, r.status)
    assert.equal("123\n", r.stdout)
    assert.equal("", r.stderr)
  end)

  it("counts a user's loop over n and over a list, ending at 100%", function()
    if not have_python then pending("needs python3 (scripts/tools/ptyrun.py)") return end
    local code, screen = on_terminal([[
      local sum = 0
      for i in parx.progress(50, {label = "n"}) do sum = sum + i; parx.sleep(0.01) end
      local seen = {}
      for i, v in parx.progress({"a", "b", "c"}, {label = "list"}) do seen[#seen + 1] = i .. v end
      print("sum", sum, table.concat(seen, " "))
    ]])
    assert.equal(0, code, screen)
    assert.truthy(screen:find("sum\t1275\t1a 2b 3c", 1, true), screen)
    local f = frames(screen)
    local n_first, n_last, list_last
    for _, line in ipairs(f) do
      if line:find("^n:") then n_first = n_first or line; n_last = line end
      if line:find("^list:") then list_last = line end
    end
    assert.truthy(n_first and n_first:find("0/50 [00:00<?, ?it/s]", 1, true), screen)
    assert.truthy(n_last:find("^n: 100%%|") and n_last:find("| 50/50 [", 1, true), n_last)
    assert.truthy(list_last:find("| 3/3 [", 1, true), list_last)
    -- in between the bar moved through intermediate counts
    local mid = 0
    for _, line in ipairs(f) do
      local k = tonumber(line:match("^n:.-| (%d+)/50"))
      if k and k > 0 and k < 50 then mid = mid + 1 end
    end
    assert.truthy(mid >= 3, screen)
  end)

  it("moves per item in pool.map, not only per chunk", function()
    if not have_python then pending("needs python3 (scripts/tools/ptyrun.py)") return end
    -- one chunk per worker: per-chunk counting would only ever show 0, 20, 40
    local code, screen = on_terminal([[
      local r = parx.pool.map(function(x) parx.sleep(0.02) return x * 2 end,
                              (function() local t = {} for i = 1, 40 do t[i] = i end return t end)(),
                              {progress = "items", chunksize = 20})
      print("last", r[40])
    ]])
    assert.equal(0, code, screen)
    assert.truthy(screen:find("last\t80", 1, true), screen)
    local between = 0
    for _, line in ipairs(frames(screen)) do
      local k = tonumber(line:match("^items:.-| (%d+)/40"))
      if k and k % 20 ~= 0 then between = between + 1 end
    end
    assert.truthy(between >= 1, screen)
    assert.truthy(screen:find("items: 100%|", 1, true), screen)
  end)

  it("draws on imap, imap_unordered and parallel_for", function()
    if not have_python then pending("needs python3 (scripts/tools/ptyrun.py)") return end
    local code, screen = on_terminal([[
      local list = {} for i = 1, 12 do list[i] = i end
      local function slow(x) parx.sleep(0.01) return x end
      local s = 0
      for _, v in parx.pool.imap(slow, list, {progress = "imap", chunksize = 2}) do s = s + v end
      for _, v in parx.pool.imap_unordered(slow, list, {progress = "unordered", chunksize = 2}) do s = s + v end
      local out = parx.pool.parallel_for(1, 12, function(lo, hi) parx.sleep(0.01) return hi - lo + 1 end,
                                         {progress = "for", chunksize = 3})
      print("sum", s, #out)
    ]])
    assert.equal(0, code, screen)
    assert.truthy(screen:find("sum\t156\t4", 1, true), screen)
    for _, label in ipairs({"imap", "unordered", "for"}) do
      assert.truthy(screen:find("\r" .. label .. ": 100%|", 1, true), label .. ":\n" .. screen)
      assert.truthy(screen:find("| 12/12 [", 1, true), screen)
    end
  end)

  it("clears its line before a worker's print and draws again after it", function()
    if not have_python then pending("needs python3 (scripts/tools/ptyrun.py)") return end
    local code, screen = on_terminal([[
      parx.pool.map(function(x)
        parx.sleep(0.15)
        print("hello from item " .. x)
        parx.sleep(0.15)
        return x
      end, {1, 2, 3, 4}, {progress = "noisy", chunksize = 1})
      print("main says bye")
    ]])
    assert.equal(0, code, screen)
    -- each printed line stands alone: the bar never precedes it on its line
    local printed = 0
    for line in screen:gmatch("[^\n]+") do
      local text = line:match("hello from item %d")
      if text then
        printed = printed + 1
        local last = line:match("([^\r]*)$"):gsub("\27%[K", "")
        assert.equal(text, last, "a print shares its line with the bar: " .. line)
        assert.truthy(line:find("\27[K", 1, true) or line == text, line)
      end
    end
    assert.equal(4, printed, screen)
    -- the bar came back after the prints and finished
    local after = screen:match(".*hello from item %d\n(.*)$")
    assert.truthy(after and after:find("noisy:", 1, true), screen)
    assert.truthy(screen:find("noisy: 100%|", 1, true), screen)
  end)

  it("clears its line before a print in the loop that draws it", function()
    if not have_python then pending("needs python3 (scripts/tools/ptyrun.py)") return end
    local code, screen = on_terminal([[
      for i in parx.progress(3, {label = "loop"}) do
        parx.sleep(0.12)
        io.write("step ", i, "\n")
      end
    ]])
    assert.equal(0, code, screen)
    for i = 1, 3 do
      local line = screen:match("[^\n]*step " .. i .. "\n")
      assert.truthy(line, screen)
      local last = line:match("([^\r]*)$"):gsub("\27%[K", "")
      assert.equal("step " .. i .. "\n", last)
    end
    assert.truthy(screen:find("loop: 100%|", 1, true), screen)
  end)

  it("raises on a bad argument", function()
    assert.has_error(function() progress.progress("ten") end)
    assert.has_error(function() progress.progress(-1) end)
    assert.has_error(function() progress.progress(3, "opts") end)
  end)
end)
