/*
 * sys.c: the few POSIX facts the Lua side needs and standard Lua lacks:
 * working directory, pid, host name, a monotonic clock, isatty, sleeping,
 * directory listing, a private scratch directory. Memory: listdir's names are freed before it returns.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <lauxlib.h>
#include "core.h"
#include "interrupt.h"

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

/* stop_signal() -> the SIGINT (2) or SIGTERM (15) received since the last
 * clear_stop(), or nil: a batch checks it before starting each view. */
static int l_stop_signal(lua_State *L) {
  int sig = mv_stop_signal();
  if (sig == 0) lua_pushnil(L);
  else lua_pushinteger(L, sig);
  return 1;
}

/* clear_stop() */
static int l_clear_stop(lua_State *L) {
  (void)L;
  mv_stop_clear();
  return 0;
}

/* sleep_ms(ms) */
static int l_sleep_ms(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  struct timespec ts = { (time_t)(ms / 1000), (long)((ms - (lua_Number)(time_t)(ms / 1000) * 1000) * 1e6) };
  nanosleep(&ts, NULL);
  return 0;
}

/* Orders names for qsort. */
static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Pushes the array of names (sorted) and frees them. */
static void push_names(lua_State *L, char **names, size_t n) {
  qsort(names, n, sizeof *names, cmp_names);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

/* listdir(path) -> sorted array of entry names (no . and ..), or nil, message */
static int l_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (d == NULL) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  size_t n = 0, cap = 16;
  char **names = malloc(cap * sizeof *names);
  struct dirent *e;
  while (names != NULL && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (n == cap) {
      char **grown = realloc(names, (cap *= 2) * sizeof *names);
      if (grown == NULL) { for (size_t i = 0; i < n; i++) free(names[i]); free(names); names = NULL; break; }
      names = grown;
    }
    if ((names[n] = strdup(e->d_name)) != NULL) n++;
  }
  closedir(d);
  if (names == NULL) return luaL_error(L, "listdir: out of memory");
  push_names(L, names, n);
  return 1;
}

/* mkdtemp() -> path | nil, message: a new directory of this user's alone
 * (mode 0700, a name nobody could guess or create first) under $TMPDIR,
 * else /tmp, for scratch files, which the caller removes. */
static int l_mkdtemp(lua_State *L) {
  const char *base = getenv("TMPDIR");
  char path[PATH_MAX];
  if (base == NULL || base[0] != '/') base = "/tmp";
  if (snprintf(path, sizeof path, "%s/matviews-XXXXXX", base) >= (int)sizeof path) {
    luaL_pushfail(L);
    lua_pushliteral(L, "TMPDIR is too long");
    return 2;
  }
  if (mkdtemp(path) == NULL) {
    luaL_pushfail(L);
    lua_pushfstring(L, "cannot create a directory in %s: %s", base, strerror(errno));
    return 2;
  }
  lua_pushstring(L, path);
  return 1;
}

static const luaL_Reg sys_funcs[] = {
  {"getcwd", l_getcwd}, {"getpid", l_getpid}, {"hostname", l_hostname},
  {"monotonic_ms", l_monotonic_ms}, {"isatty", l_isatty}, {"sleep_ms", l_sleep_ms},
  {"listdir", l_listdir}, {"stop_signal", l_stop_signal}, {"clear_stop", l_clear_stop},
  {"mkdtemp", l_mkdtemp},
  {NULL, NULL}
};

void mv_register_sys(lua_State *L) {
  luaL_newlib(L, sys_funcs);
  lua_setfield(L, -2, "sys");
}
