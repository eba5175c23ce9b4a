-- parx.opts: the one check of an options table, and misuse raised at the
-- user's line (the C side has the same pair: px_check_options and
-- px_error_user in runtime/core/errors.c).
--
--   local KNOWN = opts.known{"timeout", "any"}    -- once, at load
--   opts.check("parx.wait", o, KNOWN)  -- raises "parx.wait: unknown option
--                                      -- 'x' (known: any, timeout)"
--   opts.error("parx.gather: ...")     -- raises at the user's line
--
-- "The user's line" is the innermost frame that is neither a C function nor
-- one of parx's own modules (lua/parx/*.lua): however deep the check sits
-- and whatever calls the public function (pcall included), the message
-- starts with the script's file:line.
local type, pairs, tostring, error = type, pairs, tostring, error
local getinfo = debug.getinfo

local M = {}

-- parx's modules are compiled with the chunk name of their file (Makefile:
-- luajit -b lua/parx/x.lua), wherever the library is installed.
local OWN = "@lua/parx/"

-- "file:line: " of the user's frame, or "" when there is none.
function M.where()
  local level = 2
  while true do
    local info = getinfo(level, "Sl")
    if not info then return "" end
    if info.currentline > 0 and info.source:sub(1, #OWN) ~= OWN then
      return info.short_src .. ":" .. info.currentline .. ": "
    end
    level = level + 1
  end
end

-- error(msg): error(msg, level) with the level of the user's frame.  A
-- value that is not a string or number is raised as it is (error() adds no
-- position to it either).
function M.error(msg)
  local t = type(msg)
  if t ~= "string" and t ~= "number" then error(msg, 0) end
  error(M.where() .. msg, 0)
end

-- The text of each known set, sorted, made once by known().
local listed = setmetatable({}, {__mode = "k"})

-- known{"a", "b"} -> the set {a = true, b = true}, for check().
function M.known(names)
  local set, sorted = {}, {}
  for i = 1, #names do
    set[names[i]] = true
    sorted[i] = names[i]
  end
  table.sort(sorted)
  listed[set] = table.concat(sorted, ", ")
  return set
end

-- check(fname, opts, known): raises at the user's line for a key of opts
-- not in known; opts may be nil (nothing to check) and any non-table is
-- left to the caller.  One walk of opts: call it once per call of the
-- public function, never per item.
function M.check(fname, opts, known)
  if type(opts) ~= "table" then return opts end
  for k in pairs(opts) do
    if not known[k] then
      M.error(("%s: unknown option '%s' (known: %s)"):format(fname, tostring(k), listed[known]))
    end
  end
  return opts
end

-- check_table(fname, argn, opts, known): the same, and a value that is
-- neither nil nor a table raises "bad argument #argn to 'fname' (table
-- expected, got x)".
function M.check_table(fname, argn, opts, known)
  if opts ~= nil and type(opts) ~= "table" then
    M.error(("bad argument #%d to '%s' (table expected, got %s)"):format(argn, fname, type(opts)))
  end
  return M.check(fname, opts, known)
end

-- check_fn(fname, [opts,] fn, ...): the arguments of parx.spawn and what
-- is built on it (scopes, pool.submit).  A table without a metatable first
-- is the options (as runtime/mod/task.c takes them); the function after it
-- must be callable, or this raises at the user's line, before parx.spawn
-- would raise it inside the wrapper.
local getmetatable = debug.getmetatable -- parx's own hide behind __metatable
local select = select

-- check_callable(fname, argn, fn): fn is a function or has __call.
function M.check_callable(fname, argn, fn)
  if type(fn) == "function" then return end
  local mt = getmetatable(fn)
  if type(mt) == "table" and rawget(mt, "__call") ~= nil then return end
  M.error(("bad argument #%d to '%s' (function expected, got %s)"):format(argn, fname, type(fn)))
end

function M.check_fn(fname, ...)
  local argn, fn = 1, ...
  if type(fn) == "table" and getmetatable(fn) == nil then argn, fn = 2, select(2, ...) end
  M.check_callable(fname, argn, fn)
end

return M
