-- A busted output handler: busted's usual terminal output, then one line
-- the spec runner (scripts/tools/runspecs) reads to add up the suite:
--   PARX-SPEC-COUNTS <passed> <failed> <errors> <pending>
-- Used as `busted -o scripts/tools/busted_summary.lua`.
return function(options)
  local busted = require "busted"
  local name = os.getenv("PARX_SPEC_COLOR") == "1" and "utfTerminal"
    or "plainTerminal"
  local inner = require("busted.outputHandlers." .. name)(options)

  local subscribe = inner.subscribe
  inner.subscribe = function(self, opts)
    subscribe(self, opts)
    busted.subscribe({ "exit" }, function()
      io.stdout:write(string.format("\nPARX-SPEC-COUNTS %d %d %d %d\n",
        inner.successesCount, inner.failuresCount, inner.errorsCount,
        inner.pendingsCount))
      io.stdout:flush()
      return nil, true
    end)
  end
  return inner
end
