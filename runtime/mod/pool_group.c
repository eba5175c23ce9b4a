/* pool_group.c -- the Lua face of VM groups (core/group.h) for pool
 * objects (lua/parx/pool_object.lua): a group owner (a plain userdata held
 * by the pool object; collected: the group is closed), spawning onto a
 * group, and what a group VM's runners ask of it.  In parx.c.pool.
 */
#include <stdlib.h>

#include "../core/px.h"
#include "../core/group.h"
#include "pool.h"

#define GROUP_MT "parx.pool.group"

typedef struct group_owner {
  px_group *group; /* one reference; NULL once collected */
} group_owner;

static px_group *check_group(lua_State *L, int idx) {
  group_owner *o = luaL_checkudata(L, idx, GROUP_MT);
  if (!o->group) luaL_argerror(L, idx, "the pool's VMs are gone");
  return o->group;
}

static int group_gc(lua_State *L) {
  px_group *g = px_udata_take(L, 1);
  if (g) {
    px_group_close(g);
    px_group_release(g);
  }
  return 0;
}

/* group_new(n, max_tasks [, init, ...]) -> owner: n VMs of their own; each
 * runs init(...) first when given (marshalled once, here). */
static int l_group_new(lua_State *L) {
  lua_Number n = luaL_checknumber(L, 1), max = luaL_optnumber(L, 2, 0);
  if (!(n >= 1 && n <= 1024)) return luaL_argerror(L, 1, "from 1 to 1024 VMs");
  if (!(max >= 0 && max < 9e15)) return luaL_argerror(L, 2, "bad task count");
  px_msg init;
  px_msg_init(&init);
  if (!lua_isnoneornil(L, 3) && px_marshal(L, 3, lua_gettop(L) - 2, &init) != 0)
    return luaL_error(L, "pool.new: cannot send the initializer to the pool's VMs: %s", lua_tostring(L, -1));
  group_owner *o = lua_newuserdata(L, sizeof *o);
  o->group = NULL;
  luaL_getmetatable(L, GROUP_MT);
  lua_setmetatable(L, -2);
  int err = px_group_new(px_vm_runtime(px_vm_of(L)), (int)n, (long)max, &init, &o->group);
  if (err)
    return luaL_error(L, "pool.new: %s: %s (cannot start the pool's VMs)", px_err_name(err), px_strerror(err));
  return 1;
}

/* Queue fn(...) (the values from idx to the top) on g: a Task. */
static int spawn_on(lua_State *L, px_group *g, int force, int daemon, const char *name, int idx) {
  px_future *f = px_job_new(L, idx, lua_gettop(L) - idx + 1, daemon, name);
  if (px_group_push(g, f, force) != 0) {
    px_job_discard(&f->job_store);
    px_shared_release(&f->hdr);
    return luaL_error(L, "the pool is closed");
  }
  px_trace_spawn(L, f->seq);
  px_shared_push(L, &f->hdr);
  return 1;
}

/* group_spawn(owner, daemon, name, fn, ...) -> Task, on the group's VMs. */
static int l_group_spawn(lua_State *L) {
  px_group *g = check_group(L, 1);
  int daemon = lua_toboolean(L, 2);
  const char *name = luaL_optstring(L, 3, NULL);
  luaL_checkany(L, 4);
  return spawn_on(L, g, 0, daemon, name, 4);
}

/* group_respawn(fn, ...) -> Task, or nothing when this VM is not a pool's:
 * fn(...) on this VM's group, closed or not (a runner hands on its map). */
static int l_group_respawn(lua_State *L) {
  px_group *g = px_vm_group(px_vm_of(L));
  if (!g) return 0;
  return spawn_on(L, g, 1, 0, NULL, 1);
}

/* group_close(owner): no new work; its VMs end once idle. */
static int l_group_close(lua_State *L) {
  px_group_close(check_group(L, 1));
  return 0;
}

/* group_live(owner) -> VMs running now */
static int l_group_live(lua_State *L) {
  lua_pushinteger(L, px_group_live(check_group(L, 1)));
  return 1;
}

/* count_task() -> true when this pool VM has now run its max_tasks (it
 * takes no more jobs and is replaced once its tasks end); false elsewhere. */
static int l_count_task(lua_State *L) {
  lua_pushboolean(L, px_group_count_task(px_vm_of(L)));
  return 1;
}

static const luaL_Reg group_funcs[] = {
    {"group_new", l_group_new},     {"group_spawn", l_group_spawn},
    {"group_respawn", l_group_respawn}, {"group_close", l_group_close},
    {"group_live", l_group_live},   {"count_task", l_count_task},
    {NULL, NULL}};

void px_pool_owner_meta(lua_State *L, const char *name, lua_CFunction gc) {
  if (luaL_newmetatable(L, name)) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
}

/* Adds the functions to the module table on top of L. */
void px_pool_group_open(lua_State *L) {
  px_pool_owner_meta(L, GROUP_MT, group_gc);
  luaL_setfuncs(L, group_funcs, 0);
}
