-- Every function the reference (docs/*.md) documents is called by a spec.
--
-- The rule for "a documented function", from how the pages mark them up:
--
--   * Only inline code spans count (`...`), in the text of a page outside
--     its fenced blocks: the signature tables (`| `ch:send(v)` | ... |`),
--     the headings (`## parx.select(cases [, opts])`), the bullets
--     (`- `ev:set()` sets the flag`) and the prose (`b:parties()` is `n`).
--     Examples in fenced blocks are not declarations (spec/docs_spec.lua
--     runs them).
--   * In a span, every call of a dotted or colon name is one: a chain of
--     identifiers joined by `.` or `:` followed by `(` or `{`
--     (`parx.pool.new{...}`).  `require("parx.x")` before a name reads as
--     `parx.x` (`require("parx.timeline").write(...)`).
--   * `parx.a.b(` is the function parx.a.b; the modules the pages name
--     without their `parx.` (`pool.map(`, `fs.open(`, `gpu.add(`,
--     `mpi.send(`, ...: MODULES below) are parx functions too.  A name after
--     `:` is a method, with or without `(` (`ch:send(v)`, `p:map`,
--     `parx.stdin:lines()`), one entry per receiver and name as the pages
--     write them (`ch:send`, `s:read`).  Lua's own libraries (`os.exit(`,
--     `io.read(`, `string.format(`), the option fields a page mentions as
--     calls (`opts.callback(...)`) and the few spans of NOT_FUNCTIONS are
--     not parx functions.
--   * embedding.md's C API: every `parx_name(` in a span is a C function.
--   * python.md maps Python to parx forms documented on the other pages: it
--     declares nothing, and every parx function its parx column names must
--     be one the other pages document (a test below).
--   * A name is one entry however many pages name it (`parx.sleep` in
--     README.md and tasks.md, `t:join` in tasks.md and pool.md).
--
-- "Called by a spec": the spec files of one of the pages that name it
-- (SPECS_OF; a page not listed there: every spec) contain the name as a
-- call, a module's local alias read as the module (`local P =
-- parx.process` makes `P.kill(` a `process.kill(`):
--   parx.a.b   ->  `a.b(`, `a.b{`, `a.b "` or `a.b,` (passed to pcall or
--                  to a task), or `parx.b(...)` for parx.b;
--   T:m        ->  `:m(`, `:m{`, `:m "`, or `.m,` (pcall(ch.send, ch, v));
--   parx_name  ->  `parx_name(` in spec/*.c, in the C programs the embed
--                  spec builds (scripts/embed/*.c) or in a spec's text.
-- Methods are found by name: `a:get` is one entry for arrays.md and
-- sync.md's atomics, and a spec of either page that calls some `:get(`
-- covers it.  That is the limit of a text search; what each call asserts
-- is the spec's own business.
--
-- The other tests keep the markup that rule reads honest: a function
-- named bare in a signature cell (`mpi.imap` with no arguments, which
-- read as a value), and links to headings that do not exist.
--
-- Run it as a script (`luajit spec/reference_spec.lua`) to print every
-- function found and where it is called.

local DOCS = "docs"

-- Pages not searched for functions (see above).
local NOT_DECLARING = {["python.md"] = true}

-- Module tables the pages write without `parx.` in front.
local MODULES = {
  pool = true, fs = true, tcp = true, udp = true, dns = true, process = true,
  http = true, gpu = true, mpi = true, trace = true, timeline = true,
  stats_report = true, array = true, timer = true, progress = true,
  signal = true,
}

-- First names of chains that are not parx functions: Lua's and LuaJIT's
-- libraries, and variables the pages use for option tables and errors.
local NOT_PARX = {
  string = true, table = true, math = true, io = true, os = true,
  coroutine = true, debug = true, package = true, bit = true, ffi = true,
  jit = true, opts = true, err = true, cjson = true,
}

-- Spans that read as calls but name no function.
local NOT_FUNCTIONS = {
  ["parx.gpu.array"] = true,   -- gpu.md: what tostring(d) prints
  ["host:port"] = true,        -- trace.md: a DNS or TCP wait's argument
  ["ip:port"] = true,          -- trace.md: a TCP stream's peer
  ["file:line"] = true,        -- compat.md: an error position
  ["file:read"] = true,        -- io.md: Lua's own io file
}

-- Which spec files guard which page.
local SPECS_OF = {
  ["tasks.md"] = {"task_spec", "daemon_spec", "errors_spec", "marshal_spec",
                  "marshal_shape_spec", "marshal_plain_spec", "modules_spec"},
  ["scope.md"] = {"scope_spec", "task_spec"},
  ["pp.md"] = {"pp_spec", "repl_spec"},
  ["pool.md"] = {"pool_spec", "pool_object_spec", "progress_spec"},
  ["channels.md"] = {"chan_spec", "select_spec", "sync_spec"},
  ["sync.md"] = {"sync_spec", "atomic_spec"},
  ["dict.md"] = {"dict_spec"},
  ["arrays.md"] = {"array_spec"},
  ["io.md"] = {"timer_spec", "fs_spec", "tcp_spec", "udp_spec", "dns_spec",
               "process_spec", "http_spec", "signal_spec", "dispatch_spec"},
  ["gpu.md"] = {"gpu_spec", "gpu_errors_spec"},
  ["mpi.md"] = {"mpi_spec", "mpi/"},
  ["trace.md"] = {"trace_spec"},
  ["timeline.md"] = {"timeline_spec", "stats_report_spec", "progress_spec"},
  ["embedding.md"] = {"embed_spec", ".c"},
  ["cli.md"] = {"cli_spec", "repl_spec"},
}

-- Functions no spec can call, each with the reason.  Keep it short.
local EXCEPTIONS = {
}

local function slurp(path)
  local f = io.open(path, "rb")
  local s = f and f:read("*a")
  if f then f:close() end
  return s
end

local function ls(pattern)
  local out, p = {}, io.popen("ls -1 " .. pattern .. " 2>/dev/null")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- paragraphs(text) -> list of paragraphs (strings), fenced blocks left out.
local function paragraphs(text)
  local out, cur, fenced = {}, {}, false
  local function flush()
    if #cur > 0 then out[#out + 1] = table.concat(cur, "\n") end
    cur = {}
  end
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*```") then
      flush()
      fenced = not fenced
    elseif not fenced then
      if line:match("^%s*$") then flush() else cur[#cur + 1] = line end
    end
  end
  flush()
  return out
end

-- spans(s) -> list of inline code spans (`x`, ``x``) of s.
local function spans(s)
  local out, i = {}, 1
  while true do
    local a, b = s:find("`+", i)
    if not a then return out end
    local fence = s:sub(a, b)
    local c, d = s:find(fence, b + 1, true)
    while c and s:sub(d + 1, d + 1) == "`" do c, d = s:find(fence, d + 2, true) end
    if not c then return out end
    out[#out + 1] = s:sub(b + 1, c - 1)
    i = d + 1
  end
end

-- calls(span) -> list of {name = qualified name, method = name after `:`,
-- c = true for the C API}.
local function calls(span)
  local out = {}
  span = span:gsub("require%s*%(?%s*[\"']parx%.([%w_]+)[\"']%s*%)?", "parx.%1")
  local i = 1
  while true do
    local a, b, chain, open = span:find("([%a_][%w_]*[%.:][%w_%.:]*[%w_])%s*([%({]?)", i)
    if not a then break end
    i = b + 1
    local before = a > 1 and span:sub(a - 1, a - 1) or ""
    local first = chain:match("^[%a_][%w_]*")
    if not before:match("[%w_%.:%)%]@/]") and not NOT_PARX[first] then
      local recv, m = chain:match("^([^:]*):([%a_][%w_]*)$")
      if recv then
        out[#out + 1] = {name = recv .. ":" .. m, method = m}
      elseif open ~= "" and not chain:find(":", 1, true) then
        if first == "parx" then
          out[#out + 1] = {name = chain}
        elseif MODULES[first] then
          out[#out + 1] = {name = "parx." .. chain}
        end
      end
    end
  end
  for name in span:gmatch("%f[%w_](parx_[%w_]+)%s*%(") do
    out[#out + 1] = {name = name, c = true}
  end
  local keep = {}
  for _, e in ipairs(out) do
    if not NOT_FUNCTIONS[e.name] then keep[#keep + 1] = e end
  end
  return keep
end

-- entries(page, add): calls add(entry, key) for each function of page.
-- An entry's key is its name as written: one entry for every page that
-- names it.
local function entries(page, add)
  local text = assert(slurp(DOCS .. "/" .. page))
  local function one(e) add(e, e.name) end
  for _, par in ipairs(paragraphs(text)) do
    for _, sp in ipairs(spans(par)) do
      for _, e in ipairs(calls(sp)) do one(e) end
    end
  end
end

local function pages()
  local out = {}
  for _, path in ipairs(ls(DOCS .. "/*.md")) do out[#out + 1] = path:match("[^/]+$") end
  return out
end

-- normalise(spec text): `require("parx.x")` reads as `parx.x`, and a local
-- alias of a module (`local P = parx.process`) as the module's name, so
-- that `P.kill(` counts as `process.kill(`.
local function normalise(text)
  text = text:gsub("require%s*%(?%s*[\"']parx%.([%w_]+)[\"']%s*%)?", "parx.%1")
  for alias, mod in text:gmatch("local%s+([%a_][%w_]*)%s*=%s*parx%.([%a_][%w_]*)%s*[\n;]") do
    if alias ~= mod then text = text:gsub("%f[%w_]" .. alias .. "%.", mod .. ".") end
  end
  return text
end

-- The spec files that guard `page` (their text is read once).
local spec_text, spec_files, all_specs = {}, {}, nil
local function specs_for(page)
  if spec_files[page] then return spec_files[page] end
  all_specs = all_specs or ls("spec/*_spec.lua spec/mpi/*.lua spec/*.c scripts/embed/*.c")
  local wanted = SPECS_OF[page]
  local files = {}
  spec_files[page] = files
  for _, path in ipairs(all_specs) do
    local keep = not wanted
    for _, w in ipairs(wanted or {}) do
      if w == ".c" then keep = keep or path:match("%.c$")
      elseif w:match("/$") then keep = keep or path:find("spec/" .. w, 1, true) == 1
      else keep = keep or path == "spec/" .. w .. ".lua" end
    end
    if keep and path ~= "spec/reference_spec.lua" then
      spec_text[path] = spec_text[path] or normalise(slurp(path))
      files[#files + 1] = path
    end
  end
  return files
end

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- callers(entry) -> list of spec files, of any page that names the
-- entry, that call it.
local function callers(e)
  local pats = {}
  if e.c then
    pats[1] = "%f[%w_]" .. escape(e.name) .. "%s*%("
  elseif e.method then
    local m = escape(e.method)
    pats = {":" .. m .. "%s*[%({\"']", "[%w_%]%)]%." .. m .. "%s*,"}
  else
    local parts = {}
    for p in e.name:gmatch("[^%.]+") do parts[#parts + 1] = p end
    local tail = escape(table.concat(parts, ".", #parts > 2 and #parts - 1 or 1))
    if #parts == 2 then tail = "parx%." .. escape(parts[2]) end
    pats = {"%f[%w_]" .. tail .. "%s*[%({\"',]"}
  end
  local out, seen = {}, {}
  for _, page in ipairs(e.pages) do
    for _, path in ipairs(specs_for(page)) do
      local text = spec_text[path]
      for _, p in ipairs(pats) do
        if not seen[path] and text:find(p) then
          seen[path] = true
          out[#out + 1] = path
        end
      end
    end
  end
  return out
end

-- audit() -> every documented function, and those no spec calls.
local audited
local function audit()
  if audited then return unpack(audited) end
  local all, by_key, missing = {}, {}, {}
  for _, page in ipairs(pages()) do
    if not NOT_DECLARING[page] then
      entries(page, function(e, key)
        local known = by_key[key]
        if not known then
          e.pages = {}
          by_key[key], all[#all + 1], known = e, e, e
        end
        if known.pages[#known.pages] ~= page then known.pages[#known.pages + 1] = page end
      end)
    end
  end
  for _, e in ipairs(all) do
    e.callers = callers(e)
    if #e.callers == 0 and not EXCEPTIONS[e.name] then missing[#missing + 1] = e end
  end
  audited = {all, missing}
  return all, missing
end

local function describe_entry(e)
  return string.format("%s (%s)", e.name, table.concat(e.pages, ", "))
end

if not describe then
  local all, missing = audit()
  for _, e in ipairs(all) do
    print(string.format("%-44s %-14s %s", e.name, e.pages[1],
      EXCEPTIONS[e.name] and ("exception: " .. EXCEPTIONS[e.name]) or table.concat(e.callers, " ")))
  end
  print(string.format("%d functions, %d without a spec", #all, #missing))
  for _, e in ipairs(missing) do print("  " .. describe_entry(e)) end
  return
end

-- anchors(page) -> set of the heading anchors a Markdown viewer makes
-- (GitHub's rule: lower case, punctuation dropped, spaces as hyphens, a
-- repeated heading numbered).
local function anchors(page)
  local set, seen, fenced = {}, {}, false
  for line in (assert(slurp(DOCS .. "/" .. page)) .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*```") then
      fenced = not fenced
    elseif not fenced and line:match("^#+%s") then
      local a = line:match("^#+%s+(.-)%s*$"):lower():gsub("[^%w%s%-_\128-\255]", ""):gsub(" ", "-")
      set[seen[a] and (a .. "-" .. seen[a]) or a] = true
      seen[a] = (seen[a] or 0) + 1
    end
  end
  return set
end

describe("the reference", function()
  it("finds the functions of every page that declares some", function()
    local all = audit()
    local per = {}
    for _, e in ipairs(all) do
      for _, page in ipairs(e.pages) do per[page] = (per[page] or 0) + 1 end
    end
    for page in pairs(SPECS_OF) do
      assert.is_true((per[page] or 0) > 0, page .. " declares no function: did its markup change?")
    end
    assert.is_true(#all > 200, "only " .. #all .. " functions found")
  end)

  it("every documented function is called by a spec of its page", function()
    local _, missing = audit()
    local names = {}
    for _, e in ipairs(missing) do names[#names + 1] = describe_entry(e) end
    assert.equal(0, #missing, "documented but called by no spec:\n  " .. table.concat(names, "\n  "))
  end)

  it("python.md names only parx functions that the other pages document", function()
    local known = {}
    for _, e in ipairs((audit())) do known[e.method and ("method " .. e.method) or e.name] = true end
    local unknown = {}
    for _, par in ipairs(paragraphs(assert(slurp(DOCS .. "/python.md")))) do
      -- A table row's first cell is the Python side.
      par = par:gsub("%f[^\n%z]|[^|\n]*|", "|")
      for _, sp in ipairs(spans(par)) do
        for _, e in ipairs(calls(sp)) do
          if not known[e.method and ("method " .. e.method) or e.name] then
            unknown[#unknown + 1] = e.name
          end
        end
      end
    end
    assert.equal(0, #unknown, "python.md names: " .. table.concat(unknown, ", "))
  end)

  it("every link to a heading of a page points at one that exists", function()
    local broken = {}
    for _, page in ipairs(pages()) do
      for target, anchor in assert(slurp(DOCS .. "/" .. page)):gmatch("%]%(([%w_%.%-]*)#([^%)%s]+)%)") do
        local file = target == "" and page or target
        if slurp(DOCS .. "/" .. file) and not anchors(file)[anchor] then
          broken[#broken + 1] = page .. ": " .. file .. "#" .. anchor
        end
      end
    end
    assert.equal(0, #broken, "broken links:\n  " .. table.concat(broken, "\n  "))
  end)

  it("a function named without its arguments in a table's first column is written as a call", function()
    -- `mpi.imap` in a table read as a value and escaped the audit; resolve
    -- such names here (parx.mpi's in a parx of their own: loading it here
    -- would start MPI in the spec's process).
    local bare, mpi_names = {}, {}
    for _, page in ipairs(pages()) do
      for line in assert(slurp(DOCS .. "/" .. page)):gmatch("[^\n]+") do
        local first = line:match("^|([^|]*)|")
        -- Only a cell that is a list of code spans (a signature cell).
        if first and not first:gsub("`[^`]*`", ""):match("^[%s,/]*$") then first = nil end
        for _, sp in ipairs(first and spans(first) or {}) do
          local root, rest = sp:match("^([%a_][%w_]*)%.([%w_%.]+)$")
          if root == "mpi" then
            mpi_names[#mpi_names + 1] = {page, sp, rest}
          elseif root == "parx" or MODULES[root] then
            local v = root == "parx" and parx or parx[root]
            for part in rest:gmatch("[^%.]+") do v = type(v) == "table" and v[part] or nil end
            if type(v) == "function" then bare[#bare + 1] = page .. ": " .. sp end
          end
        end
      end
    end
    local code = {'local ok, mpi = pcall(require, "parx.mpi")'}
    for _, n in ipairs(mpi_names) do
      code[#code + 1] = ('print(ok and type(mpi.%s) or "no mpi")'):format(n[3])
    end
    local p = io.popen(("%s -e '%s' 2>/dev/null"):format(os.getenv("PARX_BIN") or "build/parx",
      table.concat(code, "; ")))
    local k = 0
    for kind in p:lines() do
      k = k + 1
      if kind == "function" then bare[#bare + 1] = mpi_names[k][1] .. ": " .. mpi_names[k][2] end
    end
    p:close()
    assert.equal(0, #bare, "give these their arguments: " .. table.concat(bare, ", "))
  end)

  it("each exception names a documented function and says why", function()
    local known = {}
    for _, e in ipairs((audit())) do known[e.name] = true end
    for name, why in pairs(EXCEPTIONS) do
      assert.is_true(known[name], "exception for an undocumented name: " .. name)
      assert.is_true(#why > 10, "exception without a reason: " .. name)
    end
  end)
end)
