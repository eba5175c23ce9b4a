-- parx.timeline: a trace drawn as a self-contained SVG Gantt chart, for a
-- look at where the time went without a browser (parx --timeline out.svg).
--
--   require("parx.timeline").write(path, events, opts) -> true | nil, msg
--
-- events is a list of Chrome trace events as parx.trace records them:
-- {name, cat, ph, ts (µs), dur (µs), pid, tid, id, args}.  "X" slices are
-- bars, "i" instants ticks (cat "mark": a line across the chart), "M"
-- thread_name metadata names the rows; "C" counters and "s"/"f" flows are
-- left to Perfetto.  opts.by = "vm" (one row per VM, the default) or
-- "task" (one row per task, from args.task: the seeds' one bar per
-- download); opts.title, opts.width (pixels, default 1200), opts.t0 and
-- opts.t1 (µs: a fixed time axis, for charts compared side by side).
--
-- A row is coloured by state: what runs (a task's slice, a pool chunk)
-- over what is parked (on a channel, a lock, IO, the GPU, MPI, a sleep,
-- another task), over white (idle).  Slices that nest on a track are drawn
-- deeper on top, so a wait recorded inside a run slice still shows.
--
-- Readable at 100,000 events: within a row, slices of one state that touch
-- the same pixel are merged into one bar whose hover title counts them, so
-- the file has at most a few bars per pixel column whatever the trace.
local floor, max, min, huge = math.floor, math.max, math.min, math.huge
local concat, sort = table.concat, table.sort
local format = string.format

local options = require "parx.opts"

local M = {}

local OPTS = options.known{"by", "t0", "t1", "title", "width"}

-- The states in drawing order (later on top at the same depth), with their
-- colours and legend names.  Unknown categories draw as "other".
local STATES = {
  {cat = "wait.sleep", color = "#c7c7c7", label = "sleeping"},
  {cat = "wait.task", color = "#f2d16b", label = "waiting on a task"},
  {cat = "wait.io", color = "#b07cc6", label = "parked on IO"},
  {cat = "wait.chan", color = "#f39c4a", label = "parked on a channel"},
  {cat = "wait.lock", color = "#e0524d", label = "parked on a lock"},
  {cat = "wait.gpu", color = "#5ab55a", label = "waiting on the GPU"},
  {cat = "wait.mpi", color = "#3fb8b0", label = "waiting on MPI"},
  {cat = "other", color = "#9aa5b1", label = "other"},
  {cat = "run", color = "#3b73c4", label = "running"},
  {cat = "pool.chunk", color = "#1f4e8c", label = "running a pool chunk"},
}
local RANK, COLOR = {}, {}
for i, s in ipairs(STATES) do RANK[s.cat], COLOR[s.cat] = i, s.color end
M.states = STATES

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                        ['"'] = "&quot;", ["'"] = "&#39;"}))
end

-- A duration in µs as a person reads it: 1.25 s, 12.3 ms, 85 µs.
local function dur_text(us)
  if us >= 1e6 then return format("%.3g s", us / 1e6) end
  if us >= 1e3 then return format("%.3g ms", us / 1e3) end
  return format("%.3g µs", us)
end
M.dur_text = dur_text

-- What a slice waited on, from its args ("chan 3", "task 7", a path).
local function args_text(args)
  if type(args) ~= "table" then return "" end
  local keys = {}
  for k in pairs(args) do
    if type(k) == "string" and k ~= "task" then keys[#keys + 1] = k end
  end
  sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = args[k]
    if type(v) ~= "table" then parts[#parts + 1] = k .. "=" .. tostring(v) end
  end
  if #parts == 0 then return "" end
  return " (" .. concat(parts, ", ") .. ")"
end

-- Axis ticks: a step of 1, 2 or 5 times a power of ten giving about n ticks.
local function tick_step(span, n)
  local raw = span / n
  local p = 10 ^ floor(math.log10(raw))
  for _, m in ipairs({1, 2, 5, 10}) do
    if m * p >= raw then return m * p end
  end
  return 10 * p
end

local function tick_label(s, step)
  local digits = max(0, -floor(math.log10(step) + 1e-9))
  return format("%." .. digits .. "f", s)
end

-- Rows: key -> {key, label, order, slices = {}}.  By VM the key is the
-- track (pid, tid); by task, args.task.
local function collect(events, by)
  local names, pids, named = {}, {}, {}
  for _, e in ipairs(events) do
    if type(e) == "table" and e.ph == "M" and e.name == "thread_name" and type(e.args) == "table" then
      local key = tostring(e.pid) .. ":" .. tostring(e.tid)
      if not names[key] then named[#named + 1] = {key = key, pid = e.pid, tid = e.tid} end
      names[key] = e.args.name
    end
  end
  local foreign = {} -- tracks holding another VM's slices (a task's own track)
  local rows, list, tracks, marks = {}, {}, {}, {}
  local t0, t1 = huge, -huge
  local function row_of(key, e, tid)
    local r = rows[key]
    if not r then
      r = {key = key, slices = {}, ticks = {}, first = huge, pid = e.pid, tid = tid}
      rows[key] = r
      list[#list + 1] = r
    end
    return r
  end
  for _, e in ipairs(events) do
    if type(e) ~= "table" then goto continue end
    local ph, ts = e.ph, tonumber(e.ts)
    if ts == nil or ph == "M" then goto continue end
    if e.pid ~= nil then pids[tostring(e.pid)] = true end
    local args = type(e.args) == "table" and e.args or nil
    local task = args and args.task
    local key, tid = nil, e.tid
    if by == "task" then key = task ~= nil and "task:" .. tostring(task) or nil
    else
      -- A wait recorded on its task's own track (args.vm says whose)
      -- belongs to the VM's row.
      tid = args and tonumber(args.vm) or e.tid
      key = tostring(e.pid) .. ":" .. tostring(tid)
      if tid ~= e.tid then foreign[tostring(e.pid) .. ":" .. tostring(e.tid)] = true end
    end
    if ph == "X" then
      local d = max(tonumber(e.dur) or 0, 0)
      t0, t1 = min(t0, ts), max(t1, ts + d)
      if key then
        local r = row_of(key, e, tid)
        r.task = task
        local s = {ts = ts, te = ts + d, cat = RANK[e.cat] and e.cat or "other",
                   name = e.name, args = e.args, track = tostring(e.pid) .. ":" .. tostring(e.tid)}
        r.slices[#r.slices + 1] = s
        if ts < r.first then r.first = ts end
        if (s.cat == "run" or s.cat == "pool.chunk") and not r.runname then r.runname = e.name end
        r.anyname = r.anyname or e.name
        local tr = tracks[s.track]
        if not tr then tr = {}; tracks[s.track] = tr end
        tr[#tr + 1] = s
      end
    elseif ph == "i" or ph == "I" then
      t0, t1 = min(t0, ts), max(t1, ts)
      if e.cat == "mark" then marks[#marks + 1] = {ts = ts, name = e.name}
      elseif key then
        local r = row_of(key, e, tid)
        r.ticks[#r.ticks + 1] = {ts = ts, name = e.name, args = e.args}
      end
    end
    ::continue::
  end
  -- By VM, a VM the trace names but that recorded nothing is a row too:
  -- idle from start to end is worth seeing.
  if by ~= "task" then
    for _, m in ipairs(named) do
      if not rows[m.key] and not foreign[m.key] then
        row_of(m.key, {pid = m.pid}, m.tid)
        if m.pid ~= nil then pids[tostring(m.pid)] = true end
      end
    end
  end
  local npids = 0
  for _ in pairs(pids) do npids = npids + 1 end
  for _, r in ipairs(list) do
    if by == "task" then
      local name = r.runname or r.anyname
      local id = "task " .. tostring(r.task)
      if not name or name == id then r.label = id
      elseif name:sub(1, #id + 1) == id .. " " then r.label = name
      else r.label = id .. " " .. name end
    else
      local name = names[r.key] or (r.tid == 0 and "main" or "vm " .. tostring(r.tid))
      r.label = npids > 1 and format("rank %s %s", tostring(r.pid), name) or name
    end
  end
  -- Depth of each slice on its own track: slices nest there (the format's
  -- rule), so a stack of end times gives it.
  for _, tr in pairs(tracks) do
    sort(tr, function(a, b)
      if a.ts ~= b.ts then return a.ts < b.ts end
      return a.te > b.te
    end)
    local stack, n = {}, 0
    for _, s in ipairs(tr) do
      while n > 0 and stack[n] <= s.ts do stack[n] = nil; n = n - 1 end
      s.depth = n
      n = n + 1
      stack[n] = s.te
    end
  end
  if by == "task" then
    sort(list, function(a, b)
      if a.first ~= b.first then return a.first < b.first end
      return tostring(a.task) < tostring(b.task)
    end)
  else
    sort(list, function(a, b)
      local pa, pb = tonumber(a.pid) or 0, tonumber(b.pid) or 0
      if pa ~= pb then return pa < pb end
      local ta, tb = tonumber(a.tid), tonumber(b.tid)
      if ta and tb and ta ~= tb then return ta < tb end
      return a.key < b.key
    end)
  end
  return list, marks, t0, t1
end

-- Time per state in a row: the union of each state's slices (µs).
local function union_time(slices)
  local sum, a, b = 0, nil, nil
  for _, s in ipairs(slices) do
    if a == nil or s.ts > b then
      if a then sum = sum + (b - a) end
      a, b = s.ts, s.te
    elseif s.te > b then
      b = s.te
    end
  end
  if a then sum = sum + (b - a) end
  return sum
end

-- The bars of one row: slices grouped by (depth, state), deeper and busier
-- states drawn on top.  A slice at least MIN_BAR pixels wide is a bar of its
-- own with its name, duration and arguments in the hover title.  Narrower
-- ones are summed per pixel column: each column is drawn in the state's
-- colour with the opacity of the share of it they cover, so 100,000 tiny
-- chunks with waits between them show as a blend of the two colours, and
-- the file holds at most one bar per column and state.  Appends SVG to out;
-- returns the row's running time (µs).
local MIN_BAR = 1.5

local function emit_columns(out, cov, cnt, names, cols, color, cat, y, h, left, us_per_px)
  local c = 1
  while c <= cols do
    if cov[c] > 0 then
      local q = min(1, cov[c])
      q = max(0.1, floor(q * 10 + 0.5) / 10)
      local c1, n, busy = c, cnt[c], cov[c]
      local name = names[c]
      while c1 < cols and cov[c1 + 1] > 0 do
        local q1 = max(0.1, floor(min(1, cov[c1 + 1]) * 10 + 0.5) / 10)
        if q1 ~= q then break end
        c1 = c1 + 1
        n, busy = n + cnt[c1], busy + cov[c1]
      end
      local title = n == 1 and format("%s — %s", tostring(name or cat), dur_text(busy * us_per_px))
        or format("%d %s slices, %s in all (%.0f%% of this span): %s, …", n, cat,
                  dur_text(busy * us_per_px), 100 * busy / (c1 - c + 1), tostring(name or cat))
      out[#out + 1] = format('<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s" fill-opacity="%.1f"><title>%s</title></rect>\n',
                             left + c - 1, y, c1 - c + 1, h, color, q, esc(title))
      c = c1 + 1
    else
      c = c + 1
    end
  end
end

local function draw_row(out, r, x_of, y, h, left, cols, us_per_px)
  local groups, order = {}, {}
  local running = {}
  for _, s in ipairs(r.slices) do
    local gk = s.depth * 100 + RANK[s.cat]
    local g = groups[gk]
    if not g then g = {}; groups[gk] = g; order[#order + 1] = gk end
    g[#g + 1] = s
    if s.cat == "run" or s.cat == "pool.chunk" then running[#running + 1] = s end
  end
  sort(order)
  local cov, cnt, names = {}, {}, {}
  for _, gk in ipairs(order) do
    local g = groups[gk]
    local cat = STATES[gk % 100].cat
    local color = COLOR[cat]
    local narrow = false
    for _, s in ipairs(g) do
      local x0, x1 = x_of(s.ts), x_of(s.te)
      if x1 - x0 >= MIN_BAR then
        -- A hairline of white parts two bars that touch (chunk after chunk).
        out[#out + 1] = format('<rect x="%.2f" y="%.1f" width="%.2f" height="%.1f" fill="%s" stroke="#fff" '
                               .. 'stroke-width="0.5"><title>%s</title></rect>\n', x0, y, x1 - x0, h, color,
                               esc(format("%s%s — %s", tostring(s.name or cat), args_text(s.args), dur_text(s.te - s.ts))))
      else
        if not narrow then
          narrow = true
          for c = 1, cols do cov[c], cnt[c], names[c] = 0, 0, nil end
        end
        -- Spread the slice's width over the columns it touches.
        local a, b = x0 - left, x1 - left
        local c = max(1, min(cols, floor(a) + 1))
        cnt[c] = cnt[c] + 1
        names[c] = names[c] or s.name
        while a < b and c <= cols do
          local edge = min(b, c)
          cov[c] = cov[c] + (edge - a)
          a, c = edge, c + 1
        end
      end
    end
    if narrow then emit_columns(out, cov, cnt, names, cols, color, cat, y, h, left, us_per_px) end
  end
  for _, t in ipairs(r.ticks) do
    local x = x_of(t.ts)
    out[#out + 1] = format('<path d="M%.2f %.1fv%.1f" stroke="#222" stroke-width="1"><title>%s%s</title></path>\n',
                           x, y, h, esc(tostring(t.name)), esc(args_text(t.args)))
  end
  sort(running, function(a, b) return a.ts < b.ts end)
  return union_time(running)
end

-- write(path, events, opts) -> true | nil, message
function M.write(path, events, opts)
  if type(path) ~= "string" then return nil, "timeline: path must be a string" end
  if type(events) ~= "table" then return nil, "timeline: events must be a list of trace events" end
  opts = options.check_table("timeline.write", 3, opts, OPTS) or {}
  local by = opts.by or "vm"
  if by ~= "vm" and by ~= "task" then
    return nil, format("timeline: opts.by must be \"vm\" or \"task\", got %s", tostring(by))
  end
  local svg = M.render(events, opts)
  local f, err = io.open(path, "wb")
  if not f then return nil, "cannot write timeline: " .. tostring(err) end
  local ok, werr = f:write(svg)
  local cok, cerr = f:close()
  if not ok or not cok then return nil, "cannot write timeline: " .. tostring(werr or cerr) end
  return true
end

-- render(events, opts) -> the SVG text (write's body, for specs and hosts).
function M.render(events, opts)
  opts = options.check_table("timeline.render", 2, opts, OPTS) or {}
  local by = opts.by or "vm"
  local rows, marks, t0, t1 = collect(events, by)
  if t0 == huge then t0, t1 = 0, 1 end
  -- opts.t0, opts.t1 (µs): a fixed time axis, to compare charts side by side.
  t0, t1 = tonumber(opts.t0) or t0, tonumber(opts.t1) or t1
  if t1 <= t0 then t1 = t0 + 1 end
  local width = max(tonumber(opts.width) or 1200, 400)
  local longest = 0
  for _, r in ipairs(rows) do longest = max(longest, #r.label:gsub("[\128-\191]", "")) end
  local LABEL_MAX = 40
  local left, right = max(130, min(LABEL_MAX, longest) * 7 + 30), 20
  local top = 58
  local rowh, gap = 20, 6
  local plotw = width - left - right
  local span = t1 - t0
  local scale = plotw / span
  local function x_of(ts) return left + (ts - t0) * scale end
  local nrows = max(#rows, 1)
  local plot_bottom = top + nrows * (rowh + gap)
  -- Legend: the states that occur, then idle.
  local present = {}
  for _, r in ipairs(rows) do
    for _, s in ipairs(r.slices) do present[s.cat] = true end
  end
  local legend = {}
  for i = #STATES, 1, -1 do
    local s = STATES[i]
    if present[s.cat] then legend[#legend + 1] = s end
  end
  legend[#legend + 1] = {cat = "idle", color = "#ffffff", label = "idle"}
  local per_line = max(1, floor(plotw / 180))
  local legend_lines = floor((#legend - 1) / per_line) + 1
  local height = plot_bottom + 44 + legend_lines * 20 + 10

  local out = {}
  out[#out + 1] = format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
    .. 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">\n', width, height, width, height)
  out[#out + 1] = format('<rect width="%d" height="%d" fill="#ffffff"/>\n', width, height)
  local title = opts.title or (by == "task" and "parx timeline: one row per task" or "parx timeline: one row per VM")
  out[#out + 1] = format('<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>\n', left, esc(title))
  out[#out + 1] = format('<text x="%d" y="42" fill="#555">%d rows over %s</text>\n',
                         left, #rows, esc(dur_text(span)))
  -- Axis and grid (plt.grid(axis='x')): seconds from the first event.
  local step = tick_step(span / 1e6, 8)
  local k = 0
  while k * step <= span / 1e6 + 1e-12 do
    local x = x_of(t0 + k * step * 1e6)
    out[#out + 1] = format('<path d="M%.2f %dV%d" stroke="#e3e3e3"/>\n', x, top - 4, plot_bottom)
    out[#out + 1] = format('<text x="%.2f" y="%d" text-anchor="middle" fill="#333">%s</text>\n',
                           x, plot_bottom + 16, tick_label(k * step, step))
    k = k + 1
  end
  out[#out + 1] = format('<path d="M%d %dH%d" stroke="#888"/>\n', left, plot_bottom, left + plotw)
  out[#out + 1] = format('<text x="%.1f" y="%d" text-anchor="middle" fill="#333">seconds</text>\n',
                         left + plotw / 2, plot_bottom + 34)
  out[#out + 1] = format('<text x="14" y="%.1f" fill="#333" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>\n',
                         (top + plot_bottom) / 2, (top + plot_bottom) / 2, by == "task" and "tasks" or "VMs")
  if #rows == 0 then
    out[#out + 1] = format('<text x="%d" y="%d" fill="#888">no slices%s</text>\n', left + 8, top + 14,
                           by == "task" and " with a task (args.task)" or "")
  end
  for i, r in ipairs(rows) do
    local y = top + (i - 1) * (rowh + gap)
    out[#out + 1] = format('<g class="row" data-row="%s">\n', esc(r.label))
    out[#out + 1] = format('<rect x="%d" y="%d" width="%d" height="%d" fill="#ffffff" stroke="#d0d0d0"/>\n',
                           left, y, plotw, rowh)
    local busy = draw_row(out, r, x_of, y + 1, rowh - 2, left, plotw, span / plotw)
    local label = r.label
    if #label > LABEL_MAX then label = label:sub(1, LABEL_MAX - 1):gsub("[\192-\255][\128-\191]*$", "") .. "…" end
    out[#out + 1] = format('<text x="%d" y="%d" text-anchor="end"><title>%s: running %s (%.0f%% of the chart)</title>%s</text>\n',
                           left - 8, y + 14, esc(r.label), esc(dur_text(busy)), 100 * busy / span, esc(label))
    out[#out + 1] = '</g>\n'
  end
  -- Marks: a dashed line across every row.
  for _, m in ipairs(marks) do
    local x = x_of(m.ts)
    out[#out + 1] = format('<path d="M%.2f %dV%d" stroke="#d62728" stroke-dasharray="4 3"><title>%s at %s</title></path>\n',
                           x, top - 6, plot_bottom, esc(tostring(m.name)), esc(dur_text(m.ts - t0)))
  end
  -- Legend.
  local ly = plot_bottom + 52
  for i, s in ipairs(legend) do
    local col = (i - 1) % per_line
    local line = floor((i - 1) / per_line)
    local x, y = left + col * 180, ly + line * 20
    out[#out + 1] = format('<rect x="%d" y="%d" width="14" height="12" fill="%s" stroke="#888"/>'
                           .. '<text x="%d" y="%d">%s</text>\n', x, y - 10, s.color, x + 20, y, esc(s.label))
  end
  out[#out + 1] = "</svg>\n"
  return concat(out)
end

return M
