/*
 * proc.c: child processes for parallel refresh, added to mv.core.sys:
 * exe_path() (this host's executable), spawn(argv, opts),
 * wait_any(pids [, timeout_ms]), kill, die_with_parent, and the socket a
 * pool worker is fed over (or a child writes its output to): fd_write,
 * poll_read, fd_close; fork_child, a pool worker forked from this
 * process. Children are otherwise started with posix_spawn; the
 * argv strings stay owned by the Lua table passed in, and the file actions
 * and environment array are freed before any Lua error can be raised.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <sys/socket.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <lauxlib.h>
#include "core.h"
#include "ticker.h"
#include "lconn.h"

extern char **environ;

#define MAX_ARGS 64
#define MAX_ENV_EXTRA 16

/* exe_path() -> the absolute path of the running executable */
static int l_exe_path(lua_State *L) {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return luaL_error(L, "cannot find the executable: %s", strerror(errno));
  buf[n] = '\0';
  lua_pushstring(L, buf);
  return 1;
}

/* Fills argv from the array at idx (at most MAX_ARGS strings). */
static int collect_argv(lua_State *L, int idx, const char **argv) {
  int n = (int)luaL_len(L, idx);
  luaL_argcheck(L, n >= 1 && n < MAX_ARGS, idx, "argv needs 1 to 63 strings");
  for (int i = 0; i < n; i++) {
    lua_geti(L, idx, i + 1);
    luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, idx, "argv holds a non-string");
    argv[i] = lua_tostring(L, -1); /* kept alive by the table */
    lua_pop(L, 1);
  }
  argv[n] = NULL;
  return n;
}

/* Whether the environ entry e ("KEY=...") sets a key that one of the n
 * extra "KEY=VALUE" strings sets again. */
static int overridden(const char *e, const char *const *extra, int n) {
  const char *eq = strchr(e, '=');
  size_t len = eq ? (size_t)(eq - e) : strlen(e);
  for (int i = 0; i < n; i++)
    if (strncmp(e, extra[i], len) == 0 && extra[i][len] == '=') return 1;
  return 0;
}

/* Builds "KEY=VALUE" strings from opts.env (opts at stack index `opts`)
 * into an anchor table left on the stack, and returns a malloc'd array of
 * environ without the keys they set, followed by them (NULL when out of
 * memory): getenv() finds the first entry, so an inherited one must go. */
static char **build_env(lua_State *L, int opts) {
  const char *extra[MAX_ENV_EXTRA];
  int k = 0, base = 0;
  lua_newtable(L);                            /* [anchor] */
  int anchor = lua_gettop(L);
  if (lua_getfield(L, opts, "env") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {            /* [anchor env key value] */
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING && k < MAX_ENV_EXTRA) {
        extra[k] = lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
        lua_rawseti(L, anchor, ++k);          /* the anchor keeps the string */
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);                              /* [anchor] */
  while (environ[base]) base++;
  char **env = (char **)malloc(sizeof(char *) * (size_t)(base + k + 1));
  if (env == NULL) return NULL;
  int m = 0;
  for (int i = 0; i < base; i++)
    if (!overridden(environ[i], extra, k)) env[m++] = environ[i];
  for (int i = 0; i < k; i++) env[m++] = (char *)extra[i];
  env[m] = NULL;
  return env;
}

/* Whether opts (at idx) sets key to true. */
static int opt_flag(lua_State *L, int idx, const char *key) {
  lua_getfield(L, idx, key);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* spawn(argv [, { env = { K = V }, socket = bool, group = bool }]) ->
 * pid [, fd] | nil, message. stdin is /dev/null and stdout and stderr are
 * inherited, unless socket: then the child's stdin and stdout are one end
 * of a Unix socket pair and fd is the other (close-on-exec; written with
 * fd_write, read with poll_read). A child's output never goes to a file
 * (a shared temporary path could be guessed, planted or left behind). group: the child leads a process group
 * of its own, so a terminal's Ctrl-C reaches only this process, which
 * forwards it. argv[1] is a path (no PATH search). */
static int l_spawn(lua_State *L) {
  const char *argv[MAX_ARGS + 1];
  int sv[2] = {-1, -1};
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_isnoneornil(L, 2)) { lua_settop(L, 1); lua_newtable(L); }
  luaL_checktype(L, 2, LUA_TTABLE);
  collect_argv(L, 1, argv);
  int sock = opt_flag(L, 2, "socket");
  if (sock && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot create a socket pair: %s", strerror(errno));
    return 2;
  }
  char **env = build_env(L, 2);
  if (env == NULL) { if (sock) { close(sv[0]); close(sv[1]); } return luaL_error(L, "out of memory"); }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  if (opt_flag(L, 2, "group")) {
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
  }
  if (sock) {
    posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
  } else {
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  }
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, &attr, (char *const *)argv, env);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  free(env);
  if (sock) close(sv[1]);
  if (rc != 0) {
    if (sock) close(sv[0]);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot start %s: %s", argv[0], strerror(rc));
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)pid);
  if (!sock) return 1;
  lua_pushinteger(L, sv[0]);
  return 2;
}

/* The argument strings' area (argv[0] to the end of the last one): Lua
 * keeps copies, so a forked child may overwrite it. */
static char *title_area;
static size_t title_len;

void mv_proc_title_init(int argc, char **argv) {
  if (argc < 1 || argv[0] == NULL) return;
  char *end = argv[0] + strlen(argv[0]) + 1;
  for (int i = 1; i < argc && argv[i] == end; i++) end = argv[i] + strlen(argv[i]) + 1;
  title_area = argv[0];
  title_len = (size_t)(end - argv[0]);
}

/* Writes title over the argument strings (cut to fit, the rest zeroed):
 * /proc/PID/cmdline, what ps shows, no longer holds the parent's
 * arguments (a --dsn with a password among them). */
static void set_title(const char *title) {
  if (title_area == NULL || title_len == 0) return;
  memset(title_area, 0, title_len);
  size_t n = strlen(title);
  memcpy(title_area, title, n < title_len - 1 ? n : title_len - 1);
}

/* fork_child([{ env = { K = V }, group = bool, title = s }]) -> pid, fd in this
 * process; 0 in the child | nil, message. The child is this process, its
 * Lua state and loaded modules included, with stdin and stdout one end of
 * a Unix socket pair (fd the other, close-on-exec), env set, its command
 * line replaced by title (set_title) and, with group, a process group of
 * its own: a pool worker that needs no exec, no dynamic linking and no
 * module loading. Refused while a connection is open or under way here
 * (the child would share its socket): spawn then. */
static int l_fork_child(lua_State *L) {
  int sv[2];
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  luaL_checktype(L, 1, LUA_TTABLE);
  if (mv_conn_live() > 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "a connection is open");
    return 2;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot create a socket pair: %s", strerror(errno));
    return 2;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(sv[0]); close(sv[1]);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot fork: %s", strerror(errno));
    return 2;
  }
  if (pid > 0) {
    close(sv[1]);
    lua_pushinteger(L, (lua_Integer)pid);
    lua_pushinteger(L, sv[0]);
    return 2;
  }
  close(sv[0]);
  if (opt_flag(L, 1, "group")) setpgid(0, 0);
  lua_getfield(L, 1, "title");
  set_title(lua_isstring(L, -1) ? lua_tostring(L, -1) : "matviews");
  lua_pop(L, 1);
  dup2(sv[1], 0);  /* dup2 clears close-on-exec on the copies */
  dup2(sv[1], 1);
  if (sv[1] > 1) close(sv[1]); /* (0 or 1 when this process had them closed) */
  lua_getfield(L, 1, "env");
  if (lua_istable(L, -1))
    for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1))
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) setenv(lua_tostring(L, -2), lua_tostring(L, -1), 1);
  lua_pop(L, 1);
  lua_pushinteger(L, 0);
  return 1;
}

/* fd_write(fd, s) -> true | nil, message: all of s, retrying on EINTR; a
 * peer that is gone is an error, not a SIGPIPE. */
static int l_fd_write(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t len, done = 0;
  const char *s = luaL_checklstring(L, 2, &len);
  while (done < len) {
    ssize_t n = send(fd, s + done, len - done, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = write(fd, s + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      lua_pushnil(L);
      lua_pushstring(L, n < 0 ? strerror(errno) : "nothing written");
      return 2;
    }
    done += (size_t)n;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* fd_close(fd) */
static int l_fd_close(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

#define MAX_POLL 256

/* Milliseconds of the monotonic clock. */
static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll(2) of pfd for up to timeout ms (< 0: no limit), in slices of at most
 * 200 ms between which the live progress line is redrawn when due (the
 * parallel refresh's coordinator waits here, not in pg.c's loop). */
static int poll_ticking(struct pollfd *pfd, nfds_t n, int timeout) {
  long long end = timeout < 0 ? -1 : mono_ms() + timeout;
  for (;;) {
    long long left = end < 0 ? 200 : end - mono_ms();
    if (left < 0) left = 0;
    int rc = poll(pfd, n, left > 200 ? 200 : (int)left);
    if (rc != 0 || (end >= 0 && mono_ms() >= end)) return rc;
    mv_ticker_poll();
  }
}

/* poll_read(fds [, timeout_ms]) -> { [fd] = data }: what the readable fds
 * had (up to 64 KiB each; "" at end of file or on an error). Empty after
 * timeout_ms (default: wait) or when a signal ended the wait. The progress
 * line ticks while it waits. */
static int l_poll_read(lua_State *L) {
  struct pollfd pfd[MAX_POLL];
  char buf[65536];
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  luaL_argcheck(L, n <= MAX_POLL, 1, "too many descriptors");
  int timeout = (int)luaL_optinteger(L, 2, -1);
  for (int i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    pfd[i].fd = (int)lua_tointeger(L, -1);
    pfd[i].events = POLLIN;
    pfd[i].revents = 0;
    lua_pop(L, 1);
  }
  lua_newtable(L);
  if (poll_ticking(pfd, (nfds_t)n, timeout) <= 0) return 1;
  for (int i = 0; i < n; i++) {
    if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t got;
    do got = read(pfd[i].fd, buf, sizeof buf); while (got < 0 && errno == EINTR);
    lua_pushlstring(L, buf, got > 0 ? (size_t)got : 0);
    lua_rawseti(L, -2, pfd[i].fd);
  }
  return 1;
}

/* wait_any(pids [, timeout_ms]) -> pid, exit code (128 + signal when
 * killed) of the first of pids to end, or nil after timeout_ms. Only the
 * given children are reaped (others, e.g. io.popen's, are left alone). */
static int l_wait_any(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Number timeout = luaL_optnumber(L, 2, -1), waited = 0;
  int n = (int)luaL_len(L, 1);
  /* a pid that is no positive integer would reach waitpid as 0 or -1,
   * which reap any child: refuse it before waiting at all */
  for (int i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok || lua_type(L, -1) != LUA_TNUMBER || v <= 0 || v > INT_MAX)
      return luaL_error(L, "wait_any: pid %d is not a positive integer (%s)", i, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  for (;;) {
    for (int i = 1; i <= n; i++) {
      lua_geti(L, 1, i);
      pid_t pid = (pid_t)lua_tointeger(L, -1);
      lua_pop(L, 1);
      int st = 0;
      pid_t r = waitpid(pid, &st, WNOHANG);
      if (r == pid || (r < 0 && errno == ECHILD)) {
        lua_pushinteger(L, (lua_Integer)pid);
        lua_pushinteger(L, r < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        return 2;
      }
    }
    if (n == 0 || (timeout >= 0 && waited >= timeout)) break;
    struct timespec ts = {0, 1000 * 1000}; /* a worker's exit is seen within a millisecond */
    nanosleep(&ts, NULL);
    waited += 1;
  }
  lua_pushnil(L);
  return 1;
}

/* kill(pid [, signal]) -> true | nil, message; default SIGTERM */
static int l_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = (int)luaL_optinteger(L, 2, SIGTERM);
  luaL_argcheck(L, pid > 0, 1, "a process id");
  if (kill(pid, sig) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* die_with_parent(ppid) -> true | nil, message: this process gets SIGTERM
 * (handled as a stop: the current job ends, then the process) when its
 * parent ppid dies, even of SIGKILL or SIGPIPE, which it cannot pass on;
 * at once when ppid is gone already. Linux only (elsewhere nil). */
static int l_die_with_parent(lua_State *L) {
  pid_t ppid = (pid_t)luaL_checkinteger(L, 1);
#ifdef __linux__
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  if (getppid() != ppid) raise(SIGTERM); /* it died before prctl */
  lua_pushboolean(L, 1);
  return 1;
#else
  (void)ppid;
  lua_pushnil(L);
  lua_pushliteral(L, "not supported on this system");
  return 2;
#endif
}

static const luaL_Reg proc_funcs[] = {
  {"exe_path", l_exe_path}, {"spawn", l_spawn}, {"fork_child", l_fork_child}, {"wait_any", l_wait_any}, {"kill", l_kill},
  {"fd_write", l_fd_write}, {"fd_close", l_fd_close}, {"poll_read", l_poll_read},
  {"die_with_parent", l_die_with_parent},
  {NULL, NULL}
};

/* Adds the functions to core.sys (registered before this by sys.c). */
void mv_register_proc(lua_State *L) {
  lua_getfield(L, -1, "sys");
  luaL_setfuncs(L, proc_funcs, 0);
  lua_pop(L, 1);
}
