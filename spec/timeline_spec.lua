-- parx.timeline: a trace as an SVG Gantt chart.  Event lists built by hand
-- (the shape parx.trace records), checked through the SVG's structure and,
-- where rsvg-convert and python3 are installed (make deps), through the
-- PNG it renders to.
local timeline = require "parx.timeline"
local fs, process = parx.fs, parx.process
local PARX = os.getenv("PARX_BIN") or "build/parx"
local ROOT = debug.getinfo(1, "S").source:match("^@(.*)spec/timeline_spec.lua$") or ""
local tmp = fs.mkdtemp("/tmp/parx-timeline-")
local slurp = fs.readfile

-- run(cmd, args) -> exit status, stdout and stderr together
local function run(cmd, args)
  local r = process.exec(cmd, args, {timeout = 60})
  if not r then return nil, "" end
  return r.status, r.stdout .. r.stderr
end

local function have(cmd) return run("sh", {"-c", "command -v " .. cmd}) == 0 end
local have_rsvg, have_python = have("rsvg-convert"), have("python3")

-- Whether the PNG checks can run; marks the spec pending when not.
local function tools_here()
  if have_rsvg and have_python then return true end
  pending("needs rsvg-convert (librsvg2-bin) and python3: make deps")
  return false
end

local function meta(tid, name)
  return {ph = "M", name = "thread_name", pid = 1, tid = tid, args = {name = name}}
end

local function slice(tid, cat, name, ts, dur, args)
  return {ph = "X", cat = cat, name = name, ts = ts, dur = dur, pid = 1, tid = tid, args = args or {}}
end

-- rows(svg) -> {label = {rects = n, fills = {color = n}, y = top}, ...} and
-- the labels in order: a row is a <g class="row" data-row="label">; its
-- first rect is the white background, the others are its bars.
local function rows(svg)
  local out, order = {}, {}
  for label, body in svg:gmatch('<g class="row" data%-row="([^"]*)">(.-)</g>') do
    local r = {rects = -1, fills = {}, titles = {}}
    for attrs in body:gmatch("<rect ([^>]*)>") do
      r.rects = r.rects + 1
      local fill = attrs:match('fill="([^"]*)"')
      r.fills[fill] = (r.fills[fill] or 0) + 1
      r.y = r.y or tonumber(attrs:match('y="([%d.]+)"'))
    end
    for t in body:gmatch("<title>(.-)</title>") do r.titles[#r.titles + 1] = t end
    out[label] = r
    order[#order + 1] = label
  end
  return out, order
end

local COLOR = {}
for _, s in ipairs(timeline.states) do COLOR[s.cat] = s.color end

-- A pool.map over two workers: main waits on the job, each worker runs
-- chunks with a lock wait between them.
local function pool_events(chunks)
  local ev = {meta(0, "main"), meta(1, "worker 1"), meta(2, "worker 2")}
  ev[#ev + 1] = slice(0, "run", "main@map.lua:1", 0, 2000, {task = 1})
  ev[#ev + 1] = slice(0, "wait.task", "pool.map", 2000, 1e6, {task = 1, job = 1})
  for w = 1, 2 do
    local t, step = 2000, 1e6 / chunks
    for i = 1, chunks do
      ev[#ev + 1] = slice(w, "pool.chunk", ("pool.map chunk %d"):format(2 * i + w - 2), t, step * 0.8,
                          {task = w + 1, first = i, last = i})
      ev[#ev + 1] = slice(w, "wait.lock", "mutex", t + step * 0.8, step * 0.2, {task = w + 1, lock = 7})
      t = t + step
    end
  end
  return ev
end

-- Pixels of the PNG that are neither white nor grey, per band of rows
-- y0..y1 (python3's zlib reads the PNG: the PNG rsvg-convert writes is
-- 8-bit RGBA, non-interlaced).
local PNG_BANDS = [[
import sys, zlib, struct
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n'
pos, idat = 8, b''
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b'IHDR':
        w, h, depth, ctype = struct.unpack('>IIBB', body[:10])
    elif kind == b'IDAT':
        idat += body
    pos += 12 + n
assert depth == 8 and ctype in (2, 6)
bpp = 4 if ctype == 6 else 3
raw = zlib.decompress(idat)
stride = w * bpp
rows, prev, i = [], bytearray(stride), 0
for y in range(h):
    f = raw[i]; line = bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line); prev = line
def coloured(y0, y1):
    n = 0
    for y in range(max(0, y0), min(h, y1)):
        line = rows[y]
        for x in range(0, stride, bpp):
            r, g, b = line[x], line[x + 1], line[x + 2]
            if max(r, g, b) - min(r, g, b) > 40: n += 1
    return n
print(w, h, coloured(0, h), *[coloured(int(a), int(b)) for a, b in zip(sys.argv[2::2], sys.argv[3::2])])
]]

-- png_bands(svgfile, {y0, y1, ...}) -> width, height, coloured pixels in
-- all, then per band; nil when the tools are missing.
local function png_bands(svgfile, bands)
  if not (have_rsvg and have_python) then return nil end
  local png = svgfile .. ".png"
  assert.equal(0, (run("rsvg-convert", {svgfile, "-o", png})))
  local status, line = run("python3", {"-c", PNG_BANDS, png, unpack(bands)})
  assert.equal(0, status, line)
  local out = {}
  for n in line:gmatch("%d+") do out[#out + 1] = tonumber(n) end
  return out
end

describe("parx.timeline", function()
teardown(function() fs.remove(tmp, {recursive = true}) end)

describe("write", function()
  it("draws one row per VM, named by thread_name, with each worker's chunks on its own row", function()
    local file = tmp .. "/pool.svg"
    assert.is_true(timeline.write(file, pool_events(8)))
    local svg = assert(slurp(file))
    assert.truthy(svg:find("^<svg xmlns=\"http://www.w3.org/2000/svg\""))
    local r, order = rows(svg)
    assert.same({"main", "worker 1", "worker 2"}, order)
    for _, w in ipairs({"worker 1", "worker 2"}) do
      assert.equal(8, r[w].fills[COLOR["pool.chunk"]], w)
      assert.equal(8, r[w].fills[COLOR["wait.lock"]], w)
    end
    assert.equal(1, r.main.fills[COLOR["run"]])
    assert.equal(1, r.main.fills[COLOR["wait.task"]])
  end)

  it("puts a wait recorded on its task's own track (args.vm) on the row of its VM; an idle VM has a row", function()
    local ev = {meta(0, "main"), meta(1, "worker 1"), meta(2, "worker 2"), meta(1000001, "task 1")}
    ev[#ev + 1] = slice(0, "run", "task 1", 0, 100, {task = 1, vm = 0})
    ev[#ev + 1] = slice(1000001, "wait.chan", "chan recv", 100, 5000, {task = 1, vm = 0, chan = 2})
    ev[#ev + 1] = slice(1000002, "wait.sleep", "sleep", 0, 5000, {task = 2, vm = 1})
    local r, order = rows(timeline.render(ev))
    assert.same({"main", "worker 1", "worker 2"}, order)
    assert.equal(1, r.main.fills[COLOR["wait.chan"]])
    assert.equal(1, r["worker 1"].fills[COLOR["wait.sleep"]])
    assert.equal(0, r["worker 2"].rects)
  end)

  it("colours each state: running, channel, lock, IO, GPU, MPI, sleep, task", function()
    local cats = {"run", "wait.chan", "wait.lock", "wait.io", "wait.gpu", "wait.mpi", "wait.sleep", "wait.task"}
    local ev = {meta(0, "main")}
    for i, cat in ipairs(cats) do ev[#ev + 1] = slice(0, cat, cat .. " slice", i * 1000, 900, {task = 1}) end
    local svg = timeline.render(ev)
    local seen = {}
    for _, cat in ipairs(cats) do
      assert.truthy(COLOR[cat], cat)
      assert.is_nil(seen[COLOR[cat]], "two states share a colour")
      seen[COLOR[cat]] = true
      assert.equal(1, rows(svg).main.fills[COLOR[cat]], cat)
    end
    -- The legend names every state present and idle.
    for _, label in ipairs({"running", "parked on a channel", "parked on a lock", "parked on IO",
                            "waiting on the GPU", "waiting on MPI", "sleeping", "waiting on a task", "idle"}) do
      assert.truthy(svg:find(">" .. label .. "</text>", 1, true), label)
    end
  end)

  it("puts the name, what was waited on and the duration in each bar's hover title", function()
    local svg = timeline.render({meta(0, "main"),
      slice(0, "run", "download@fetch.lua:12", 0, 12500, {task = 3}),
      slice(0, "wait.chan", "chan recv", 12500, 250000, {task = 3, chan = 5})})
    assert.truthy(svg:find("<title>download@fetch.lua:12 — 12.5 ms</title>", 1, true), svg)
    assert.truthy(svg:find("<title>chan recv (chan=5) — 250 ms</title>", 1, true), svg)
  end)

  it("has an axis in seconds from the first event", function()
    local svg = timeline.render(pool_events(4))
    assert.truthy(svg:find(">seconds</text>", 1, true))
    for _, tick in ipairs({">0.0<", ">0.2<", ">0.4<", ">1.0<"}) do
      assert.truthy(svg:find(tick, 1, true), tick)
    end
  end)

  it("draws one row per task with by = \"task\" (args.task), in order of start", function()
    local ev = {meta(0, "main")}
    for i = 1, 4 do
      local t0 = (5 - i) * 1000
      ev[#ev + 1] = slice(0, "wait.io", "GET /file/" .. i, t0, 2000, {task = 10 + i})
    end
    ev[#ev + 1] = slice(0, "run", "no task here", 0, 100)
    local r, order = rows(timeline.render(ev, {by = "task"}))
    assert.same({"task 14 GET /file/4", "task 13 GET /file/3", "task 12 GET /file/2", "task 11 GET /file/1"}, order)
    for _, label in ipairs(order) do assert.equal(1, r[label].fills[COLOR["wait.io"]], label) end
  end)

  it("draws a slice nested in another on top of it (a wait inside a run shows)", function()
    local svg = timeline.render({meta(0, "main"),
      slice(0, "run", "outer", 0, 1e6, {task = 1}),
      slice(0, "wait.gpu", "inner", 4e5, 2e5, {task = 1})})
    local outer = svg:find("outer — ", 1, true)
    local inner = svg:find("inner — ", 1, true)
    assert.truthy(outer and inner)
    assert.truthy(inner > outer, "the nested wait is drawn after (over) its run slice")
  end)

  it("merges 100,000 sub-pixel slices into at most a few bars per pixel column", function()
    local ev = pool_events(25000) -- 100,000 slices on the two workers
    local t = os.clock()
    local file = tmp .. "/big.svg"
    assert.is_true(timeline.write(file, ev))
    assert.truthy(os.clock() - t < 30, "ends within 30 s")
    local svg = slurp(file)
    local r = rows(svg)
    for _, w in ipairs({"worker 1", "worker 2"}) do
      -- both states still show, each as at most one bar per column
      assert.truthy(r[w].fills[COLOR["pool.chunk"]] >= 1, w)
      assert.truthy(r[w].fills[COLOR["wait.lock"]] >= 1, w)
      assert.truthy(r[w].rects <= 2 * 1200, w)
      assert.truthy(r[w].titles[1]:find("slices", 1, true), r[w].titles[1])
    end
    assert.truthy(#svg < 1e6, "the file stays small: " .. #svg)
  end)

  it("escapes names so that the SVG stays well-formed", function()
    local file = tmp .. "/esc.svg"
    assert.is_true(timeline.write(file, {meta(0, 'a <b> & "c"'),
      slice(0, "run", "f<x>&'y'", 0, 10, {task = 1, path = "/tmp/<&>"})}))
    local svg = slurp(file)
    assert.truthy(svg:find("a &lt;b&gt; &amp; &quot;c&quot;", 1, true))
    assert.is_nil(svg:find("f<x>", 1, true))
    if have_rsvg then assert.equal(0, (run("rsvg-convert", {file, "-o", file .. ".png"}))) end
  end)

  it("draws a mark as a line across the chart and an empty trace as an empty chart", function()
    local ev = pool_events(2)
    ev[#ev + 1] = {ph = "i", cat = "mark", name = "checkpoint", ts = 5e5, pid = 1, tid = 0}
    assert.truthy(timeline.render(ev):find("<title>checkpoint at 500 ms</title>", 1, true))
    local svg = timeline.render({})
    assert.truthy(svg:find("no slices", 1, true))
    assert.truthy(svg:find("</svg>", 1, true))
  end)

  it("returns nil and a message for a path it cannot write or bad arguments", function()
    local ok, err = timeline.write(tmp .. "/no/such/dir/x.svg", pool_events(1))
    assert.is_nil(ok)
    assert.truthy(err:find("cannot write timeline", 1, true), err)
    ok, err = timeline.write(tmp .. "/x.svg", pool_events(1), {by = "thread"})
    assert.is_nil(ok)
    assert.truthy(err:find("opts.by", 1, true), err)
    assert.is_nil((timeline.write(tmp .. "/x.svg", "events")))
  end)

  it("renders to a PNG that is not blank, with bars in both worker rows", function()
    if not tools_here() then return end
    local file = tmp .. "/png.svg"
    assert.is_true(timeline.write(file, pool_events(8)))
    local r = rows(slurp(file))
    local y1, y2 = r["worker 1"].y, r["worker 2"].y
    local px = png_bands(file, {y1 + 2, y1 + 16, y2 + 2, y2 + 16})
    assert.equal(1200, px[1])
    assert.truthy(px[3] > 1000, "coloured pixels: " .. tostring(px[3]))
    assert.truthy(px[4] > 5000, "worker 1's row: " .. tostring(px[4]))
    assert.truthy(px[5] > 5000, "worker 2's row: " .. tostring(px[5]))
  end)
end)

describe("scripts/examples/download.lua --svg", function()
  it("draws the seeds' two charts: serial bars one after another, two threads two at a time", function()
    if not tools_here() then return end
    local prefix = tmp .. "/dl"
    local _, out = run(PARX, {ROOT .. "scripts/examples/download.lua", "4", "0.2", "--svg", prefix})
    assert.truthy(out:find("wrote " .. prefix .. "-serial.svg", 1, true), out)
    local bars = {}
    for _, kind in ipairs({"serial", "threads"}) do
      local svg = assert(slurp(prefix .. "-" .. kind .. ".svg"), kind)
      local r, order = rows(svg)
      assert.equal(4, #order, kind)
      bars[kind] = {}
      for i, label in ipairs(order) do
        assert.truthy(label:find("GET /file/", 1, true), label)
        assert.equal(1, r[label].rects, label)
        local x, w = svg:match('data%-row="' .. label:gsub("%p", "%%%0")
                               .. '">.-<rect.-<rect x="([%d.]+)" y="[%d.]+" width="([%d.]+)"')
        bars[kind][i] = {tonumber(x), tonumber(x) + tonumber(w)}
      end
      local px = png_bands(prefix .. "-" .. kind .. ".svg", {})
      assert.truthy(px[3] > 1000, kind .. ": coloured pixels " .. tostring(px[3]))
    end
    -- serial: each download starts after the one before it ended; two
    -- threads: the first two overlap, and never more than two at once.
    local s, t = bars.serial, bars.threads
    for i = 2, 4 do assert.truthy(s[i][1] >= s[i - 1][2] - 2, "serial " .. i) end
    assert.truthy(t[2][1] < t[1][2], "the first two downloads overlap")
    for i = 3, 4 do
      local running = 0
      for j = 1, i - 1 do
        if t[j][2] > t[i][1] + 2 then running = running + 1 end
      end
      assert.truthy(running <= 1, "download " .. i .. " started while two ran")
    end
  end)
end)
end)

-- End to end: parx --timeline (the flag is parx.trace's: these specs wait,
-- pending, until a parx that has it is built).
describe("parx --timeline", function()
  local dir = fs.mkdtemp("/tmp/parx-timeline-cli-")
  teardown(function() fs.remove(dir, {recursive = true}) end)

  local function has_flag()
    local probe = dir .. "/probe.svg"
    local status = run(PARX, {"--timeline", probe, "-e", ""})
    if status == 0 and fs.readfile(probe) then return true end
    pending("this parx has no --timeline yet (parx.trace)")
    return false
  end

  -- A pool.map of 16 CPU-bound items over two workers.
  local POOL_MAP = [[
    local list = {} for i = 1, 16 do list[i] = i end
    local r = parx.pool.map(function(x)
      local s = 0
      for i = 1, 2e6 do s = s + i % x end
      return s
    end, list)
    print(#r)
  ]]

  it("draws a pool.map over --workers 2 with both worker rows busy, as a PNG that is not blank", function()
    if not (has_flag() and tools_here()) then return end
    local script, svgfile = dir .. "/map.lua", dir .. "/map.svg"
    fs.writefile(script, POOL_MAP)
    local status, out = run(PARX, {"--workers", "2", "--timeline", svgfile, script})
    assert.equal(0, status, out)
    assert.truthy(out:find("16", 1, true), out)
    local r, order = rows(assert(slurp(svgfile)))
    assert.truthy(r["worker 1"] and r["worker 2"], table.concat(order, ", "))
    for _, w in ipairs({"worker 1", "worker 2"}) do
      local chunks = r[w].fills[COLOR["pool.chunk"]] or 0
      assert.truthy(chunks >= 1, w .. " ran no chunk")
    end
    local y1, y2 = r["worker 1"].y, r["worker 2"].y
    local px = png_bands(svgfile, {y1 + 2, y1 + 16, y2 + 2, y2 + 16})
    assert.truthy(px[3] > 1000, "coloured pixels: " .. tostring(px[3]))
    assert.truthy(px[4] > 500, "worker 1's row: " .. tostring(px[4]))
    assert.truthy(px[5] > 500, "worker 2's row: " .. tostring(px[5]))
  end)

  it("draws a row for each VM of a parx.pool.new pool, after the workers', with the chunks it ran", function()
    if not has_flag() then return end
    local script, svgfile = dir .. "/poolnew.lua", dir .. "/poolnew.svg"
    local code = "local P = parx.pool.new{workers = 2}\n" .. POOL_MAP:gsub("parx%.pool%.map%(", "P:map(")
    fs.writefile(script, code)
    local status, out = run(PARX, {"--workers", "2", "--timeline", svgfile, script})
    assert.equal(0, status, out)
    assert.truthy(out:find("16", 1, true), out)
    local r, order = rows(assert(slurp(svgfile)))
    assert.same({"main", "pool worker 3", "pool worker 4"}, order)
    for _, w in ipairs({"pool worker 3", "pool worker 4"}) do
      assert.truthy((r[w].fills[COLOR["pool.chunk"]] or 0) >= 1, w .. " ran no chunk")
    end
  end)

  it("draws the download example: the main VM parked on IO, and a row per task with --timeline-by task", function()
    if not has_flag() then return end
    local example = ROOT .. "scripts/examples/download.lua"
    local byvm, bytask = dir .. "/dl-vm.svg", dir .. "/dl-task.svg"
    local status, out = run(PARX, {"--workers", "2", "--timeline", byvm, example, "4", "0.05"})
    assert.equal(0, status, out)
    local r = rows(assert(slurp(byvm)))
    assert.truthy(r.main, "no main row")
    assert.truthy((r.main.fills[COLOR["wait.io"]] or 0) >= 1, "main never parked on IO")
    status, out = run(PARX, {"--workers", "2", "--timeline", bytask, "--timeline-by", "task", example, "4", "0.05"})
    assert.equal(0, status, out)
    local svg = assert(slurp(bytask))
    local _, order = rows(svg)
    local downloads = 0
    for _, label in ipairs(order) do
      if label:find("download", 1, true) then downloads = downloads + 1 end
    end
    assert.truthy(#order >= 5, table.concat(order, ", "))
    assert.truthy(downloads >= 4, "a row per download task: " .. table.concat(order, ", "))
    assert.truthy(svg:find("one row per task", 1, true))
  end)
end)
