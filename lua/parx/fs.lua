-- parx.fs: files and directories on libuv, from any task in any VM.
--
-- Every function parks the calling task while libuv's thread pool does the
-- work; other tasks of the VM keep running.  A failed operation returns
-- nil, "ENOENT: no such file or directory: /x", "ENOENT"; wrong argument
-- types raise.
--
--   fs.readfile(path)                     -> contents
--       nil, "EFBIG: ...", "EFBIG" for a file too big for one Lua string
--       (about 2 GiB).  A FIFO, socket or character device is read on the
--       loop, not on libuv's thread pool, so readers waiting for a writer
--       hold no pool thread; cancelling one closes its descriptor at once.
--   fs.writefile(path, data [, opts])     -> true
--       opts.append = true  appends instead of replacing
--       opts.atomic = true  writes path.tmp-<pid>-<n>, fsyncs it and renames
--                           it over path: readers see old or new, never half
--       opts.mode = 420     permissions of a created file (default 0666 & ~umask)
--   fs.open(path [, flags [, mode]])      -> file
--       flags: "r" (default), "w", "a", "r+", "w+", "a+", add "x" to fail if
--       the file exists; or integer O_* flags
--       file:read(n [, offset])   -> up to n bytes, nil at end of file
--       file:write(data [, offset]) -> bytes written
--       file:stat(), file:sync(), file:truncate([size]), file:close(),
--       file:fileno().  Without offset, read and write use the file position.
--       A file that is not closed is closed when it is garbage collected.
--   fs.stat(path), fs.lstat(path)         -> {size, mtime, atime, ctime,
--       birthtime, mode (permission bits), type = "file" | "directory" |
--       "link" | "fifo" | "socket" | "char" | "block", uid, gid, nlink, ...}
--   fs.mkdir(path [, opts | mode])        -> true; opts.parents creates the
--       missing parents and accepts an existing directory; opts.mode, e.g.
--       493 (= 0755); default 0777 & ~umask
--   fs.readdir(path)                      -> sorted list of names
--   fs.unlink(path), fs.rmdir(path), fs.rename(from, to),
--   fs.copyfile(from, to), fs.realpath(path), fs.exists(path)
--   fs.mkdtemp(prefix)                    -> path of a new private directory
--   fs.remove(path [, {recursive = true}]) removes a file or a directory
--
-- Streaming (large files never sit in memory whole):
--   for chunk in fs.chunks(path [, size = 65536]) do ... end
--   for line in fs.lines(path) do ... end      -- lines without "\n"
-- Like io.lines, these iterators raise if the file cannot be opened or
-- read; the file closes when the loop ends (or at garbage collection when
-- the loop is left early).
local options = require "parx.opts" -- option checks, misuse raised at the user's line
local raise = options.error
local C = require "parx.c.fs"

local fs = {}
for k, v in pairs(C) do fs[k] = v end

local type, error = type, error

local WRITEFILE_OPTS = options.known{"append", "atomic", "mode"}
local MKDIR_OPTS = options.known{"mode", "parents"}
local REMOVE_OPTS = options.known{"recursive"}

function fs.writefile(path, data, opts)
  if opts ~= nil and type(opts) ~= "table" then
    raise("bad argument #3 to 'writefile' (table expected, got " .. type(opts) .. ")")
  end
  options.check("fs.writefile", opts, WRITEFILE_OPTS)
  if opts == nil then return C.writefile(path, data) end
  return C.writefile(path, data, opts.append, opts.atomic, opts.mode)
end

local function is_dir(path)
  local st = C.stat(path)
  return st ~= nil and st.type == "directory"
end

local function mkdir_parents(path, mode)
  local ok, err, code = C.mkdir(path, mode)
  if ok then return true end
  if code == "EEXIST" then
    if is_dir(path) then return true end
    return nil, err, code
  end
  if code ~= "ENOENT" then return nil, err, code end
  local parent = path:match("^(.*[^/])/+[^/]+/*$")
  if parent == nil then return nil, err, code end
  local pok, perr, pcode = mkdir_parents(parent, mode)
  if not pok then return nil, perr, pcode end
  ok, err, code = C.mkdir(path, mode)
  if ok or (code == "EEXIST" and is_dir(path)) then return true end
  return nil, err, code
end

function fs.mkdir(path, opts)
  if type(path) ~= "string" then
    raise("bad argument #1 to 'mkdir' (string expected, got " .. type(path) .. ")")
  end
  local mode, parents
  if type(opts) == "number" then
    mode = opts
  elseif type(opts) == "table" then
    options.check("fs.mkdir", opts, MKDIR_OPTS)
    mode, parents = opts.mode, opts.parents
  elseif opts ~= nil then
    raise("bad argument #2 to 'mkdir' (table or number expected, got " .. type(opts) .. ")")
  end
  if parents then return mkdir_parents(path, mode) end
  return C.mkdir(path, mode)
end

function fs.exists(path)
  if type(path) ~= "string" then
    raise("bad argument #1 to 'exists' (string expected, got " .. type(path) .. ")")
  end
  return C.stat(path) ~= nil
end

function fs.mkdtemp(prefix)
  prefix = prefix or "/tmp/parx-"
  if type(prefix) ~= "string" then
    raise("bad argument #1 to 'mkdtemp' (string expected, got " .. type(prefix) .. ")")
  end
  return C.mkdtemp(prefix .. "XXXXXX")
end

local function remove_tree(path)
  local st, err, code = C.lstat(path)
  if not st then return nil, err, code end
  if st.type ~= "directory" then return C.unlink(path) end
  local names, rerr, rcode = C.readdir(path)
  if not names then return nil, rerr, rcode end
  for i = 1, #names do
    local ok, e, c = remove_tree(path .. "/" .. names[i])
    if not ok then return nil, e, c end
  end
  return C.rmdir(path)
end

function fs.remove(path, opts)
  if type(path) ~= "string" then
    raise("bad argument #1 to 'remove' (string expected, got " .. type(path) .. ")")
  end
  if opts ~= nil and type(opts) ~= "table" then
    raise("bad argument #2 to 'remove' (table expected, got " .. type(opts) .. ")")
  end
  if opts ~= nil and options.check("fs.remove", opts, REMOVE_OPTS).recursive then return remove_tree(path) end
  local st, err, code = C.lstat(path)
  if not st then return nil, err, code end
  if st.type == "directory" then return C.rmdir(path) end
  return C.unlink(path)
end

-- The iterator of fs.chunks; `name` is the function the caller called, and
-- errors are raised at the caller's line (parx.opts).
local function chunk_iterator(path, size, name)
  if type(path) ~= "string" then
    raise(("bad argument #1 to '%s' (string expected, got %s)"):format(name, type(path)))
  end
  size = size or 65536
  if type(size) ~= "number" or size < 1 then
    raise(("bad argument #2 to '%s' (positive number expected)"):format(name))
  end
  local f, err = C.open(path, "r")
  if not f then raise(err) end
  return function()
    if f == nil then return nil end
    local data, rerr = f:read(size)
    if data == nil then
      f:close()
      f = nil
      if rerr then raise(rerr) end
    end
    return data
  end
end

function fs.chunks(path, size)
  local next_chunk = chunk_iterator(path, size, "chunks")
  return next_chunk
end

function fs.lines(path, size)
  local next_chunk = chunk_iterator(path, size, "lines")
  local buf, pos, eof = "", 1, false
  local find, sub = string.find, string.sub
  return function()
    while true do
      local s = find(buf, "\n", pos, true)
      if s then
        local line = sub(buf, pos, s - 1)
        pos = s + 1
        return line
      end
      if eof then
        if pos <= #buf then
          local line = sub(buf, pos)
          pos = #buf + 1
          return line
        end
        return nil
      end
      local data = next_chunk()
      if data == nil then
        eof = true
      else
        buf = sub(buf, pos) .. data
        pos = 1
      end
    end
  end
end

return fs
