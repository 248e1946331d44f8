/*
 * budget.c: runs user code (definition files, retention functions) under an
 * instruction budget, so `while true do end` in a file stops with an error
 * naming the file and line instead of hanging apply or prune. A count hook
 * on the running thread takes STEP instructions off the budget each time it
 * fires. The SIGINT hook (interrupt.c) takes precedence: when it is armed
 * the budget is not installed, and a SIGINT during the call replaces it.
 * Memory: none; each call's budget lives on the C stack.
 */
#include <lauxlib.h>
#include "core.h"

#define STEP 1000

typedef struct Budget {
  long long limit, left;
  const char *what;
  struct Budget *outer; /* the enclosing call's budget, restored after */
} Budget;

static Budget *current = NULL;

/* Count hook: charge STEP; when the budget is spent raise, naming where
 * the running function is (level 0: the hook is not a level). */
static void charge(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (current == NULL || (current->left -= STEP) > 0) return;
  lua_Debug here;
  const char *src = "?";
  int line = 0;
  if (lua_getstack(L, 0, &here) && lua_getinfo(L, "Sl", &here)) { src = here.short_src; line = here.currentline; }
  lua_pushfstring(L, "%s:%d: %s used up its budget of %I instructions (user_code_budget in the configuration)",
                  src, line, current->what, (lua_Integer)current->limit);
  lua_error(L);
}

/* budget.run(limit, what, fn, ...) -> fn's results. limit <= 0: no bound.
 * Errors of fn propagate unchanged, after the previous hook is back. */
static int l_run(lua_State *L) {
  lua_Integer limit = luaL_checkinteger(L, 1);
  const char *what = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 3;
  lua_Hook old = lua_gethook(L);
  int oldmask = lua_gethookmask(L), oldcount = lua_gethookcount(L);
  /* another hook (an armed SIGINT, a debugger) keeps its place */
  int install = limit > 0 && (old == NULL || old == charge);
  Budget b = { limit, limit, what, current };
  if (install) { current = &b; lua_sethook(L, charge, LUA_MASKCOUNT, STEP); }
  int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
  if (install) {
    current = b.outer;
    if (lua_gethook(L) == charge) lua_sethook(L, old, oldmask, oldcount);
  }
  if (status != LUA_OK) return lua_error(L);
  return lua_gettop(L) - 2;                       /* [limit what results...] */
}

static const luaL_Reg budget_funcs[] = {
  {"run", l_run},
  {NULL, NULL}
};

void mv_register_budget(lua_State *L) {
  luaL_newlib(L, budget_funcs);
  lua_setfield(L, -2, "budget");
}
