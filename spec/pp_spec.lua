-- parx.pp and parx.pformat (the REPL's pretty printer), and tostring of
-- parx arrays.

describe("parx.pformat", function()
  it("prints lists as {1, 2, 3} and nested tables with sorted keys", function()
    assert.equal("{1, 2, 3}", parx.pformat({1, 2, 3}))
    assert.equal('{1, 2, b = {x = "y"}, c = true}', parx.pformat({1, 2, c = true, b = {x = "y"}}))
  end)

  it("shows a cycle as <cycle> instead of recursing", function()
    local t = {name = "loop"}
    t.self = t
    assert.equal('{name = "loop", self = <cycle>}', parx.pformat(t))
  end)

  it("cuts at opts.depth and splits lines wider than opts.width", function()
    assert.equal("{1, {2, {...}}}", parx.pformat({1, {2, {3, {4}}}}, {depth = 2}))
    local wide = parx.pformat({string.rep("a", 30), string.rep("b", 30)}, {width = 40})
    assert.truthy(wide:find("\n", 1, true))
  end)

  it("shows parx arrays with their dtype and values", function()
    local a = parx.array.from("float64", {1.5, 2, 3})
    assert.equal("{a = parx.array(float64, 3) {1.5, 2, 3}}", parx.pformat({a = a}))
  end)

  it("rejects unknown options, naming the known ones", function()
    assert.has_error(function() parx.pformat(1, {colour = true}) end,
      "pformat: unknown option 'colour' (known: depth, indent, items, width)")
  end)
end)

describe("parx.pp", function()
  it("writes the pformat text and a newline to standard output", function()
    local bin = os.getenv("PARX_BIN") or "build/parx"
    local p = io.popen(bin .. [[ -e 'parx.pp({1, {2, 3}, k = "v"})']])
    local out = p:read("*a")
    p:close()
    assert.equal('{1, {2, 3}, k = "v"}\n', out)
  end)
end)

describe("tostring of a parx array", function()
  it("stays on one line when it fits in 80 columns", function()
    local a = parx.array.from("int32", {{1, 2}, {3, 4}})
    assert.equal("parx.array(int32, 2x2) {{1, 2}, {3, 4}}", tostring(a))
  end)

  it("prints a wide matrix one row per line, values right-aligned, as numpy", function()
    local a = parx.array("int32", {3, 12})
    for i = 1, 3 do for j = 1, 12 do a:set(i, j, (i == 2 and j == 1) and 7 or i * 1000 + j) end end
    local lines = {}
    for line in tostring(a):gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal("parx.array(int32, 3x12)", lines[1])
    assert.equal(4, #lines)
    assert.truthy(lines[2]:match("^{{1001, 1002,"))
    assert.truthy(lines[3]:match("^ {   7, 2002,"))
    assert.truthy(lines[4]:match("3012}}$"))
  end)

  it("separates the blocks of a 3-D array with a blank line and cuts long dimensions", function()
    local text = tostring(parx.array("float64", {2, 3, 40}))
    assert.truthy(text:find("},\n\n {{", 1, true))
    assert.truthy(text:find("{0, 0, 0, ..., 0, 0, 0}", 1, true))
  end)
end)
