/*
 * repl.c: the line-editing binding of the REPL (GNU readline), registered as
 * `matviews.core.repl`. The loop itself, the chunk assembly and the printer
 * live in lua/matviews/repl.lua; this unit owns the terminal: reading a line
 * with editing and history, Ctrl-C at the prompt, tab completion (through a
 * Lua function), and a protected loop in which nothing of the REPL's own Lua
 * code runs unprotected.
 *
 * Signals: while a line is read, SIGINT has a handler of its own that only
 * sets a flag; readline's handlers are off (rl_catch_signals = 0) and the
 * callback interface is used, so the flag is seen when select() returns
 * EINTR and the line is dropped. Outside reading the host's handler
 * (interrupt.c) is back: Ctrl-C during a query sends PQcancel.
 * Memory: the line readline returns is ours, copied to Lua then freed;
 * completion strings are malloc'd for readline, which frees them.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <readline/readline.h>
#include <readline/history.h>
#include <lauxlib.h>
#include "core.h"

#define COMPLETER_KEY "matviews.repl.completer"
#define MATCHES_KEY "matviews.repl.matches"

static volatile sig_atomic_t got_sigint = 0;
static char *line_read = NULL;
static int line_done = 0;
static lua_State *complete_L = NULL;

/* Word breaks for completion: `.` and `:` stay inside a word (mv.db.st). */
static char word_breaks[] = " \t\n\"'`@$><=;|&{}()[],+-*/%^#~";

/* SIGINT while reading a line: only a flag (async-signal-safe). */
static void on_sigint(int sig) {
  (void)sig;
  got_sigint = 1;
}

/* The callback readline calls with a complete line (NULL at EOF). */
static void on_line(char *line) {
  line_read = line;
  line_done = 1;
  rl_callback_handler_remove(); /* no prompt redisplay after the line */
}

/* Drops the partial line after Ctrl-C and restores the terminal. */
static void drop_line(void) {
  rl_free_line_state();
  rl_callback_sigcleanup();
  rl_cleanup_after_signal();
  rl_callback_handler_remove();
  fputs("\n", rl_outstream ? rl_outstream : stdout);
  fflush(rl_outstream ? rl_outstream : stdout);
}

/* Reads characters until a line is complete, EOF or Ctrl-C.
 * Returns 1 for a line (or EOF: line_read NULL), 0 for Ctrl-C. */
static int read_loop(const char *prompt) {
  line_read = NULL;
  line_done = 0;
  got_sigint = 0;
  rl_callback_handler_install(prompt, on_line);
  while (!line_done) {
    int fd = fileno(rl_instream ? rl_instream : stdin);
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    int rc = select(fd + 1, &fds, NULL, NULL, NULL);
    if (got_sigint) { drop_line(); return 0; }
    if (rc < 0) {
      if (errno == EINTR) continue;
      rl_callback_handler_remove();
      return 1; /* unreadable input: as EOF */
    }
    rl_callback_read_char();
  }
  return 1;
}

/* readline(prompt) -> line | nil (EOF) | false (Ctrl-C: line dropped) */
static int l_readline(lua_State *L) {
  const char *prompt = luaL_optstring(L, 1, "> ");
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: select() must see EINTR */
  sigaction(SIGINT, &sa, &old);
  complete_L = L;
  int ok = read_loop(prompt);
  complete_L = NULL;
  sigaction(SIGINT, &old, NULL);
  if (!ok) { lua_pushboolean(L, 0); return 1; }
  if (line_read == NULL) { lua_pushnil(L); return 1; }
  lua_pushstring(L, line_read);
  free(line_read);
  line_read = NULL;
  return 1;
}

/* Calls the Lua completer with text; leaves its array in the registry.
 * Returns the number of candidates (0 when it fails). */
static int call_completer(lua_State *L, const char *text) {
  int top = lua_gettop(L);
  int n = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, COMPLETER_KEY);
  if (lua_isfunction(L, -1)) {
    lua_pushstring(L, text);
    lua_pushstring(L, rl_line_buffer ? rl_line_buffer : "");
    if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_istable(L, -1)) {
      n = (int)luaL_len(L, -1);
      lua_setfield(L, LUA_REGISTRYINDEX, MATCHES_KEY);
    }
  }
  lua_settop(L, top);
  return n;
}

/* readline's generator: candidate number state (0 starts a new round). */
static char *generator(const char *text, int state) {
  static int count = 0, next = 0;
  lua_State *L = complete_L;
  if (L == NULL) return NULL;
  if (state == 0) { count = call_completer(L, text); next = 0; }
  while (next < count) {
    lua_getfield(L, LUA_REGISTRYINDEX, MATCHES_KEY);
    lua_rawgeti(L, -1, ++next);
    const char *s = lua_tostring(L, -1);
    char *copy = s ? strdup(s) : NULL;
    lua_pop(L, 2);
    if (copy) return copy;
  }
  return NULL;
}

/* rl_attempted_completion_function: only our candidates, never file names. */
static char **attempt_completion(const char *text, int start, int end) {
  (void)start; (void)end;
  rl_attempted_completion_over = 1;
  rl_completion_append_character = '\0';
  return rl_completion_matches(text, generator);
}

/* set_completer(fn): fn(text, line) -> array of candidates */
static int l_set_completer(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, COMPLETER_KEY);
  return 0;
}

/* history_load(path [, max]): reads the file if it exists, keeps max entries */
static int l_history_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int max = (int)luaL_optinteger(L, 2, 1000);
  stifle_history(max);
  lua_pushboolean(L, read_history(path) == 0);
  return 1;
}

/* history_add(line [, path [, max]]): adds to memory and appends to the file */
static int l_history_add(lua_State *L) {
  const char *line = luaL_checkstring(L, 1);
  const char *path = luaL_optstring(L, 2, NULL);
  int max = (int)luaL_optinteger(L, 3, 1000);
  add_history(line);
  if (path != NULL) {
    if (append_history(1, path) != 0) write_history(path); /* creates it */
    history_truncate_file(path, max);
  }
  return 0;
}

/* loop(fn): calls fn in protected mode until it returns a value other than
 * nil (the exit code), printing errors that escape it (an interrupt between
 * two steps) and going on; returns that value. */
static int l_loop(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  for (;;) {
    lua_settop(L, 1);
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
      fflush(stderr);
      continue;
    }
    if (lua_isnil(L, -1)) continue;
    return 1;
  }
}

static const luaL_Reg repl_funcs[] = {
  {"readline", l_readline}, {"set_completer", l_set_completer},
  {"history_load", l_history_load}, {"history_add", l_history_add},
  {"loop", l_loop}, {NULL, NULL}
};

void mv_register_repl(lua_State *L) {
  rl_readline_name = "matviews";
  rl_catch_signals = 0;      /* SIGINT is ours while reading (see above) */
  rl_attempted_completion_function = attempt_completion;
  rl_basic_word_break_characters = word_breaks;
  rl_completer_word_break_characters = word_breaks;
  luaL_newlib(L, repl_funcs);
  lua_setfield(L, -2, "repl");
}
