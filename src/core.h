/*
 * core.h: the C side of the `matviews` Lua module. luaopen_matviews_core
 * builds the table `matviews.core`; each binding area registers into it
 * through its one mv_register_* entry point.
 */
#ifndef MV_CORE_H
#define MV_CORE_H
#include <lua.h>

#define MATVIEWS_VERSION "0.1.0"

int luaopen_matviews_core(lua_State *L);

void mv_register_errors(lua_State *L);   /* errors.c */
void mv_register_conn(lua_State *L);     /* lconn.c */
void mv_register_embed(lua_State *L);    /* embed.c */
void mv_register_sys(lua_State *L);      /* sys.c */
void mv_register_net(lua_State *L);      /* net.c */
void mv_register_ticker(lua_State *L);   /* ticker.c: into core.sys */
void mv_register_cron(lua_State *L);     /* lcron.c */
void mv_register_proc(lua_State *L);     /* proc.c: into core.sys */
/* proc.c: the process's argument strings, which a forked pool worker
 * overwrites with a title of its own (what ps shows). */
void mv_proc_title_init(int argc, char **argv);
void mv_register_services(lua_State *L); /* lservices.c */
void mv_register_recorder(lua_State *L); /* recorder.c */
void mv_register_json(lua_State *L);     /* json.c: core.json_encode */
/* json_encode(v) as a lua_CFunction: the JSON text of v as cjson.encode
 * writes it, or nil when cjson would refuse v (json.c). */
int mv_json_encode(lua_State *L);
void mv_register_repl(lua_State *L);     /* repl.c */
void mv_register_budget(lua_State *L);   /* budget.c */

#endif
