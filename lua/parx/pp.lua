-- parx.pp: the REPL's pretty printer for scripts (Python's pprint).
--
--   parx.pp({1, 2, {x = 3}})          -- prints {1, 2, {x = 3}}
--   local s = parx.pformat(t, {depth = 2})
--
-- The formatter itself is parx.repl.format (lua/parx/repl.lua), so a
-- value prints the same at the prompt and from a script: lists as
-- {1, 2, 3}, keys sorted (numbers, then strings), strings quoted, nested
-- tables on one line while they fit in `width` columns, a table met again
-- on its own path as <cycle>, values with __tostring (parx arrays, tasks,
-- channels, dicts) through it.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local M = {}

local KNOWN = options.known{"depth", "indent", "items", "width"}

local function check(opts, fname)
  if opts == nil then return nil end
  if type(opts) ~= "table" then
    raise(("bad argument #2 to '%s' (table expected, got %s)"):format(fname, type(opts)))
  end
  return options.check(fname, opts, KNOWN)
end

-- parx.pformat(v[, opts]) -> the text parx.pp prints.  opts: depth (4),
-- items per table (100), width (80), indent ("  ").
function M.pformat(v, opts)
  return require("parx.repl").format(v, check(opts, "pformat"))
end

-- parx.pp(v[, opts]): print v pretty-printed, on standard output.
function M.pp(v, opts)
  io.stdout:write(require("parx.repl").format(v, check(opts, "pp")), "\n")
end

return M
