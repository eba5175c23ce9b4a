-- The reference in docs/ is checked: every ```lua block in docs/*.md (and
-- README.md) runs
-- under build/parx (PARX_BIN) and must print what its `-->` comments say.
--
-- The convention (docs/README.md states it for readers):
--
--   * A fence "```lua" opens a block that runs; "```lua no-run" opens one
--     that is only shown (it needs a network, a GPU, a terminal, or it is a
--     fragment).  "```c run" opens a complete C program that is compiled
--     against build/libparx.a, run, and checked the same way (its `-->`
--     comments are `// --> text`).  Other fences (```sh, ```c, ```) are
--     not run.
--   * Each block runs alone, as a script: `parx BLOCK.lua` with
--     PARX_WORKERS=2, the repository root as the working directory and an
--     empty standard input.  It must exit with status 0 within 20 s (the
--     blocks are written to take well under a second).
--   * Every `--> text` in the block, in order, is one line that the block
--     must print on standard output.  It may end a code line
--     (`print(x) --> 49`) or stand alone on a comment line (`--> 49`: the
--     next line of the same output).  Standard output must be exactly those
--     lines, no more and no fewer; a block without `-->` prints nothing.
--   * Lines compare after each run of spaces and tabs becomes one space and
--     trailing blanks are dropped (so `--> 1  2` matches print(1, 2)); `...`
--     in the expected text matches any characters within the line (an
--     address, a path, a time).
local PARX = os.getenv("PARX_BIN") or "build/parx"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. q(tmp))

-- blocks(markdown) -> list of {line = first code line, code, run = bool}
local function blocks(text)
  local out, cur, n = {}, nil, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      if line:match("^%s*```%s*$") then
        out[#out + 1] = cur
        cur = nil
      else
        cur.code[#cur.code + 1] = line
      end
    else
      local info = line:match("^%s*```%s*(.-)%s*$")
      if info and info ~= "" then
        local lang, rest = info:match("^(%S+)%s*(.*)$")
        if lang == "lua" then
          cur = {line = n + 1, code = {}, run = not rest:find("no%-run")}
        elseif lang == "c" and rest:find("^run") then
          cur = {line = n + 1, code = {}, run = true, c = true}
        else
          cur = {line = n + 1, code = {}, run = false, other = true}
        end
      elseif info then
        cur = {line = n + 1, code = {}, run = false, other = true}
      end
    end
  end
  local lua = {}
  for _, b in ipairs(out) do
    if not b.other then
      b.code = table.concat(b.code, "\n") .. "\n"
      lua[#lua + 1] = b
    end
  end
  return lua
end

-- The expected output lines of a block: every `--> text`, in order.
local function expected(code)
  local want = {}
  for line in code:gmatch("([^\n]*)\n") do
    local text = line:match("%-%->(.*)$")
    if text then want[#want + 1] = (text:gsub("^ ", "")) end
  end
  return want
end

local function norm(s) return (s:gsub("[ \t]+", " "):gsub(" $", "")) end

-- Whether the actual line matches the expected one (`...` = anything).
local function line_matches(want, got)
  want, got = norm(want), norm(got)
  if not want:find("...", 1, true) then return want == got end
  local pat = {}
  local pos = 1
  while true do
    local s, e = want:find("...", pos, true)
    if not s then
      pat[#pat + 1] = want:sub(pos):gsub("%p", "%%%0")
      break
    end
    pat[#pat + 1] = want:sub(pos, s - 1):gsub("%p", "%%%0")
    pat[#pat + 1] = ".-"
    pos = e + 1
  end
  return got:match("^" .. table.concat(pat) .. "$") ~= nil
end

-- compare(want, stdout) -> true | false, explanation
local function compare(want, out)
  local got = {}
  for line in out:gmatch("([^\n]*)\n") do got[#got + 1] = line end
  local rest = out:match("([^\n]+)$")
  if rest then got[#got + 1] = rest end
  for i = 1, math.max(#want, #got) do
    local w, g = want[i], got[i]
    if w == nil then
      return false, ("line %d printed but no --> expects it: %q"):format(i, g)
    elseif g == nil then
      return false, ("line %d expected (--> %s) but the block printed only %d lines"):format(i, w, #got)
    elseif not line_matches(w, g) then
      return false, ("line %d: expected %q, printed %q"):format(i, w, g)
    end
  end
  return true
end

local function shell(cmd)
  local p = io.popen(cmd .. "; echo $?")
  local status = tonumber(p:read("*a"):match("(%d+)%s*$"))
  p:close()
  return status
end

-- run(code [, is_c]) -> exit status, stdout, stderr.  A C program is built
-- as the Makefile builds the embedding host (PARX_BUILD, PARX_CC and
-- PARX_LDFLAGS as spec/embed_spec.lua reads them).
local BUILD = os.getenv("PARX_BUILD") or "build"
local CC = os.getenv("PARX_CC") or "cc"
local LDFLAGS = os.getenv("PARX_LDFLAGS") or ""
local counter = 0
local function run(code, is_c)
  counter = counter + 1
  local base = ("%s/block%d"):format(tmp, counter)
  local cmd
  if is_c then
    write(base .. ".c", code)
    local build = ("%s -std=gnu11 -pthread -Iruntime $(pkg-config --cflags luajit libuv) -o %s %s "
      .. "%s -Wl,-E %s $(pkg-config --libs luajit libuv) -lm -ldl -lpthread >%s 2>&1"):format(
      CC, q(base), q(base .. ".c"), q(BUILD .. "/libparx.a"), LDFLAGS, q(base .. ".err"))
    local status = shell(build)
    if status ~= 0 then return status, "", "compile: " .. (slurp(base .. ".err") or "") end
    cmd = ("PARX_WORKERS=2 timeout -k 5 20 %s </dev/null >%s 2>%s"):format(
      q(base), q(base .. ".out"), q(base .. ".err"))
  else
    write(base .. ".lua", code)
    cmd = ("PARX_WORKERS=2 timeout -k 5 20 %s %s </dev/null >%s 2>%s"):format(
      q(PARX), q(base .. ".lua"), q(base .. ".out"), q(base .. ".err"))
  end
  local status = shell(cmd)
  return status, slurp(base .. ".out") or "", slurp(base .. ".err") or ""
end

local function check(code, is_c)
  local status, out, err = run(code, is_c)
  if status ~= 0 then
    return false, ("exit status %s\nstdout:\n%s\nstderr:\n%s"):format(status, out, err)
  end
  local ok, why = compare(expected(code), out)
  if not ok then return false, why .. "\nstdout:\n" .. out .. "\nstderr:\n" .. err end
  return true
end

describe("the doc-test convention", function()
  it("a block whose output differs from its --> comments fails", function()
    assert.is_false((check('print(1 + 1) --> 3\n')))
    assert.is_false((check('print(1)\n')))                -- printed, not expected
    assert.is_false((check('print(1) --> 1\n--> 2\n')))    -- expected, not printed
    assert.is_false((check('error("boom")\n')))            -- non-zero exit
  end)

  it("matches runs of blanks, trailing blanks and ... wildcards", function()
    assert.is_true((check('print(1, "a") --> 1 a\nprint("x  ") --> x\n')))
    assert.is_true((check('print(tostring({})) print("b")\n--> table: 0x...\n--> b\n')))
    assert.is_true(line_matches("nil ENOENT: ... ENOENT", "nil\tENOENT: no such file: /x\tENOENT"))
    assert.is_false(line_matches("a...c", "abd"))
  end)

  it("extracts lua blocks, skips no-run and other languages", function()
    local md = table.concat({
      "text", "```lua", "print(1) --> 1", "```", "```lua no-run", "x()", "```",
      "```sh", "ls", "```", "```", "plain", "```", "```lua", "--> 2", "```"}, "\n")
    local bs = blocks(md)
    assert.are.equal(3, #bs)
    assert.is_true(bs[1].run)
    assert.is_false(bs[2].run)
    assert.are.same({"2"}, expected(bs[3].code))
    assert.are.equal(3, bs[1].line)
  end)
end)

local pages = {}
do
  local p = io.popen("ls docs/*.md 2>/dev/null")
  for path in p:read("*a"):gmatch("[^\n]+") do pages[#pages + 1] = path end
  p:close()
  pages[#pages + 1] = "README.md" -- its examples run as printed too
end

describe("docs/", function()
  it("has the reference pages", function()
    for _, name in ipairs({"README", "tasks", "pool", "channels", "sync", "arrays", "io",
                           "gpu", "embedding", "cli", "python"}) do
      assert.is_truthy(slurp("docs/" .. name .. ".md"), "docs/" .. name .. ".md is missing")
    end
  end)

  local total = 0
  for _, path in ipairs(pages) do
    local text = slurp(path)
    for _, b in ipairs(blocks(text)) do
      if b.run then
        total = total + 1
        it(("%s:%d runs and prints what its --> comments say"):format(path, b.line), function()
          local ok, why = check(b.code, b.c)
          assert(ok, ("%s:%d: %s"):format(path, b.line, tostring(why)))
        end)
      end
    end
  end

  it("finds the examples (more than 60 runnable blocks)", function()
    assert.is_true(total > 60, ("only %d runnable blocks found"):format(total))
  end)
end)
