/*
 * core.c: assembles `matviews.core` from the binding areas. The Lua module
 * `matviews` (lua/matviews/init.lua) wraps it into the `mv` API.
 */
#include <lauxlib.h>
#include "core.h"

/* Keeps cjson.encode in the registry for encoding table parameters. */
static void keep_json_encode(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);                         /* [core cjson] */
  lua_getfield(L, -1, "encode");
  lua_setfield(L, LUA_REGISTRYINDEX, "matviews.json_encode");
  lua_pop(L, 1);                             /* [core] */
}

int luaopen_matviews_core(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, MATVIEWS_VERSION);
  lua_setfield(L, -2, "version");
  mv_register_errors(L);
  mv_register_conn(L);
  mv_register_embed(L);
  mv_register_sys(L);
  mv_register_net(L);
  mv_register_cron(L);
  mv_register_proc(L);
  mv_register_ticker(L);
  mv_register_services(L);
  mv_register_recorder(L);
  mv_register_repl(L);
  mv_register_budget(L);
  mv_register_json(L);
  keep_json_encode(L);
  return 1;
}
