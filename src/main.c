/*
 * main.c: the matviews host. It hands its arguments to matviews.main
 * (lua/matviews/main.lua), which parses the global options once and runs
 * the CLI (lua/matviews/cli.lua) or, with a script, `-` or `-e CODE`,
 * behaves like the lua interpreter with the `matviews` module loaded as
 * global `mv`. main's body runs in protected mode (pmain) and user chunks
 * through docall, as in lua.c: Lua reaches it as matviews.host.docall, so
 * `matviews SCRIPT` and `matviews run SCRIPT` report errors alike.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>
#include "chunks.h"
#include "core.h"
#include "interrupt.h"

#ifndef MATVIEWS_LUADIR
#define MATVIEWS_LUADIR "/usr/local/share/matviews/lua"
#endif

static const char *progname = "matviews";

/* Prints msg to stderr, prefixed with the program name (lua.c l_message). */
static void l_message(const char *msg) {
  fprintf(stderr, "%s: %s\n", progname, msg);
  fflush(stderr);
}

/* Finds the first frame of user code with a line (skipping matviews's own
 * Lua files), for errors raised with a table (database errors): pushes
 * "file:line: " or "". */
static void push_where(lua_State *L) {
  lua_Debug ar;
  lua_getfield(L, LUA_REGISTRYINDEX, "matviews.luadir");
  const char *own = lua_tostring(L, -1);
  size_t ownlen = own ? strlen(own) : 0;
  lua_pop(L, 1); /* the string stays reachable from the registry */
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline > 0 && !(own && ar.source[0] == '@' && strncmp(ar.source + 1, own, ownlen) == 0)) {
      lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
      return;
    }
  }
  lua_pushliteral(L, "");
}

/* Message handler: turns any error object into text plus a traceback. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL && lua_type(L, 1) == LUA_TTABLE) {
    /* a connection failure is one line: host, port, reason */
    lua_getfield(L, 1, "kind");
    int conn = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "connection") == 0;
    lua_pop(L, 1);
    if (conn) { lua_getfield(L, 1, "message"); return 1; }
  }
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
      push_where(L);
      lua_insert(L, -2);
      lua_concat(L, 2);
      msg = lua_tostring(L, -1);
    } else {
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the function below narg arguments with the traceback handler. */
static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

/* Reports a failed status's message on stderr. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    l_message(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}

/* Directory holding lua/matviews/init.lua: next to the executable (build
 * tree), ../share/matviews/lua (installed), or the configured prefix. */
static int find_luadir(char *out, size_t outlen) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  const char *env = getenv("MATVIEWS_LUA_DIR");
  const char *cands[3] = {"%s/lua", "%s/../share/matviews/lua", NULL};
  char probe[PATH_MAX + 64];
  if (env && *env) { snprintf(out, outlen, "%s", env); return 0; }
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    for (int i = 0; cands[i]; i++) {
      snprintf(out, outlen, cands[i], exe);
      snprintf(probe, sizeof probe, "%s/matviews/init.lua", out);
      if (access(probe, R_OK) == 0) return 0;
    }
  }
  snprintf(out, outlen, "%s", MATVIEWS_LUADIR);
  return 0;
}

/* Prepends the matviews Lua directory to package.path, preloads the core. */
static void setup_package(lua_State *L) {
  char dir[PATH_MAX];
  find_luadir(dir, sizeof dir);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  mv_chunks_install(L, dir);
  lua_pushstring(L, dir);
  lua_setfield(L, LUA_REGISTRYINDEX, "matviews.luadir");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_matviews_core);
  lua_setfield(L, -2, "matviews.core");
  lua_pop(L, 2);
}

/* host.docall(f, ...) -> true | false: calls f with the traceback
 * handler; an error is reported on stderr as the interpreter reports it. */
static int l_docall(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int status = docall(L, lua_gettop(L) - 1, 0);
  report(L, status);
  lua_pushboolean(L, status == LUA_OK);
  return 1;
}

/* host.report(msg): "matviews: msg" on stderr. */
static int l_report(lua_State *L) {
  l_message(luaL_checkstring(L, 1));
  return 0;
}

/* The module matviews.host: what only the host can do for Lua. */
static int luaopen_host(lua_State *L) {
  static const luaL_Reg funcs[] = { {"docall", l_docall}, {"report", l_report}, {NULL, NULL} };
  luaL_newlib(L, funcs);
  return 1;
}

/* The protected body of main: matviews.main.main(argv) parses the global
 * options (once) and runs a script, -e code or a command; leaves the exit
 * code as an integer. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int code = 1;
  luaL_openlibs(L);
  mv_interrupt_install(L);
  setup_package(L);
  luaL_requiref(L, "matviews.host", luaopen_host, 0);
  lua_pop(L, 1);
  lua_createtable(L, argc, 1);                        /* the global arg, as lua.c has it */
  for (int i = 0; i < argc; i++) { lua_pushstring(L, argv[i]); lua_rawseti(L, -2, i); }
  lua_setglobal(L, "arg");
  lua_getglobal(L, "require");
  lua_pushliteral(L, "matviews.main");
  if (docall(L, 1, 1) == LUA_OK) {
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) { lua_pushstring(L, argv[i]); lua_rawseti(L, -2, i); }
    int status = docall(L, 1, 1);
    if (status == LUA_OK) code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    else report(L, status);
  } else {
    report(L, LUA_ERRRUN);
  }
  lua_pushinteger(L, code);
  return 1;
}

/* The Lua heap's ceiling (MATVIEWS_LUA_MEMORY_MB, unset or 0: none) and its
 * use. Past it an allocation fails and Lua raises "not enough memory", which
 * user code can catch: a runaway script is stopped before the machine is
 * out of memory, and the specs reach the memory-error paths of the C units. */
static size_t mem_limit = 0, mem_used = 0;

/* lua_Alloc with the ceiling above (lauxlib's l_alloc otherwise). */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (ptr == NULL) osize = 0;
  if (nsize == 0) { free(ptr); mem_used -= osize; return NULL; }
  if (mem_limit > 0 && nsize > osize && mem_used + (nsize - osize) > mem_limit) return NULL;
  void *p = realloc(ptr, nsize);
  if (p != NULL) mem_used = mem_used - osize + nsize;
  return p;
}

/* A new state with limited_alloc and lauxlib's panic and warning functions. */
static lua_State *new_state(void) {
  const char *mb = getenv("MATVIEWS_LUA_MEMORY_MB");
  if (mb != NULL) mem_limit = (size_t)strtoul(mb, NULL, 10) * 1024 * 1024;
  lua_State *L = luaL_newstate(); /* its panic and warn functions */
  if (L == NULL || mem_limit == 0) return L;
  /* both allocators use realloc/free; count what the state holds so far */
  mem_used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  lua_setallocf(L, limited_alloc, NULL);
  return L;
}

int main(int argc, char **argv) {
  mv_proc_title_init(argc, argv);
  lua_State *L = new_state();
  if (L == NULL) { l_message("cannot create state: not enough memory"); return 1; }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int code = status == LUA_OK ? (int)lua_tointeger(L, -1) : 1;
  if (status != LUA_OK) report(L, status);
  /* stopped by SIGINT/SIGTERM (handled, so not killed by it): say so in the
   * exit code as a shell would, 130 or 143; a script that caught the
   * interrupt and ended well keeps its 0 */
  if (code != 0 && mv_stop_signal() != 0) code = 128 + mv_stop_signal();
  fflush(stdout);
  lua_close(L);
  return code;
}
