-- parx.pool_loops: the loops a pool runner runs over one chunk, one per
-- mode.  Each entry makes its loop from (tnew, unpack, type) and uses no
-- upvalue, so that pool.lua can load a fresh copy of it for every runner
-- from its string.dump (see "Runners" there).
--
-- MAP with the numeric lane: items come from the table or, when it is nil,
-- from inbuf[base ..]; numeric results go to outbuf[base ..] and the loop
-- returns true.  At the first result that is not a number it switches to a
-- table of results for the rest of the chunk.
local c = require "parx.c.pool"

return {
  [c.MAP] = function(tnew, unpack, type)
    return function(fn, items, n, base, inbuf, outbuf)
      if not outbuf then
        local out = tnew(n, 0)
        for i = 1, n do out[i] = fn(items[i]) end
        return out
      end
      local i, v = 0, nil
      if items then
        while i < n do
          v = fn(items[i + 1])
          if type(v) ~= "number" then break end
          outbuf[base + i] = v
          i = i + 1
        end
      else
        while i < n do
          v = fn(inbuf[base + i])
          if type(v) ~= "number" then break end
          outbuf[base + i] = v
          i = i + 1
        end
      end
      if i == n then return true end
      local out = tnew(n, 0)
      for j = 1, i do out[j] = outbuf[base + j - 1] end
      out[i + 1] = v
      for j = i + 2, n do
        local x
        if items then x = items[j] else x = inbuf[base + j - 1] end
        out[j] = fn(x)
      end
      return out
    end
  end,
  [c.STARMAP] = function(tnew, unpack)
    return function(fn, items, n)
      local out = tnew(n, 0)
      for i = 1, n do
        local args = items[i]
        out[i] = fn(unpack(args, 1, args.n or #args))
      end
      return out
    end
  end,
  [c.REDUCE] = function(tnew, unpack, type)
    return function(fn, items, n)
      local acc = items[1]
      for i = 2, n do acc = fn(acc, items[i]) end
      return acc
    end
  end,
  [c.FOR] = function(tnew, unpack, type)
    return function(fn, lo, hi) return (fn(lo, hi)) end
  end,
}
