/*
 * ticker.c: the live progress line on a terminal. While a long statement
 * runs, the Lua side is blocked in pg.c's poll loop; that loop calls
 * mv_ticker_poll(), which redraws the line on stderr once a second:
 * "<prefix>  12.3s elapsed, ETA 8s". Lua starts and stops it
 * (core.sys.ticker_start(prefix, eta_ms), core.sys.ticker_stop()).
 * Memory: the prefix is copied into a fixed buffer; nothing is allocated.
 * The line is written with write(2), never from a signal handler.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <lauxlib.h>
#include "core.h"
#include "ticker.h"

static struct {
  int on;
  char prefix[512];
  long long start_ms, eta_ms, last_ms;
} tk;

/* Milliseconds of the monotonic clock. */
static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "850ms", "12.3s", "2m05s" into buf. */
static void fmt_ms(char *buf, size_t n, long long ms) {
  if (ms < 1000) snprintf(buf, n, "%lldms", ms);
  else if (ms < 60000) snprintf(buf, n, "%.1fs", (double)ms / 1000);
  else snprintf(buf, n, "%lldm%02llds", ms / 60000, (ms / 1000) % 60);
}

/* Draws the line now. */
static void draw(long long now) {
  char line[768], el[32], eta[32];
  long long elapsed = now - tk.start_ms;
  fmt_ms(el, sizeof el, elapsed);
  if (tk.eta_ms < 0) {
    snprintf(line, sizeof line, "\r\033[K%s  %s elapsed", tk.prefix, el);
  } else if (elapsed <= tk.eta_ms) {
    fmt_ms(eta, sizeof eta, tk.eta_ms - elapsed);
    snprintf(line, sizeof line, "\r\033[K%s  %s elapsed, ETA %s", tk.prefix, el, eta);
  } else {
    fmt_ms(eta, sizeof eta, elapsed - tk.eta_ms);
    snprintf(line, sizeof line, "\r\033[K%s  %s elapsed, ETA passed %s ago", tk.prefix, el, eta);
  }
  ssize_t w = write(2, line, strlen(line));
  (void)w;
  tk.last_ms = now;
}

void mv_ticker_poll(void) {
  if (!tk.on) return;
  long long now = now_ms();
  if (now - tk.last_ms >= 1000) draw(now);
}

/* ticker_start(prefix, eta_ms | nil [, since_ms]): draws the line and keeps
 * it ticking; elapsed counts from since_ms ago (default 0), and eta_ms is
 * counted from there too. */
static int l_ticker_start(lua_State *L) {
  const char *p = luaL_checkstring(L, 1);
  snprintf(tk.prefix, sizeof tk.prefix, "%s", p);
  tk.eta_ms = lua_isinteger(L, 2) ? (long long)lua_tointeger(L, 2) : -1;
  tk.start_ms = now_ms() - (long long)luaL_optinteger(L, 3, 0);
  tk.on = 1;
  draw(tk.start_ms);
  return 0;
}

/* ticker_stop(): no more redraws (the caller clears the line). */
static int l_ticker_stop(lua_State *L) {
  (void)L;
  tk.on = 0;
  return 0;
}

static const luaL_Reg ticker_funcs[] = {
  {"ticker_start", l_ticker_start}, {"ticker_stop", l_ticker_stop}, {NULL, NULL}
};

void mv_register_ticker(lua_State *L) {
  lua_getfield(L, -1, "sys");
  luaL_setfuncs(L, ticker_funcs, 0);
  lua_pop(L, 1);
}
