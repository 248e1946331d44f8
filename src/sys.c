/*
 * sys.c: the few POSIX facts the Lua side needs and standard Lua lacks:
 * working directory, pid, host name, a monotonic clock, isatty, sleeping,
 * listing a directory.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <lauxlib.h>
#include "core.h"

/* getcwd() -> path */
static int l_getcwd(lua_State *L) {
  char buf[PATH_MAX];
  if (getcwd(buf, sizeof buf) == NULL) return luaL_error(L, "getcwd failed");
  lua_pushstring(L, buf);
  return 1;
}

/* getpid() -> integer */
static int l_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* hostname() -> string */
static int l_hostname(lua_State *L) {
  char buf[256];
  if (gethostname(buf, sizeof buf) != 0) buf[0] = '\0';
  buf[sizeof buf - 1] = '\0';
  lua_pushstring(L, buf);
  return 1;
}

/* monotonic_ms() -> float milliseconds from CLOCK_MONOTONIC */
static int l_monotonic_ms(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000.0 + (lua_Number)ts.tv_nsec / 1e6);
  return 1;
}

/* isatty(fd) -> boolean; fd 0, 1 or 2 */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* sleep_ms(ms) */
static int l_sleep_ms(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  struct timespec ts = { (time_t)(ms / 1000), (long)((ms - (lua_Number)(time_t)(ms / 1000) * 1000) * 1e6) };
  nanosleep(&ts, NULL);
  return 0;
}

/* __gc of the directory handle box: closes it once. */
static int dir_gc(lua_State *L) {
  DIR **box = (DIR **)lua_touserdata(L, 1);
  if (*box) { closedir(*box); *box = NULL; }
  return 0;
}

/* listdir(path) -> array of entry names (no "." or ".."), unsorted;
 * nil, message when the directory cannot be read. The DIR lives in a
 * userdata with __gc, so a memory error while pushing names leaks nothing. */
static int l_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR **box = (DIR **)lua_newuserdatauv(L, sizeof(DIR *), 0);  /* [box] */
  *box = NULL;
  if (luaL_newmetatable(L, "matviews.dir")) {
    lua_pushcfunction(L, dir_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  *box = opendir(path);
  if (*box == NULL) {
    int err = errno;
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(err));
    return 2;
  }
  lua_newtable(L);  /* [box names] */
  lua_Integer n = 0;
  struct dirent *e;
  while ((e = readdir(*box)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(*box);
  *box = NULL;
  return 1;
}

static const luaL_Reg sys_funcs[] = {
  {"getcwd", l_getcwd}, {"getpid", l_getpid}, {"hostname", l_hostname},
  {"monotonic_ms", l_monotonic_ms}, {"isatty", l_isatty}, {"sleep_ms", l_sleep_ms},
  {"listdir", l_listdir}, {NULL, NULL}
};

void mv_register_sys(lua_State *L) {
  luaL_newlib(L, sys_funcs);
  lua_setfield(L, -2, "sys");
}
