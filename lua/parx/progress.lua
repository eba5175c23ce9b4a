-- parx.progress: a progress bar in the manner of Python's tqdm, on standard
-- error and only when it is a terminal.
--
--   for i in parx.progress(100) do ... end            -- 1..100
--   for i, v in parx.progress(list, {label = "files"}) do ... end
--   for line in parx.progress(io.lines(path), {total = n}) do ... end
--   pool.map(fn, list, {progress = true})             -- pool.lua draws one
--
--   label:  42%|████████▍           | 4.2k/10.0k [00:03<00:04, 1.23k it/s]
--
-- The line shows the share done, the count (abbreviated: 12.3k, 1.23M),
-- the elapsed time, the time left ("?" until there is a rate to tell it
-- from) and the rate; with no known total, the count, time and rate.  It is
-- redrawn at most ten times a second.
--
-- Prints do not collide with it: while a bar is on the terminal, print and
-- io.write in the VM that draws it, and in the workers running a pool job
-- that has it, clear the bar's line first (the bar is redrawn at its next
-- update).  The VMs share one parx.atomic per bar for that: 0 when no bar
-- is shown, 1 when it is, 2 after a print cleared it.
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local ffi = require "ffi"
local now = require("parx.task").now

local floor, max, min = math.floor, math.max, math.min
local format, rep = string.format, string.rep
local type, select = type, select

local M = {}

pcall(ffi.cdef, "int isatty(int fd);")
pcall(ffi.cdef, "int ioctl(int fd, unsigned long request, ...);")
pcall(ffi.cdef, "struct parx_winsize { unsigned short row, col, xpixel, ypixel; };")

local TIOCGWINSZ = 0x5413 -- Linux

local function columns()
  local ws = ffi.new("struct parx_winsize")
  local ok, r = pcall(ffi.C.ioctl, 2, TIOCGWINSZ, ws)
  if ok and r == 0 and ws.col >= 20 then return ws.col end
  return tonumber(os.getenv("COLUMNS")) or 80
end

local function utf8_terminal()
  local lang = os.getenv("LC_ALL") or os.getenv("LC_CTYPE") or os.getenv("LANG") or ""
  return lang:lower():find("utf%-?8") ~= nil
end

-- count(n) -> n with three significant digits and a suffix from 1000 up:
-- 999, 1.23k, 12.3k, 123k, 1.23M.
local function count(n)
  if n < 1000 then return format("%d", n) end
  for _, s in ipairs({"k", "M", "G", "T"}) do
    n = n / 1000
    if n < 999.5 then
      if n < 9.995 then return format("%.2f%s", n, s) end
      if n < 99.95 then return format("%.1f%s", n, s) end
      return format("%.0f%s", n, s)
    end
  end
  return format("%.0fP", n / 1000)
end
M.count = count

-- clock(s) -> "03:25" or "1:02:03"
local function clock(s)
  s = floor(s + 0.5)
  local h, m = floor(s / 3600), floor(s % 3600 / 60)
  if h > 0 then return format("%d:%02d:%02d", h, m, s % 60) end
  return format("%02d:%02d", m, s % 60)
end
M.clock = clock

local function rate_text(r, unit)
  if not r then return "?" .. unit .. "/s" end
  if r < 1 and r > 0 then return format("%.2fs/%s", 1 / r, unit) end
  if r < 1000 then return format("%.2f%s/s", r, unit) end
  return count(r) .. " " .. unit .. "/s"
end

-- ---------------------------------------------------------------------------
-- Prints that clear the bar first.

local current -- this VM's bar flag (a parx.atomic), set by attach
local hooked = false

local function clear()
  local flag = current
  if flag and flag:get() ~= 0 then
    io.stderr:write("\r\27[K")
    flag:set(2)
  end
end

-- attach(flag): from now on print and io.write in this VM clear the line
-- of the bar whose flag this is while it is shown.
function M.attach(flag)
  current = flag
  if hooked then return end
  hooked = true
  local print0, write0 = print, io.write
  _G.print = function(...)
    clear()
    return print0(...)
  end
  io.write = function(...)
    clear()
    return write0(...)
  end
end

-- ---------------------------------------------------------------------------
-- The bar.

local Bar = {}
Bar.__index = Bar

local MININTERVAL = 0.1

-- bar(total, opts) -> a bar; total: the item count or nil (unknown).
-- opts.label, opts.unit ("it"), opts.force (draw even when standard error
-- is no terminal, for tests).  On no terminal the bar draws nothing.
function M.bar(total, opts)
  opts = opts or {}
  local shown = opts.force or ffi.C.isatty(2) == 1
  local b = setmetatable({total = total, n = 0, label = opts.label, unit = opts.unit or "it",
                          start = now(), last = -1, shown = shown}, Bar)
  if shown then
    b.flag = require("parx.sync").atomic(0)
    b.unicode = utf8_terminal()
    b.cols = columns()
    M.attach(b.flag)
    b:draw()
  end
  return b
end

-- The line for count n at time t.
function Bar:line(t)
  local n, total = self.n, self.total
  local el = t - self.start
  local rate = el > 0 and n > 0 and n / el or nil
  local label = self.label and self.label .. ": " or ""
  if not total or total <= 0 then
    return format("%s%s%s [%s, %s]", label, count(n), self.unit == "it" and "it" or " " .. self.unit,
                  clock(el), rate_text(rate, self.unit))
  end
  local frac = min(1, n / total)
  local eta = rate and (total - n) / rate
  local right = format("| %s/%s [%s<%s, %s]", count(n), count(total), clock(el),
                       eta and clock(eta) or "?", rate_text(rate, self.unit))
  local left = format("%s%3d%%|", label, floor(frac * 100))
  local width = max(1, min(40, self.cols - #left - #right - 1))
  local fill
  if self.unicode then
    local cells = frac * width
    local full = floor(cells)
    local part = floor((cells - full) * 8)
    fill = rep("█", full)
    if full < width then
      fill = fill .. (part > 0 and ({"▏", "▎", "▍", "▌", "▋", "▊", "▉"})[part] or " ")
        .. rep(" ", width - full - 1)
    end
  else
    local full = floor(frac * width)
    fill = rep("#", full) .. rep(" ", width - full)
  end
  return left .. fill .. right
end

function Bar:draw(final)
  local t = now()
  self.last, self.drawn = t, self.n
  io.stderr:write("\r", self:line(t), "\27[K", final and "\n" or "")
  io.stderr:flush()
  if self.flag then self.flag:set(final and 0 or 1) end
end

-- bar:update(n): n items are done (redraws at most ten times a second, at
-- once after a print cleared the line).
function Bar:update(n)
  if n ~= nil then self.n = n end
  if not self.shown or self.closed then return end
  if now() - self.last >= MININTERVAL or self.flag:get() == 2 then self:draw() end
end

-- bar:add([k = 1]): k more items are done.
function Bar:add(k)
  return self:update(self.n + (k or 1))
end

-- bar:close([n]): the final line (with a newline); the bar is done.
function Bar:close(n)
  if n ~= nil then self.n = n end
  if not self.shown or self.closed then return end
  self.closed = true
  if self.drawn == self.n and self.flag:get() == 1 then
    -- The line on the terminal is already the final one: end it.
    io.stderr:write("\n")
    io.stderr:flush()
    self.flag:set(0)
  else
    self:draw(true)
  end
end

-- ---------------------------------------------------------------------------
-- parx.progress(iterable_or_n, opts): a bar over a user's own loop.
--   n (a number): for i in parx.progress(n) do ... end counts 1..n;
--   a list: for i, v in parx.progress(list) do ... end (like ipairs);
--   an iterator function: its values, with opts.total when known.
-- An item counts as done when the loop asks for the next one; the bar
-- closes when the loop ends.
local PROGRESS_OPTS = options.known{"force", "label", "total", "unit"}

function M.progress(what, opts)
  opts = options.check_table("parx.progress", 2, opts, PROGRESS_OPTS) or {}
  local kind = type(what)
  if kind == "number" then
    if what ~= what or what < 0 then
      raise("bad argument #1 to 'parx.progress' (a count from 0 expected)")
    end
    local n, i = floor(what), 0
    local bar = M.bar(n, opts)
    return function()
      if i >= n then bar:close(n); return nil end
      if i > 0 then bar:update(i) end
      i = i + 1
      return i
    end
  elseif kind == "table" then
    local n, i = #what, 0
    local bar = M.bar(opts.total or n, opts)
    return function()
      if i >= n then bar:close(n); return nil end
      if i > 0 then bar:update(i) end
      i = i + 1
      return i, what[i]
    end
  elseif kind == "function" then
    local bar = M.bar(opts.total, opts)
    local i = 0
    local function pass(first, ...)
      if first == nil then bar:close(i); return nil end
      i = i + 1
      return first, ...
    end
    return function(...)
      if i > 0 then bar:update(i) end
      return pass(what(...))
    end
  end
  raise(("bad argument #1 to 'parx.progress' (number, table or function expected, got %s)"):format(kind))
end

-- ---------------------------------------------------------------------------
-- Pool jobs: a runner on a worker counts the items it finishes.

-- counted(fn, mode_for, shared) -> fn that adds to shared.count each item
-- it finishes (parallel_for's fn(lo, hi): hi - lo + 1), and attaches this
-- VM's prints to the bar.
function M.counted(fn, is_range, shared)
  M.attach(shared.flag)
  local done = shared.count
  if is_range then
    return function(lo, hi)
      local r = fn(lo, hi)
      done:add(hi - lo + 1)
      return r
    end
  end
  return function(...)
    local r = fn(...)
    done:add(1)
    return r
  end
end

-- The shared part of a bar a pool job hands its runners (nil: no bar).
function M.shared(bar)
  if not (bar and bar.shown) then return nil end
  bar.count = bar.count or require("parx.sync").atomic(0)
  return {flag = bar.flag, count = bar.count}
end

return M
