-- The layering check (scripts/tools/layers): the runtime's dependencies
-- point down only (platform < core < modules < faces) and no files depend
-- on each other in a circle.  The first spec checks this tree; the others
-- build small trees that break one rule each, so the check is known to
-- catch what it claims to.
local TOOL = "scripts/tools/layers"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- check(root) -> exit status, output
local function check(root)
  local out = os.tmpname()
  local st = os.execute(TOOL .. " " .. q(root) .. " > " .. q(out) .. " 2>&1")
  local f = io.open(out, "rb")
  local text = f:read("*a")
  f:close()
  os.remove(out)
  if type(st) == "number" and st > 255 then st = st / 256 end
  return st, text
end

-- tree{["runtime/core/a.c"] = "...", ...} -> the root of a new tree
local function tree(files)
  local root = os.tmpname()
  os.remove(root)
  for path, text in pairs(files) do
    local dir = (root .. "/" .. path):match("^(.*)/")
    assert(os.execute("mkdir -p " .. q(dir)) == 0)
    local f = assert(io.open(root .. "/" .. path, "wb"))
    f:write(text)
    f:close()
  end
  return root
end

local function cleanup(root) os.execute("rm -rf " .. q(root)) end

describe("layers", function()
  it("the runtime's files include and call only their own and lower layers, in no circle", function()
    local st, out = check(".")
    assert(st == 0, "scripts/tools/layers failed:\n" .. out)
    assert.matches("layers: 0 violations", out)
  end)

  -- Each case: a tree breaking one rule, and what the report must say.
  local cases = {
    {"a core file that includes a module's header fails, naming the file, the line and the rule", {
      ["runtime/core/a.c"] = '/* a */\n#include "mod/b.h"\nint px_a(void) { return 0; }\n',
      ["runtime/mod/b.h"] = "int px_b(void);\n",
    }, {'runtime/core/a%.c:2: includes "mod/b%.h" %(runtime/mod/b%.h, modules%) from the core', "%[include%]"}},
    {"a core file that calls a function a module defines fails, naming where it is defined", {
      ["runtime/core/vm.c"] = "int px_job_run(int);\nint px_vm_drive(void) {\n  return px_job_run(1);\n}\n",
      ["runtime/mod/task.c"] = "int px_job_run(int n) { return n; }\n",
    }, {"runtime/core/vm%.c:1: calls px_job_run, defined in runtime/mod/task%.c:1 %(modules%), from the core", "%[call%]"}},
    {"a header of the core that declares a module's function fails", {
      ["runtime/core/core.h"] = "void px_handle_finish(void *h);\n",
      ["runtime/mod/task.c"] = "void px_handle_finish(void *h) { (void)h; }\n",
    }, {"runtime/core/core%.h:1: declares px_handle_finish, defined in runtime/mod/task%.c:1"}},
    {"two module files that call each other fail as a circle, with the call on each side", {
      ["runtime/mod/chan.c"] = "int px_sel_spin(void);\nint px_chan_select(void) { return px_sel_spin(); }\n",
      ["runtime/mod/select.c"] = "int px_chan_select(void);\nint px_sel_spin(void) {\n  return 0;\n}\nint px_sel_go(void) { return px_chan_select(); }\n",
    }, {"files depend on each other in a circle %(runtime/mod/chan%.c, runtime/mod/select%.c%)",
        "mod/chan%.c %-> mod/select%.c: runtime/mod/chan%.c:1 calls px_sel_spin",
        "mod/select%.c %-> mod/chan%.c: runtime/mod/select%.c:1 calls px_chan_select", "%[cycle%]"}},
    {"core files in a circle fail too (a layer is no excuse)", {
      ["runtime/core/vm.c"] = "int px_sched_run(void);\nint px_vm_hold(void) { return 1; }\nint px_vm_go(void) { return px_sched_run(); }\n",
      ["runtime/core/sched.c"] = "int px_vm_hold(void);\nint px_sched_run(void) { return px_vm_hold(); }\n",
    }, {"runtime/core/sched%.c, runtime/core/vm%.c"}},
    {"a face that includes the core's structures (core.h) fails; runtime.h is its door", {
      ["runtime/api.c"] = '#include "core/core.h"\n#include "core/runtime.h"\nint parx_x(void) { return 0; }\n',
      ["runtime/core/core.h"] = "struct px_vm { int id; };\n",
      ["runtime/core/runtime.h"] = "int px_runtime_stopped(void *rt);\n",
    }, {'runtime/api%.c:1: includes "core/core%.h"', "%[private%]"}, "api%.c:2"},
    {"a file in no layer's folder fails", {
      ["runtime/misc/x.c"] = "int px_x(void) { return 0; }\n",
    }, {"runtime/misc/x%.c:1: is in no layer"}},
  }
  for _, case in ipairs(cases) do
    local name, files, says, never = case[1], case[2], case[3], case[4]
    it(name, function()
      local root = tree(files)
      local st, out = check(root)
      cleanup(root)
      assert.are.equal(1, st, out)
      for _, pattern in ipairs(says) do assert.matches(pattern, out) end
      if never then assert.not_matches(never, out) end
    end)
  end

  it("calls downward, names in comments and strings, and member names pass", function()
    local root = tree{
      ["runtime/mod/task.c"] = '/* px_api_only() */\nint px_core(void);\nstruct s { int main; };\nint px_task(struct s *p) { const char *t = "parx_run()"; (void)t; return px_core() + p->main; }\n',
      ["runtime/core/core.c"] = "int px_core(void) { return 0; }\n",
      ["runtime/api.c"] = "int px_api_only(void) { return 0; }\nint parx_run(void) { return 0; }\n",
      ["runtime/cli/main.c"] = "int main(void) { return 0; }\n",
    }
    local st, out = check(root)
    cleanup(root)
    assert(st == 0, out)
  end)
end)
