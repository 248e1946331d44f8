/*
 * interrupt.c: the SIGINT handler. During a query it only counts (pg.c
 * polls the count and sends PQcancel); a second SIGINT during the same query
 * exits. Outside a query it sets a hook that raises "interrupted!" at the
 * next Lua instruction, like lua.c's laction/lstop; a second one exits.
 */
#include <unistd.h>
#include <string.h>
#include <lauxlib.h>
#include "interrupt.h"

static lua_State *hookL = NULL;
static volatile sig_atomic_t in_query = 0;
static volatile sig_atomic_t hits = 0;
static volatile sig_atomic_t held = 0;     /* a job runs: no hook, keep it pending */
static volatile sig_atomic_t pending = 0;

/* The hook set by the handler: clear itself and raise in Lua. */
static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  hits = 0;
  luaL_error(L, "interrupted!");
}

/* Async-signal-safe: flags, lua_sethook (as lua.c does), _exit. */
static void on_sigint(int sig) {
  (void)sig;
  hits = hits + 1;
  if (hits >= 2) {
    static const char msg[] = "\nmatviews: interrupted\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) { /* nothing to do */ }
    _exit(130);
  }
  if (!in_query && held) pending = 1;
  else if (!in_query && hookL != NULL)
    lua_sethook(hookL, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void mv_interrupt_install(lua_State *L) {
  struct sigaction sa;
  hookL = L;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: poll() in pg.c must see EINTR */
  sigaction(SIGINT, &sa, NULL);
}

/* A statement begun while an interrupt is pending is cancelled at once:
 * one held by a job, or one that armed the hook after the statement was
 * sent but before its wait began (the hook is disarmed: the cancel is the
 * interrupt's effect, as for one that arrives during the wait). */
void mv_query_begin(void) {
  int armed = hookL != NULL && lua_gethook(hookL) == lstop;
  if (armed) lua_sethook(hookL, NULL, 0, 0);
  hits = (pending || armed) ? 1 : 0;
  in_query = 1;
}

void mv_query_end(void) {
  in_query = 0;
  hits = 0;
}

int mv_query_interrupted(void) { return hits > 0; }

/* The hook is armed on the main state (hookL), whatever thread L is. */
int mv_interrupt_take(lua_State *L) {
  (void)L;
  if (hookL == NULL || lua_gethook(hookL) != lstop) return 0;
  lua_sethook(hookL, NULL, 0, 0);
  hits = 0;
  return 1;
}

int mv_interrupt_hold(int on) {
  int was = held;
  held = on ? 1 : 0;
  return was;
}

int mv_interrupt_pending(int clear) {
  int p = pending;
  if (clear) pending = 0;
  return p;
}
