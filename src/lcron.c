/*
 * lcron.c: the Lua binding of cron.c, as mv.core.cron_parse, cron_next,
 * cron_prev and cron_format. Times are integers (UTC seconds since the
 * epoch); a zone argument nil or "UTC" means UTC. Failures return nil and a
 * message (the caller decides whether that is an error).
 */
#include <string.h>
#include <lauxlib.h>
#include "core.h"
#include "cron.h"

/* Parses the expression at idx; on failure pushes nil, message and returns 0. */
static int check_expr(lua_State *L, int idx, cron_expr *e) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  char err[256];
  if (cron_parse(s, len, e, err, sizeof err) == 0) return 1;
  lua_pushnil(L);
  lua_pushfstring(L, "invalid cron expression \"%s\": %s", s, err);
  return 0;
}

/* Reads the optional zone at idx; on an unknown zone pushes nil, message. */
static int check_zone(lua_State *L, int idx, const char **tz) {
  *tz = luaL_optstring(L, idx, NULL);
  if (cron_zone_ok(*tz)) return 1;
  lua_pushnil(L);
  lua_pushfstring(L, "unknown time zone \"%s\"", *tz);
  return 0;
}

/* Pushes the set bits lo..hi of bits as an array of integers. */
static void push_set(lua_State *L, uint64_t bits, int lo, int hi, const char *key) {
  lua_newtable(L);
  int n = 0;
  for (int i = lo; i <= hi; i++)
    if (bits >> i & 1) { lua_pushinteger(L, i); lua_rawseti(L, -2, ++n); }
  lua_setfield(L, -2, key);
}

/* cron_parse(expr) -> { minute, hour, dom, month, dow = {ints} } | nil, msg */
static int l_cron_parse(lua_State *L) {
  cron_expr e;
  if (!check_expr(L, 1, &e)) return 2;
  lua_createtable(L, 0, 5);
  push_set(L, e.minute, 0, 59, "minute");
  push_set(L, e.hour, 0, 23, "hour");
  push_set(L, e.dom, 1, 31, "dom");
  push_set(L, e.month, 1, 12, "month");
  push_set(L, e.dow, 0, 6, "dow");
  if (e.seconds) { lua_pushinteger(L, e.seconds); lua_setfield(L, -2, "seconds"); }
  return 1;
}

/* Shared body of cron_next and cron_prev. */
static int next_or_prev(lua_State *L, int next) {
  cron_expr e;
  const char *tz;
  if (!check_expr(L, 1, &e)) return 2;
  lua_Integer t = luaL_checkinteger(L, 2);
  if (!check_zone(L, 3, &tz)) return 2;
  int64_t out;
  int rc = next ? cron_next_tz(&e, (int64_t)t, tz, &out) : cron_prev_tz(&e, (int64_t)t, tz, &out);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "no fire time %s %I", next ? "after" : "at or before", t);
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)out);
  return 1;
}

/* cron_next(expr, after [, zone]) -> the first fire time after `after` */
static int l_cron_next(lua_State *L) { return next_or_prev(L, 1); }

/* cron_prev(expr, at [, zone]) -> the last fire time at or before `at` */
static int l_cron_prev(lua_State *L) { return next_or_prev(L, 0); }

/* cron_format(t [, zone]) -> "YYYY-MM-DDTHH:MM:SS+hh:mm" ("Z" for UTC) */
static int l_cron_format(lua_State *L) {
  lua_Integer t = luaL_checkinteger(L, 1);
  const char *tz;
  char buf[64];
  if (!check_zone(L, 2, &tz)) return 2;
  if (cron_format((int64_t)t, tz, buf, sizeof buf) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "time %I out of range", t);
    return 2;
  }
  lua_pushstring(L, buf);
  return 1;
}

/* cron_zone_ok(zone) -> boolean */
static int l_cron_zone_ok(lua_State *L) {
  lua_pushboolean(L, cron_zone_ok(luaL_optstring(L, 1, NULL)));
  return 1;
}

static const luaL_Reg cron_funcs[] = {
  {"cron_parse", l_cron_parse}, {"cron_next", l_cron_next}, {"cron_prev", l_cron_prev},
  {"cron_format", l_cron_format}, {"cron_zone_ok", l_cron_zone_ok}, {NULL, NULL}
};

void mv_register_cron(lua_State *L) {
  luaL_setfuncs(L, cron_funcs, 0);
}
