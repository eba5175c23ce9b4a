-- parx.array: native, reference-counted typed arrays shared across VMs.
--
--   local a = parx.array("float64", {2, 3})   -- zero-filled, row-major
--   a:set(2, 3, 1.5); a:get(2, 3)             -- 1-based, N indices ...
--   a:set(6, 1.5);    a:get(6)                -- ... or one flat index
--   a:shape() --> {2, 3}    a:dtype() --> "float64"    #a --> 6
--   local d = a.data  -- double*, 0-based: d[0] .. d[#a - 1], C speed
--   parx.array.from("int32", {{1, 2}, {3, 4}})
--
-- The whole face:
--   parx.array(dtype, shape)      shape: a number or a table of 1..8 dims >= 0
--   parx.array.from(dtype, tbl)   nested tables -> N-D (shape from tbl[1]...)
--   parx.array.live()             live arrays in the process (all VMs)
--   parx.array.is(x)              whether x is an array
--   parx.array.dtypes             the dtype names
--   a:get(i) / a:get(i1, ..., iN)          a:set(i, v) / a:set(i1, ..., iN, v)
--   a:shape() -> new table {d1, ..., dN}   a:ndim()   a:dtype() -> "float64"
--   #a, a:size() -> element count          a:itemsize() -> bytes per element
--   a:fill(v) -> a   a:totable() -> nested tables   a:copy() -> new array
--   tostring(a) -> "parx.array(int32, 2x2) {{1, 2}, {3, 4}}" (long dims cut)
--   integer dtypes only: a:atomic_add(i.., delta) -> new value (wraps),
--   a:atomic_cas(i.., old, new) -> swapped?, a:atomic_get(i..)
--   a.data            0-based pointer of the element type (uint16_t* for
--                     float16/bfloat16), no bounds checks; it keeps the
--                     array alive as long as it lives itself
-- Indices are 1-based: one flat index (row-major order) or exactly ndim
-- indices; anything else (out of range, fractional, wrong count) raises.
--
-- An array is FFI cdata: a pointer to the C struct px_array (see
-- runtime/mod/array.h) with an ffi.metatype.  Each dtype has its own struct
-- type of the same layout, so that `a._data` is already a pointer of the
-- element type and get/set are specialized per dtype without a dispatch.
-- The struct fields are read-only and carry a leading underscore in Lua
-- (`_data`, `_n`, `_dtype`, `_ndim`, `_shape`) because the plain names are
-- methods; the header (`_hdr`: type and reference count) is opaque bytes.
-- They are internal: `a._data` does not keep the array alive, `a.data`
-- does (see "a.data" below).
--
-- Values.  Integer dtypes take numbers that are integers within the dtype's
-- range; anything else raises (no silent wrap-around; `a.data[k] = v`
-- bypasses the checks and converts like C).  int64 and uint64 also take
-- int64_t/uint64_t cdata and `get` returns a Lua number (exact up to 2^53;
-- `a.data[k]` gives the exact 64-bit cdata).  float32, float16 and bfloat16
-- round to nearest even, overflowing to infinity; float16 and bfloat16 are
-- stored as their uint16_t bit patterns.
--
-- Lifetime.  Each cdata holds one reference, dropped by its finalizer
-- (ffi.gc); the memory goes when the last reference in any VM is dropped.
-- `a.data` holds a reference too, so `local d = a.data` may outlive `a`;
-- pointers derived from it (`a.data + k`, ffi.cast) hold none.
--
-- Crossing VMs.  The marshaller asks the cdata hook registered below for the
-- px_shared behind a cdata, and makes the receiving VM's cdata through the
-- constructor registered with it (C side: runtime/mod/array.c).
local ffi = require "ffi"
local C_array = require "parx.c.array"

local floor, huge = math.floor, math.huge
local select, type, tonumber, tostring = select, type, tonumber, tostring
local error, concat, format = error, table.concat, string.format

local MAXDIM = C_array.maxdim

-- The header (the shared-object type and the reference count) is opaque
-- and read-only from Lua: writing the count would free the buffer under
-- its users.  C checks the layout (data_offset, struct_size below).
ffi.cdef [[
typedef struct px_array {
  const uint8_t _hdr[16];
  void *const _data;
  const int64_t _n;
  const int32_t _dtype;
  const int32_t _ndim;
  const int64_t _shape[8];
} px_array;

typedef struct px_array_api {
  px_array *(*array_new)(int dtype, int ndim, const int64_t *shape);
  void (*release)(const void *a);
  void (*fill_bytes)(const void *a, const void *elem);
  long (*live)(void);
  uint16_t (*f64_to_f16)(double d);
  double (*f16_to_f64)(uint16_t h);
  uint16_t (*f64_to_bf16)(double d);
  double (*bf16_to_f64)(uint16_t h);
  const float *(*half_table)(int which);
  int64_t (*atomic_add)(const void *a, int64_t off, int64_t delta);
  int (*atomic_cas)(const void *a, int64_t off, int64_t expected,
                    int64_t desired);
  void (*retain)(const void *a);
  px_array *(*array_new_uninit)(int dtype, int ndim, const int64_t *shape);
} px_array_api;
]]
assert(MAXDIM == 8, "parx.array: PX_ARRAY_MAXDIM changed; update the cdef")
assert(ffi.offsetof("px_array", "_data") == C_array.data_offset
       and ffi.sizeof("px_array") == C_array.struct_size,
       "parx.array: struct px_array changed; update the cdef")

local api = ffi.cast("const px_array_api *", C_array.api)
local array_new, release, fill_bytes = api.array_new, api.release, api.fill_bytes
local retain, array_new_uninit = api.retain, api.array_new_uninit
local f64_to_f16, f64_to_bf16 = api.f64_to_f16, api.f64_to_bf16
local atomic_add, atomic_cas = api.atomic_add, api.atomic_cas

-- In px_dtype order (array.h).  kind: "int" (range-checked integers),
-- "int64" (also 64-bit cdata, read back as numbers), "float", "half".
local DTYPES = {
  {"int8", "int8_t", "int", 8, true},
  {"int16", "int16_t", "int", 16, true},
  {"int32", "int32_t", "int", 32, true},
  {"int64", "int64_t", "int64", 64, true},
  {"uint8", "uint8_t", "int", 8, false},
  {"uint16", "uint16_t", "int", 16, false},
  {"uint32", "uint32_t", "int", 32, false},
  {"uint64", "uint64_t", "int64", 64, false},
  {"float16", "uint16_t", "half"},
  {"bfloat16", "uint16_t", "half"},
  {"float32", "float", "float"},
  {"float64", "double", "float"},
}

local code_of = {}     -- dtype name -> px_dtype code
local ptr_of = {}      -- px_dtype code -> ctype of the typed array pointer
local itemsize_of = {} -- px_dtype code -> bytes per element
local ptr_list = {}    -- the typed array pointer ctypes, most common first
local names = {}
for i, d in ipairs(DTYPES) do
  code_of[d[1]] = i - 1
  names[i] = d[1]
end

local function fail(level, fmt, ...)
  error("parx.array: " .. format(fmt, ...), level + 1)
end

local function numstr(v)
  if type(v) == "number" and v == floor(v) and v > -1e15 and v < 1e15 then
    return format("%d", v)
  end
  return tostring(v)
end

-- Whether i is a plain 1-based index into a's elements: what the fast
-- paths of get and set take (a call the JIT inlines); anything else goes
-- the checked way.
local function plain_index(a, i)
  return type(i) == "number" and i >= 1 and i <= tonumber(a._n) and floor(i) == i
end

-- 0-based offset of a flat 1-based index, or raise.
local function flat_offset(a, i, level)
  local n = tonumber(a._n)
  if type(i) == "cdata" then i = tonumber(i) end
  if type(i) ~= "number" then
    fail(level + 1, "index must be a number, got %s", type(i))
  end
  if not (i >= 1 and i <= n) then
    fail(level + 1, "index %s out of range (1..%d)", numstr(i), n)
  end
  if floor(i) ~= i then fail(level + 1, "index %s is not an integer", numstr(i)) end
  return i - 1
end

-- 0-based offset of N 1-based indices (row-major), or raise.
local function nd_offset(a, level, nidx, ...)
  local ndim = a._ndim
  if nidx ~= ndim then
    if nidx == 0 then fail(level + 1, "missing index") end
    fail(level + 1, "expected 1 or %d indices for a %d-D array, got %d",
         ndim, ndim, nidx)
  end
  local off = 0
  for d = 1, ndim do
    local i = select(d, ...)
    local dim = tonumber(a._shape[d - 1])
    if type(i) == "cdata" then i = tonumber(i) end
    if type(i) ~= "number" then
      fail(level + 1, "index #%d must be a number, got %s", d, type(i))
    end
    if not (i >= 1 and i <= dim) or floor(i) ~= i then
      fail(level + 1, "index #%d is %s, out of range (1..%d)", d, numstr(i), dim)
    end
    off = off * dim + (i - 1)
  end
  return off
end

local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")

-- The per-dtype part: value checks and conversions, then the methods.
local function value_checker(name, kind, bits, signed)
  if kind == "float" or kind == "half" then
    return function(v, level)
      if type(v) == "number" then return v end
      if type(v) == "cdata" and (ffi.istype(int64_t, v) or ffi.istype(uint64_t, v)) then
        return tonumber(v)
      end
      fail(level + 1, "value must be a number, got %s", type(v))
    end
  end
  local lo = signed and -2 ^ (bits - 1) or 0
  local hi = signed and 2 ^ (bits - 1) or 2 ^ bits -- exclusive
  local hi_incl = kind == "int" and hi - 1 or nil
  return function(v, level)
    if type(v) == "cdata" then
      if ffi.istype(int64_t, v) or ffi.istype(uint64_t, v) then
        if kind == "int64" then
          -- Exact 64-bit values: compare as 64-bit integers.
          if signed and ffi.istype(uint64_t, v) and v > 0x7fffffffffffffffULL then
            fail(level + 1, "value %s out of range for %s", tostring(v), name)
          elseif not signed and ffi.istype(int64_t, v) and v < 0 then
            fail(level + 1, "value %s out of range for %s", tostring(v), name)
          end
          return v
        end
        v = tonumber(v)
      end
    end
    if type(v) ~= "number" then
      fail(level + 1, "value must be a number, got %s", type(v))
    end
    if not (v >= lo and v < hi) then
      fail(level + 1, "value %s out of range for %s (%s..%s)", numstr(v), name,
           numstr(lo), hi_incl and numstr(hi_incl) or (signed and "2^63-1" or "2^64-1"))
    end
    if floor(v) ~= v then
      fail(level + 1, "value %s is not an integer (%s array)", numstr(v), name)
    end
    return v
  end
end

local function make_type(code, name, elem, kind, bits, signed)
  ffi.cdef(format([[
typedef struct px_array_%s {
  const uint8_t _hdr[16];
  %s *const _data;
  const int64_t _n;
  const int32_t _dtype;
  const int32_t _ndim;
  const int64_t _shape[8];
} px_array_%s;]], name, elem, name))
  local ptr_t = ffi.typeof("px_array_" .. name .. " *")
  ptr_of[code] = ptr_t
  itemsize_of[code] = ffi.sizeof(elem)

  -- decode: stored element -> Lua number; encode: checked number -> element.
  local decode, encode
  if kind == "int64" then
    decode = tonumber
  elseif kind == "half" then
    -- Decoding is a load from a shared 65536-entry table (0.8 ns against
    -- 3.3 ns for a call); encoding rounds in C (3.7 ns; a pure-Lua version
    -- measured far slower).
    local tab = api.half_table(name == "float16" and 0 or 1)
    decode = function(h) return tab[h] end
    encode = name == "float16" and f64_to_f16 or f64_to_bf16
  end
  local check = value_checker(name, kind, bits, signed)
  local is_int = kind == "int" or kind == "int64"
  local lo = is_int and (signed and -2 ^ (bits - 1) or 0) or -huge
  local hi = is_int and (signed and 2 ^ (bits - 1) or 2 ^ bits) or huge -- exclusive
  local scratch = ffi.new(elem .. "[1]")

  local m = {}

  -- get(i) or get(i1, ..., iN).  The one-index path is what loops hit:
  -- a few compares, then a plain load.
  local get
  if decode then
    get = function(a, i, ...)
      if select("#", ...) == 0 and plain_index(a, i) then
        return decode(a._data[i - 1])
      end
      if select("#", ...) == 0 then return decode(a._data[flat_offset(a, i, 2)]) end
      return decode(a._data[nd_offset(a, 2, select("#", ...) + 1, i, ...)])
    end
  else
    get = function(a, i, ...)
      if select("#", ...) == 0 and plain_index(a, i) then
        return a._data[i - 1]
      end
      if select("#", ...) == 0 then return a._data[flat_offset(a, i, 2)] end
      return a._data[nd_offset(a, 2, select("#", ...) + 1, i, ...)]
    end
  end
  m.get = get

  -- set(i, v) or set(i1, ..., iN, v).
  local function set_slow(a, ...)
    local nargs = select("#", ...)
    if nargs < 2 then fail(2, "set expects an index and a value") end
    local v = check((select(nargs, ...)), 2)
    local off
    if nargs == 2 then
      off = flat_offset(a, (...), 2)
    else
      off = nd_offset(a, 2, nargs - 1, ...)
    end
    if encode then v = encode(v) end
    a._data[off] = v
  end
  if encode then
    m.set = function(a, i, v, ...)
      if select("#", ...) == 0 and type(v) == "number" and plain_index(a, i) then
        a._data[i - 1] = encode(v)
        return
      end
      return set_slow(a, i, v, ...)
    end
  elseif is_int then
    m.set = function(a, i, v, ...)
      if select("#", ...) == 0 and type(v) == "number" and plain_index(a, i)
         and v >= lo and v < hi and floor(v) == v then
        a._data[i - 1] = v
        return
      end
      return set_slow(a, i, v, ...)
    end
  else
    m.set = function(a, i, v, ...)
      if select("#", ...) == 0 and type(v) == "number" and plain_index(a, i) then
        a._data[i - 1] = v
        return
      end
      return set_slow(a, i, v, ...)
    end
  end

  -- Atomics on integer elements, safe against every other VM: the way to
  -- count into a shared array (histograms).  atomic_add(i.., delta) returns
  -- the new value and wraps around on overflow (like Go's sync/atomic);
  -- atomic_cas(i.., old, new) returns whether it swapped.
  if is_int then
    local to_number = tonumber
    if name == "uint64" then
      to_number = function(x) return tonumber(ffi.cast(uint64_t, x)) end
    end
    local function offset_of(a, nidx, level, ...)
      local off -- (no tail calls: the error levels count this frame)
      if nidx == 1 then
        off = flat_offset(a, (...), level + 1)
      else
        off = nd_offset(a, level + 1, nidx, ...)
      end
      return off
    end
    m.atomic_add = function(a, ...)
      local nargs = select("#", ...)
      if nargs < 2 then fail(2, "atomic_add expects an index and a delta") end
      local d = select(nargs, ...)
      if type(d) == "cdata" then d = tonumber(d) end
      if type(d) ~= "number" or floor(d) ~= d or not (d > -2 ^ 63 and d < 2 ^ 63) then
        fail(2, "delta must be an integer number, got %s", numstr(d))
      end
      local off = offset_of(a, nargs - 1, 2, ...)
      return to_number(atomic_add(a, off, d))
    end
    m.atomic_cas = function(a, ...)
      local nargs = select("#", ...)
      if nargs < 3 then fail(2, "atomic_cas expects an index, the old and the new value") end
      local old = check(select(nargs - 1, ...), 2)
      local new = check(select(nargs, ...), 2)
      local off = offset_of(a, nargs - 2, 2, ...)
      return atomic_cas(a, off, ffi.cast(int64_t, old), ffi.cast(int64_t, new)) == 1
    end
    m.atomic_get = function(a, ...)
      local off = offset_of(a, select("#", ...), 2, ...)
      return to_number(atomic_add(a, off, 0))
    end
  end

  function m.fill(a, v)
    v = check(v, 2)
    if encode then v = encode(v) end
    scratch[0] = v
    fill_bytes(a, scratch)
    return a
  end

  -- Store one checked value at a 0-based offset (from, copies).
  m._store = function(a, off, v, level)
    v = check(v, level + 1)
    if encode then v = encode(v) end
    a._data[off] = v
  end
  m._decode = decode or function(x) return x end
  return ptr_t, m
end

local methods_of = {}  -- px_dtype code -> method table
local own              -- (defined with the constructors below)

local common = {}

function common.dtype(a) return names[a._dtype + 1] end
function common.ndim(a) return a._ndim end
function common.size(a) return tonumber(a._n) end
function common.itemsize(a) return itemsize_of[a._dtype] end

-- The shape as a new table of dimensions, e.g. {2, 3}: `local rows, cols =
-- unpack(a:shape())`; #a:shape() is the number of dimensions.
function common.shape(a)
  local t = {}
  for d = 1, a._ndim do t[d] = tonumber(a._shape[d - 1]) end
  return t
end

-- Nested Lua tables (a plain list for 1-D arrays).
function common.totable(a)
  local ndim, data = a._ndim, a._data
  local decode = methods_of[a._dtype]._decode
  local dims = common.shape(a)
  local off = 0
  local function build(d)
    local t, dim = {}, dims[d]
    if d == ndim then
      for k = 1, dim do t[k] = decode(data[off + k - 1]) end
      off = off + dim
    else
      for k = 1, dim do t[k] = build(d + 1) end
    end
    return t
  end
  return build(1)
end

-- A new array with the same dtype, shape and values.
function common.copy(a)
  local shape = ffi.new("int64_t[8]")
  for d = 0, a._ndim - 1 do shape[d] = a._shape[d] end
  local p = array_new_uninit(a._dtype, a._ndim, shape) -- written whole below
  if p == nil then fail(2, "out of memory copying %s", tostring(a)) end
  local b = own(ffi.cast(ptr_of[a._dtype], p))
  ffi.copy(b._data, a._data, tonumber(a._n) * itemsize_of[a._dtype])
  return b
end

local function fmtval(v)
  if v == floor(v) and v > -1e15 and v < 1e15 then return format("%d", v) end
  return format("%.8g", v)
end

-- parx.array(float64, 2x3) {{1, 2, 3}, {4, 5, 6}}; long dimensions show
-- their first and last three entries around "...".  When that does not
-- fit in 80 columns, an array of 2 or more dimensions prints as numpy
-- does: the header, then one row per line, the values right-aligned to
-- one width, a blank line between the blocks of higher dimensions.
local function tostr(a)
  local dims = common.shape(a)
  local ndim, data = a._ndim, a._data
  local decode = methods_of[a._dtype]._decode
  local strides = {}
  local s = 1
  for d = ndim, 1, -1 do strides[d] = s; s = s * dims[d] end
  local summarize = tonumber(a._n) > 100
  local width = 0
  -- The shown entries as a tree of lists (leaves: strings, "..." marks a cut).
  local function collect(d, off)
    local parts, dim = {}, dims[d]
    local k = 1
    while k <= dim do
      if summarize and dim > 6 and k == 4 then
        parts[#parts + 1] = "..."
        k = dim - 2
      end
      local o = off + (k - 1) * strides[d]
      local v = d == ndim and fmtval(decode(data[o])) or collect(d + 1, o)
      if type(v) == "string" and #v > width then width = #v end
      parts[#parts + 1] = v
      k = k + 1
    end
    return parts
  end
  local tree = collect(1, 0)
  local function flat(parts)
    local out = {}
    for i, p in ipairs(parts) do out[i] = type(p) == "table" and flat(p) or p end
    return "{" .. concat(out, ", ") .. "}"
  end
  local head = format("parx.array(%s, %s)", names[a._dtype + 1], concat(dims, "x"))
  local one = head .. " " .. flat(tree)
  if #one <= 80 or ndim < 2 then return one end
  local pad = "%" .. width .. "s"
  local function rows(parts, d)
    local out = {}
    for i, p in ipairs(parts) do
      if type(p) == "table" then
        out[i] = rows(p, d + 1)
      elseif d == ndim then
        out[i] = format(pad, p)
      else
        out[i] = "..." -- a cut between rows or blocks
      end
    end
    if d == ndim then return "{" .. concat(out, ", ") .. "}" end
    local sep = ",\n" .. ("\n"):rep(ndim - d - 1) .. (" "):rep(d)
    return "{" .. concat(out, sep) .. "}"
  end
  return head .. "\n" .. rows(tree, 1)
end

-- ---- a.data -------------------------------------------------------------
--
-- The struct's own pointer field is `_data`; `a.data` is a separate
-- pointer cdata of the element type that holds a reference of its own to
-- the array (dropped by its finalizer), so it stays valid after `a` is
-- collected: `local d = parx.array("float64", n).data` is safe.  One such
-- pointer per array cdata, made on first use and cached: `a.data[i]` in a
-- loop costs a table lookup, and `local d = a.data` then d[i] is exactly
-- the C-speed loop it always was.  The cache has weak keys and its values
-- do not refer back to `a` (the finalizer holds the C pointer, not the
-- cdata), so neither keeps the other alive.  Pointer arithmetic on it
-- (`a.data + k`) makes plain pointers again, which do not anchor.
local data_cache = setmetatable({}, {__mode = "k"})
local elem_ptr_of = {} -- px_dtype code -> ctype of the element pointer

-- (A function of its own: the closure would make anchored_data end in a
-- UCLO, which the JIT does not compile, and `a.data[i]` loops would run
-- interpreted.)
local function new_anchor(a)
  local owner = ffi.cast("const void *", a)
  retain(owner)
  local d = ffi.gc(ffi.cast(elem_ptr_of[a._dtype], a._data),
                   function() release(owner) end)
  data_cache[a] = d
  return d
end

local function anchored_data(a)
  local d = data_cache[a]
  if d == nil then d = new_anchor(a) end
  return d
end

for i, d in ipairs(DTYPES) do
  local code = i - 1
  local ptr_t, m = make_type(code, d[1], d[2], d[3], d[4], d[5])
  for k, f in pairs(common) do m[k] = f end
  methods_of[code] = m
  elem_ptr_of[code] = ffi.typeof(d[2] .. " *")
  ffi.metatype(ffi.typeof("px_array_" .. d[1]), {
    -- Methods first: a:get(i) costs one table load more than before.
    __index = function(a, k)
      local f = m[k]
      if f ~= nil then return f end
      if k == "data" then return anchored_data(a) end
      -- as the FFI does for a missing field (and a.hdr, now opaque)
      error(format("parx.array has no field or method '%s'", tostring(k)), 2)
    end,
    __len = function(a) return tonumber(a._n) end,
    __tostring = tostr,
  })
end

for _, code in ipairs({11, 10, 3, 2, 9, 8, 7, 6, 5, 4, 1, 0}) do
  ptr_list[#ptr_list + 1] = ptr_of[code]
end

-- ---- construction ------------------------------------------------------

-- Every array cdata this module makes holds one reference (dropped by its
-- finalizer) and is registered here; only these may cross VMs.  A cdata
-- cast to an array type (ffi.cast(ffi.typeof(a), p)) holds no reference
-- and may point to anything, so the marshaller's hook refuses it.
local owned = setmetatable({}, {__mode = "k"})

own = function(p)
  local a = ffi.gc(p, release)
  owned[a] = true
  return a
end

local shape_buf = ffi.new("int64_t[8]")

local function check_dtype(dtype, level)
  local code = code_of[dtype]
  if not code then
    if type(dtype) ~= "string" then
      fail(level + 1, "dtype must be a string, got %s", type(dtype))
    end
    fail(level + 1, "unknown dtype '%s' (expected one of %s)", dtype,
         concat(names, ", "))
  end
  return code
end

-- Validates the shape into shape_buf; returns ndim and the element count.
local function check_shape(shape, level)
  if type(shape) == "number" then shape = {shape} end
  if type(shape) ~= "table" then
    fail(level + 1, "shape must be a number or a table of dimensions, got %s",
         type(shape))
  end
  local ndim = #shape
  if ndim == 0 then fail(level + 1, "shape has no dimensions") end
  if ndim > MAXDIM then
    fail(level + 1, "shape has %d dimensions (at most %d)", ndim, MAXDIM)
  end
  local n = 1
  for d = 1, ndim do
    local dim = shape[d]
    if type(dim) ~= "number" then
      fail(level + 1, "dimension %d must be a number, got %s", d, type(dim))
    end
    if not (dim >= 0) or floor(dim) ~= dim or dim == huge then
      fail(level + 1, "dimension %d is %s (expected an integer >= 0)", d, numstr(dim))
    end
    n = n * dim
    if n > 2 ^ 53 then
      fail(level + 1, "shape %s has too many elements", concat(shape, "x"))
    end
    shape_buf[d - 1] = dim
  end
  return ndim, n
end

-- A new array of shape_buf's shape: zero-filled, or (uninit) with its
-- bytes as they are, for a caller that writes every element.
local function alloc(code, ndim, n, level, uninit)
  local p = (uninit and array_new_uninit or array_new)(code, ndim, shape_buf)
  if p == nil then
    fail(level + 1, "cannot allocate %s elements of %s (out of memory)",
         numstr(n), names[code + 1])
  end
  return own(ffi.cast(ptr_of[code], p))
end

local array = {}

local function new(dtype, shape)
  local code = check_dtype(dtype, 2)
  local ndim, n = check_shape(shape, 2)
  local a = alloc(code, ndim, n, 2)
  return a -- not a tail call: alloc's error level counts this frame
end

-- An array from nested tables: from("float32", {{1, 2}, {3, 4}}) is 2x2.
-- The shape comes from the first element at each depth; ragged tables and
-- values that do not fit the dtype raise.
function array.from(dtype, tbl)
  local code = check_dtype(dtype, 2)
  if type(tbl) ~= "table" then
    fail(2, "from expects a table of values, got %s", type(tbl))
  end
  local shape, t = {}, tbl
  while type(t) == "table" do
    if #shape == MAXDIM then fail(2, "table nests deeper than %d dimensions", MAXDIM) end
    shape[#shape + 1] = #t
    t = t[1]
  end
  local ndim, n = check_shape(shape, 2)
  local a = alloc(code, ndim, n, 2, true) -- walk stores every element or raises
  local store = methods_of[code]._store
  local off = 0
  local path = {}
  local function walk(t, d)
    if #t ~= shape[d] then
      fail(d + 2, "ragged table: element [%s] has %d entries, expected %d",
           concat(path, "]["), #t, shape[d])
    end
    for k = 1, shape[d] do
      local v = t[k]
      path[d] = k
      if d < ndim then
        if type(v) ~= "table" then
          fail(d + 2, "ragged table: element [%s] is a %s, expected a table",
               concat(path, "]["), type(v))
        end
        walk(v, d + 1)
      else
        if type(v) == "table" then
          fail(d + 2, "ragged table: element [%s] is a table, expected a value",
               concat(path, "]["))
        end
        store(a, off, v, d + 2)
        off = off + 1
      end
    end
    path[d] = nil
  end
  if n > 0 then walk(tbl, 1) end
  return a
end

-- Number of live arrays in the whole process (all VMs).
function array.live() return C_array.live() end

-- Whether x is a parx array.
--
-- ffi.istype over the twelve pointer types, not a table keyed by
-- tonumber(ffi.typeof(x)): that would be one lookup instead of up to twelve
-- calls, but busted memoizes ffi.typeof by its argument and so would keep
-- every array it is asked about alive.
local istype = ffi.istype
local function is_array(x)
  for k = 1, #ptr_list do
    if istype(ptr_list[k], x) then return true end
  end
  return false
end

function array.is(x)
  return type(x) == "cdata" and is_array(x)
end

array.dtypes = names

-- ---- crossing VMs ------------------------------------------------------

local tolight = C_array.tolight
local generic_ptr = ffi.typeof("px_array *")

-- The marshaller calls this for every cdata it meets.  An array it may
-- send is one of ours (made here, holding a reference) and, checked in C,
-- a live array allocated by array.c: a cdata of another type, a struct of
-- the same layout or a pointer to a freed array is not one.
local function cdata_hook(x)
  if owned[x] and is_array(x) then return tolight(x) end
  return nil
end

-- The receiving side: a light userdata carrying one reference.
local function construct(p)
  local code = ffi.cast(generic_ptr, p)._dtype
  return own(ffi.cast(ptr_of[code], p))
end

C_array.init(construct, cdata_hook)

return setmetatable(array, {
  __call = function(_, dtype, shape) return new(dtype, shape) end,
})
