-- checksum.lua: a parallel file checksum tool.
--
--   parx scripts/examples/checksum.lua [FILE | DIR]...
--
-- Prints "adler32  size  path" for every file (the directories' files, not
-- recursively), like `sha256sum` prints its lines, then a summary.  Without
-- arguments it makes a demo directory of 24 files (1..6 MiB), checks them
-- and removes it.
--
-- Each file goes to the runtime's worker pool; the worker reads it with
-- parx.fs in 1 MiB chunks (async IO: the worker VM's loop keeps serving its
-- other tasks while libuv's thread pool reads) and folds every chunk into an
-- Adler-32 (zlib's checksum) computed by a JIT-compiled loop over the FFI
-- bytes of the chunk.  Memory stays at a few chunks per worker, whatever the
-- file sizes.
local fs = parx.fs

-- Adler-32 of a file, streamed.  Runs in a worker VM: it reaches parx.fs
-- and the FFI through require, which the worker resolves by name.
local function adler32_file(path)
  local ffi = require "ffi"
  local a, b = 1, 0
  local size = 0
  for chunk in parx.fs.chunks(path, 1048576) do
    local p = ffi.cast("const uint8_t *", chunk)
    local n = #chunk
    -- a < 2^28 and b < 2^48 within one 1 MiB chunk: exact in doubles, so
    -- the modulo can wait for the end of the chunk.
    for i = 0, n - 1 do
      a = a + p[i]
      b = b + a
    end
    a, b = a % 65521, b % 65521
    size = size + n
  end
  return string.format("%08x", b * 65536 + a), size
end

-- The known value from the Adler-32 article, through the same code path.
local function self_check(dir)
  local p = dir .. "/wikipedia.txt"
  assert(fs.writefile(p, "Wikipedia"))
  assert(adler32_file(p) == "11e60398", "adler32 self-check failed")
  assert(fs.unlink(p))
end

local function make_demo()
  local dir = assert(fs.mkdtemp("/tmp/parx-checksum-"))
  self_check(dir)
  local writers = {}
  for i = 1, 24 do
    writers[i] = parx.async(function()
      -- deterministic contents: a line pattern that varies per file
      local line = string.format("file %02d: %s\n", i, ("parx"):rep(i))
      local mib = 1 + (i - 1) % 6
      local block = line:rep(math.ceil(65536 / #line)):sub(1, 65536)
      assert(fs.writefile(dir .. string.format("/data%02d.bin", i), block:rep(16 * mib)))
    end)
  end
  parx.gather(writers)
  return dir
end

local function collect(args)
  local files = {}
  for _, a in ipairs(args) do
    local st, err = fs.stat(a)
    if not st then
      io.stderr:write("checksum: ", err, "\n")
    elseif st.type == "directory" then
      local names = assert(fs.readdir(a))
      for _, name in ipairs(names) do
        local p = a .. "/" .. name
        local s = fs.stat(p)
        if s and s.type == "file" then files[#files + 1] = p end
      end
    else
      files[#files + 1] = a
    end
  end
  return files
end

local args, demo = {...}, nil
if #args == 0 then
  demo = make_demo()
  args = {demo}
end

local files = collect(args)
local t0 = parx.now()
local results
if parx.pool and parx.pool.map then
  results = parx.pool.map(function(p) return {adler32_file(p)} end, files, {chunksize = 1})
else
  local tasks = {}
  for i, p in ipairs(files) do
    tasks[i] = parx.spawn(function(p) return {adler32_file(p)} end, p)
  end
  results = {}
  for i, t in ipairs(tasks) do results[i] = t:join() end
end
local elapsed = parx.now() - t0

local total = 0
for i, p in ipairs(files) do
  local sum, size = results[i][1], results[i][2]
  total = total + size
  print(string.format("%s  %9d  %s", sum, size, demo and p:gsub("^.*/", "") or p))
end
print(string.format("%d files, %.1f MiB in %.3f s (%.0f MiB/s)", #files, total / 1048576,
  elapsed, total / 1048576 / math.max(elapsed, 1e-9)))

if demo then assert(fs.remove(demo, {recursive = true})) end
