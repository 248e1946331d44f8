/*
 * interrupt.c: the SIGINT and SIGTERM handler. During a query it only counts
 * (pg.c polls the count and sends PQcancel); a second signal during the same
 * query exits 128 + the signal. Outside a query it sets a hook that raises
 * "interrupted!" at the next Lua instruction, like lua.c's laction/lstop; a
 * second one exits. SIGTERM is handled as SIGINT, so `timeout` or a service
 * manager stopping a refresh gets the query cancelled and the run recorded
 * as failed instead of an orphan. The last signal stays noted (stop_signal)
 * until cleared: a batch stops starting views once one arrived, and the host
 * exits 128 + that signal.
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
static volatile sig_atomic_t stop_sig = 0;

/* The hook set by the handler: clear itself and raise in Lua. */
static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  hits = 0;
  luaL_error(L, "interrupted!");
}

/* Async-signal-safe: flags, lua_sethook (as lua.c does), _exit. */
static void on_signal(int sig) {
  hits = hits + 1;
  stop_sig = sig;
  if (hits >= 2) {
    static const char msg[] = "\nmatviews: interrupted\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) { /* nothing to do */ }
    _exit(128 + sig);
  }
  if (!in_query && held) pending = 1;
  else if (!in_query && hookL != NULL)
    lua_sethook(hookL, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void mv_interrupt_install(lua_State *L) {
  struct sigaction sa;
  hookL = L;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: poll() in pg.c must see EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

/* A statement begun while an interrupt is pending is cancelled at once:
 * one held by a job, or one that armed the hook after the statement was
 * sent but before its wait began (the hook is disarmed: the cancel is the
 * interrupt's effect, as for one that arrives during the wait). */
/* A statement run while another's result is awaited (pg.c's wait
 * deadline: a run begun ahead withdrawn) nests: only the outer one sets
 * and clears the state. */
static int query_depth = 0;

void mv_query_begin(void) {
  if (query_depth++ > 0) return;
  int armed = hookL != NULL && lua_gethook(hookL) == lstop;
  if (armed) lua_sethook(hookL, NULL, 0, 0);
  hits = (pending || armed) ? 1 : 0;
  in_query = 1;
}

void mv_query_end(void) {
  if (query_depth > 0 && --query_depth > 0) return;
  in_query = 0;
  hits = 0;
}

int mv_query_interrupted(void) { return hits > 0; }

int mv_stop_signal(void) { return stop_sig; }

void mv_stop_clear(void) { stop_sig = 0; }

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
