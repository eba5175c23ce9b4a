-- parx.repl: the Lua half of the REPL (runtime/cli/repl.c is the C half).
--
-- The C side reads lines; this module decides whether a chunk is complete,
-- compiles it (as an expression first, so `1+1` shows 2), runs it inside a
-- task of the main VM and prints what it returned.  `format` is the pretty
-- printer, usable on its own: parx.repl.format({a = 1, b = {2, 3}}).
local repl = {}

-- Every global this module uses is taken once, when it loads: code typed
-- at the prompt may set `table`, `string`, `io`, `tostring` ... to nil or
-- replace them, and the REPL must still print and report what it runs.
local type, tostring, pairs, ipairs, next, select = type, tostring, pairs, ipairs, next, select
local pcall, loadstring, setmetatable = pcall, loadstring, setmetatable
local concat, sort = table.concat, table.sort
local format, match, find, gsub, sub, gmatch =
  string.format, string.match, string.find, string.gsub, string.sub, string.gmatch
local floor = math.floor
-- debug.getmetatable: parx objects hide theirs behind __metatable.
local getmetatable, rawget = debug.getmetatable, rawget
local stdout, stderr = io.stdout, io.stderr
local task = require "parx.task"
local parx = require "parx"
local current, spawn, async = task.current, task.spawn, task.async

-- The chunk prepare() compiled, waiting for run_pending() in a task.
repl.pending = nil
-- Set by run_pending() when the chunk returned; the C side polls it to know
-- when the task it started has finished (errors it learns from parx_step).
repl.finished = true

local keywords = {}
for w in gmatch([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]], "%a+") do
  keywords[w] = true
end

local function is_identifier(s)
  return type(s) == "string" and match(s, "^[%a_][%w_]*$") ~= nil
    and not keywords[s]
end

local function quote(s)
  -- %q writes a real newline as "\<newline>"; a REPL wants "\n".
  return (gsub(gsub(gsub(format("%q", s), "\\\n", "\\n"), "\r", "\\r"), "%z", "\\0"))
end

-- Keys sort numbers first (by value), then strings, then anything else by
-- its type and address, so output is stable from run to run.
local rank = {number = 1, string = 2, boolean = 3}
local function key_less(a, b)
  local ta, tb = type(a), type(b)
  local ra, rb = rank[ta] or 4, rank[tb] or 4
  if ra ~= rb then return ra < rb end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return (a and 1 or 0) < (b and 1 or 0) end
  return tostring(a) < tostring(b)
end

local function is_task(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__name") == "parx.task"
end

-- A task with its state: "parx.task 2 (async): running".
local function show_task(t)
  local ok, status = pcall(t.status, t)
  return tostring(t) .. ": " .. (ok and status or "?")
end

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

-- Pretty-print a value.  opts (all optional):
--   depth  tables nested deeper than this print as {...} (default 4)
--   items  entries shown per table before "..." (default 100)
--   width  a table that fits in this many columns stays on one line (80)
--   indent the indentation unit ("  ")
-- Strings are quoted; a table reached again while it is being printed
-- shows as <cycle>; tables with a __tostring metamethod use it.
local check_table = require("parx.opts").check_table -- now: a script may remove require
local FORMAT_OPTS = require("parx.opts").known{"depth", "indent", "items", "width"}

function repl.format(value, opts)
  opts = check_table("repl.format", 2, opts, FORMAT_OPTS) or {}
  local max_depth = opts.depth or 4
  local max_items = opts.items or 100
  local width = opts.width or 80
  local unit = opts.indent or "  "
  local open = {} -- tables on the current path, for cycle detection

  local fmt

  local function fmt_key(k, depth)
    if is_identifier(k) then return k end
    return "[" .. fmt(k, depth, "") .. "]"
  end

  local function fmt_table(t, depth, indent)
    if open[t] then return "<cycle>" end
    if has_tostring(t) then return tostring(t) end
    if next(t) == nil then return "{}" end
    if depth >= max_depth then return "{...}" end
    open[t] = true
    local inner = indent .. unit
    local parts, n = {}, 0
    local len = #t
    local truncated = false
    for i = 1, len do
      if n >= max_items then truncated = true; break end
      n = n + 1
      parts[n] = fmt(t[i], depth + 1, inner)
    end
    local keys = {}
    for k in pairs(t) do
      if not (type(k) == "number" and k >= 1 and k <= len and k % 1 == 0) then
        keys[#keys + 1] = k
      end
    end
    sort(keys, key_less)
    for _, k in ipairs(keys) do
      if n >= max_items then truncated = true; break end
      n = n + 1
      parts[n] = fmt_key(k, depth + 1) .. " = " .. fmt(t[k], depth + 1, inner)
    end
    if truncated then parts[n + 1] = "..." end
    open[t] = nil
    local one = "{" .. concat(parts, ", ") .. "}"
    if #one + #indent <= width and not find(one, "\n", 1, true) then
      return one
    end
    return "{\n" .. inner .. concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
  end

  fmt = function(v, depth, indent)
    local tv = type(v)
    if tv == "string" then return quote(v) end
    if tv == "userdata" and is_task(v) then return show_task(v) end
    if tv == "table" then return fmt_table(v, depth, indent) end
    if tv == "number" then
      if v == floor(v) and v > -1e15 and v < 1e15 then
        return format("%d", v)
      end
      return format("%.14g", v)
    end
    return tostring(v)
  end

  return fmt(value, 0, "")
end

-- Format n values as the REPL shows them: tab-separated on one line.
function repl.show(...)
  local n = select("#", ...)
  local out = {}
  for i = 1, n do out[i] = repl.format((select(i, ...))) end
  return concat(out, "\t")
end

local function incomplete(msg)
  -- LuaJIT ends the message of a chunk cut short with "near '<eof>'" (or
  -- "near <eof>" for an unfinished string), whatever the construct was.
  return find(msg, "<eof>'?$") ~= nil
end

-- Compile a chunk typed at the prompt.  Returns "ok" (the function waits in
-- repl.pending), "incomplete" (read another line), or "error", message.
-- An expression is tried first ("return " .. src) so `1+1` prints 2.
function repl.prepare(src, chunkname)
  chunkname = chunkname or "=stdin"
  repl.pending = nil
  -- "=expr" prints expr, as in the Lua 5.1 REPL.
  if sub(src, 1, 1) == "=" then src = "return " .. sub(src, 2) end
  -- The expression is an argument rather than a tail call, so that an
  -- error it raises still points at stdin:1 and the traceback keeps its
  -- frame; the newline keeps a trailing comment from eating the ")".
  local fn = loadstring("return (...)(" .. src .. "\n)", chunkname)
  if fn then repl.pending = fn; return "ok" end
  local err
  fn, err = loadstring(src, chunkname)
  if fn then repl.pending = fn; return "ok" end
  if incomplete(err) then return "incomplete" end
  -- An unfinished expression ("1 +") fails as a statement before its end.
  local _, experr = loadstring("return " .. src, chunkname)
  if experr and incomplete(experr) then return "incomplete" end
  return "error", err
end

-- Completions for the word before the cursor: global names, fields after
-- "a.b." and methods after "obj:" (including those of its metatable's
-- __index table).  Returns the full words, sorted.
function repl.complete(word)
  local path, sep, partial = match(word, "^(.-)([.:]?)([%w_]*)$")
  local scope = _G
  if sep ~= "" and path == "" then return {} end
  if sep ~= "" then
    for name in gmatch(path, "[^.:]+") do
      if not is_identifier(name) then return {} end
      local ok, v = pcall(function() return scope[name] end)
      if not ok or v == nil then return {} end
      scope = v
    end
  end
  local seen, out = {}, {}
  local function add_keys(t, depth)
    if type(t) ~= "table" or depth > 3 then return end
    for k, v in pairs(t) do
      if type(k) == "string" and not seen[k] and sub(k, 1, #partial) == partial
        and (match(k, "^[%a_][%w_]*$")) and (sep ~= ":" or type(v) == "function")
        and (sub(k, 1, 1) ~= "_" or sub(partial, 1, 1) == "_") then
        seen[k] = true
        out[#out + 1] = path .. sep .. k
      end
    end
    local mt = getmetatable(t)
    if type(mt) == "table" and type(rawget(mt, "__index")) == "table" then
      add_keys(rawget(mt, "__index"), depth + 1)
    end
    -- Names loaded on first use (parx.channel): the table lists them in
    -- its metatable's __lazy, as lua/parx/init.lua does.
    if type(mt) == "table" and type(rawget(mt, "__lazy")) == "table" then
      for k in pairs(rawget(mt, "__lazy")) do
        if type(k) == "string" and not seen[k] and sub(k, 1, #partial) == partial
          and sep ~= ":" then
          seen[k] = true
          out[#out + 1] = path .. sep .. k
        end
      end
    end
  end
  if type(scope) == "table" then
    add_keys(scope, 0)
  else
    local mt = getmetatable(scope)
    if type(mt) == "table" then add_keys(rawget(mt, "__index"), 0) end
  end
  if sep == "" then
    for k in pairs(keywords) do
      if sub(k, 1, #partial) == partial and not seen[k] then out[#out + 1] = k end
    end
  end
  sort(out)
  return out
end

local function pass(...) return ... end

local function finish(...)
  repl.finished = true
  if select("#", ...) > 0 then
    stdout:write(repl.show(...), "\n")
    stdout:flush()
  end
end

-- Run the prepared chunk; called as the body of a task of the main VM.
-- Errors are not caught here: they end the task, and the C side reports
-- them through parx_last_error like any uncaught error.
function repl.run_pending()
  local fn = repl.pending
  repl.pending = nil
  repl.finished = false
  repl.task = current()
  if not fn then repl.finished = true; return end
  return finish(fn(pass))
end

-- Ctrl-C while the chunk's task is parked (a sleep, a recv, a join):
-- cancel it, so the wait ends at once.  Called by the C side between two
-- steps of the loop.  Returns whether there was a task to interrupt.
function repl.interrupt()
  local t = repl.task
  if t == nil or t:done() then return false end
  return (t:cancel())
end

-- Tasks started at the prompt, to report their failures at the next prompt
-- and to say at Ctrl-D what is still running.  Weak: a task the user
-- dropped and that finished well is forgotten.
local started = setmetatable({}, {__mode = "k"})
local order = 0

local function track(t)
  order = order + 1
  started[t] = order
  return t
end

-- From the REPL's start on, parx.spawn and parx.async of the main VM
-- remember what they start (the script before it ran without this).
function repl.start()
  parx.spawn = function(...) return track(spawn(...)) end
  parx.async = function(...) return track(async(...)) end
end

local function tracked()
  local list = {}
  for t in pairs(started) do list[#list + 1] = t end
  sort(list, function(a, b) return started[a] < started[b] end)
  return list
end

-- Print each tracked task that failed since the last prompt, once, with its
-- error (joining it here: it is done, so the join does not wait).
function repl.report_failed()
  for _, t in ipairs(tracked()) do
    if t:done() then
      started[t] = nil
      if t:status() == "failed" then
        local _, err = pcall(t.join, t)
        stderr:write("parx: ", tostring(t), " failed: ", tostring(err), "\n")
      end
    end
  end
  stderr:flush()
end

-- The tasks started at the prompt that have not finished, as one line
-- ("parx.task 3 (async), parx.task 4 (spawned)"), or nil.
function repl.pending_tasks()
  local names = {}
  for _, t in ipairs(tracked()) do
    if not t:done() then names[#names + 1] = tostring(t) end
  end
  if #names == 0 then return nil end
  return concat(names, ", ")
end

return repl
