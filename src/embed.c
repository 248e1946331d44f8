/*
 * embed.c: the embedded default database. A local cluster under a
 * project-local directory (BASE/pgdata, Unix socket only), created with
 * initdb and started with pg_ctl from the installed server. As root the
 * server programs run as the postgres OS user (the server refuses root), so
 * the data directory must be reachable by that user: when BASE is not, the
 * cluster lives under /var/tmp/matviews-<hash of BASE> instead. Such shared
 * places (that directory, the /tmp socket directory of a long path) are
 * predictable, so whoever made them first would control pgdata and the
 * files we write: they are used only when they are real directories owned
 * by us (or the server's user) and writable by nobody else, and every file
 * is opened with O_NOFOLLOW.
 * Starting is serialised with flock on BASE/embed.lock, so two processes
 * starting it at once do not both run initdb.
 * Registers embed_ensure / embed_stop / embed_status in the core table.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <lauxlib.h>
#include "pg.h"
#include "errors.h"

#ifndef MV_PG_BINDIR
#define MV_PG_BINDIR "/usr/lib/postgresql/15/bin"
#endif
#define EMBED_PORT "5432"

typedef struct {
  char base[3000], data[PATH_MAX], sock[PATH_MAX], lock[PATH_MAX], log[PATH_MAX];
  char bindir[PATH_MAX];
  int as_root;
  int shared_base, shared_sock; /* in /var/tmp or /tmp: checked before use */
  uid_t uid;
  gid_t gid;
} Embed;

/* FNV-1a, to name fallback directories after the project path. */
static unsigned long path_hash(const char *s) {
  unsigned long h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h & 0xffffffffu;
}

/* 1 when every ancestor of path lets others traverse it. */
static int reachable_by_others(const char *path) {
  char buf[PATH_MAX];
  struct stat st;
  snprintf(buf, sizeof buf, "%s", path);
  for (;;) {
    if (stat(buf, &st) == 0 && !(st.st_mode & S_IXOTH)) return 0;
    char *slash = strrchr(buf, '/');
    if (slash == NULL || slash == buf) break;
    *slash = '\0';
  }
  return 1;
}

/* Fills the paths for base directory dir. Returns 0, or -1 with err set. */
static int embed_paths(Embed *e, const char *dir, char *err, size_t errlen) {
  char abs[PATH_MAX];
  memset(e, 0, sizeof *e);
  if (dir[0] == '/') snprintf(abs, sizeof abs, "%s", dir);
  else {
    char cwd[2048];
    if (getcwd(cwd, sizeof cwd) == NULL) { snprintf(err, errlen, "getcwd: %s", strerror(errno)); return -1; }
    snprintf(abs, sizeof abs, "%s/%.2000s", cwd, dir);
  }
  e->as_root = geteuid() == 0;
  if (e->as_root) {
    struct passwd *pw = getpwnam("postgres");
    if (pw == NULL) { snprintf(err, errlen, "running as root needs the postgres OS user (install postgresql)"); return -1; }
    e->uid = pw->pw_uid;
    e->gid = pw->pw_gid;
  }
  if (strlen(abs) >= 2900) { snprintf(err, errlen, "path too long: %.200s...", abs); return -1; }
  snprintf(e->base, sizeof e->base, "%.2900s", abs);
  if (e->as_root && !reachable_by_others(abs)) {
    snprintf(e->base, sizeof e->base, "/var/tmp/matviews-%08lx", path_hash(abs));
    e->shared_base = 1;
  }
  snprintf(e->data, sizeof e->data, "%s/pgdata", e->base);
  snprintf(e->lock, sizeof e->lock, "%s/embed.lock", e->base);
  snprintf(e->log, sizeof e->log, "%s/embed.log", e->base);
  if (strlen(e->data) + sizeof "/.s.PGSQL." EMBED_PORT < 100)
    snprintf(e->sock, sizeof e->sock, "%s", e->data);
  else {
    snprintf(e->sock, sizeof e->sock, "/tmp/matviews-sock-%08lx", path_hash(abs));
    e->shared_sock = 1;
  }
  const char *bin = getenv("MATVIEWS_PG_BINDIR");
  snprintf(e->bindir, sizeof e->bindir, "%s", bin && *bin ? bin : MV_PG_BINDIR);
  return 0;
}

/* Writes the conninfo for the socket into out, single-quoting the path. */
static void embed_conninfo(const Embed *e, char *out, size_t outlen) {
  char q[PATH_MAX * 2];
  size_t j = 0;
  for (const char *p = e->sock; *p && j + 2 < sizeof q; p++) {
    if (*p == '\'' || *p == '\\') q[j++] = '\\';
    q[j++] = *p;
  }
  q[j] = '\0';
  snprintf(out, outlen, "host='%s' port=" EMBED_PORT " dbname=postgres user=postgres", q);
}

/* Drops PG* variables (PGPORT, PGDATA, ...) meant for clients, in the child:
 * the server programs must only see the settings we give them. */
static void clear_pg_env(void) {
  extern char **environ;
  char name[128];
  for (int again = 1; again;) {
    again = 0;
    for (char **e = environ; e && *e; e++) {
      if (strncmp(*e, "PG", 2) != 0) continue;
      size_t n = strcspn(*e, "=");
      if (n >= sizeof name) continue;
      memcpy(name, *e, n);
      name[n] = '\0';
      unsetenv(name);
      again = 1;
      break;
    }
  }
}

/* Runs bindir/prog with args (NULL-terminated), as postgres when root,
 * output appended to the embed log, in its own session. Returns exit code. */
static int run_prog(const Embed *e, const char *prog, const char *const *args) {
  char path[PATH_MAX + 64];
  const char *argv[16];
  int n = 0;
  snprintf(path, sizeof path, "%s/%s", e->bindir, prog);
  argv[n++] = path;
  for (; *args && n < 15; args++) argv[n++] = *args;
  argv[n] = NULL;
  int logfd = open(e->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
  pid_t pid = fork();
  if (pid < 0) { if (logfd >= 0) close(logfd); return -1; }
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    if (logfd >= 0) { dup2(logfd, 1); dup2(logfd, 2); }
    /* the server must not inherit our pipes: refuse to start if they stay */
    if (close_range(3, ~0U, 0) != 0) _exit(126);
    clear_pg_env();
    setsid();
    if (chdir(e->base) != 0) _exit(126);
    if (e->as_root && (setgroups(0, NULL) != 0 || setgid(e->gid) != 0 || setuid(e->uid) != 0)) _exit(126);
    execv(path, (char *const *)argv);
    _exit(127);
  }
  if (logfd >= 0) close(logfd);
  int status = 0;
  pid_t got;
  while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {}
  if (got < 0) return 128; /* the child's outcome is unknown: not a success */
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* A directory in a shared place must be private: a real directory (not a
 * symlink), owned by us or the server's user, writable by no one else.
 * Returns 0 (also when it does not exist yet), or -1 with err set. */
static int private_dir(const Embed *e, const char *dir, char *err, size_t errlen) {
  struct stat st;
  const char *why = NULL;
  char buf[64];
  if (lstat(dir, &st) != 0) {
    if (errno == ENOENT) return 0;
    snprintf(err, errlen, "cannot use %s: %s", dir, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) why = "it is not a directory";
  else if (st.st_uid != geteuid() && !(e->as_root && st.st_uid == e->uid)) {
    snprintf(buf, sizeof buf, "it is owned by uid %u", (unsigned)st.st_uid);
    why = buf;
  } else if (st.st_mode & (S_IWGRP | S_IWOTH)) why = "others may write to it";
  if (why == NULL) return 0;
  snprintf(err, errlen, "refusing to use %s for the embedded database: %s (remove it, or set MATVIEWS_HOME"
           " to a directory of your own)", dir, why);
  return -1;
}

/* Checks the shared directories e uses (see the header comment). */
static int check_shared(const Embed *e, char *err, size_t errlen) {
  if (e->shared_base && private_dir(e, e->base, err, errlen) != 0) return -1;
  if (e->shared_sock && private_dir(e, e->sock, err, errlen) != 0) return -1;
  return 0;
}

/* Makes dir (mode); for_server: owned by the server's user when root. An
 * existing shared one is checked before it is taken over. */
static int make_dir(const Embed *e, const char *dir, mode_t mode, int for_server, char *err, size_t errlen) {
  if (mkdir(dir, mode) != 0) {
    if (errno != EEXIST) { snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno)); return -1; }
    if (check_shared(e, err, errlen) != 0) return -1;
  }
  if (for_server && e->as_root && chown(dir, e->uid, e->gid) != 0) {
    snprintf(err, errlen, "cannot give %s to the server's user: %s", dir, strerror(errno));
    return -1;
  }
  return 0;
}

/* Appends the settings that make the cluster socket-only, in our socket dir. */
static int write_settings(const Embed *e) {
  char conf[PATH_MAX + 32];
  snprintf(conf, sizeof conf, "%s/postgresql.conf", e->data);
  int fd = open(conf, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
  FILE *f = fd >= 0 ? fdopen(fd, "a") : NULL;
  if (f == NULL) { if (fd >= 0) close(fd); return -1; }
  fprintf(f, "\n# matviews embedded cluster\nlisten_addresses = ''\nport = " EMBED_PORT "\nunix_socket_directories = '");
  for (const char *p = e->sock; *p; p++) { if (*p == '\'') fputc('\'', f); fputc(*p, f); }
  fprintf(f, "'\n");
  return fclose(f);
}

/* initdb when needed, then pg_ctl start; called with the lock held. */
static int embed_start(const Embed *e, char *err, size_t errlen) {
  char version[PATH_MAX + 16];
  snprintf(version, sizeof version, "%s/PG_VERSION", e->data);
  if (access(version, F_OK) != 0) {
    if (make_dir(e, e->data, 0700, 1, err, errlen) != 0) return -1;
    const char *args[] = {"-D", e->data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", NULL};
    if (run_prog(e, "initdb", args) != 0 || write_settings(e) != 0) {
      snprintf(err, errlen, "initdb failed for %s (see %s)", e->data, e->log);
      return -1;
    }
  }
  if (strcmp(e->sock, e->data) != 0 && make_dir(e, e->sock, 0755, 1, err, errlen) != 0) return -1;
  char logarg[PATH_MAX + 16];
  snprintf(logarg, sizeof logarg, "%s/server.log", e->data);
  const char *args[] = {"-D", e->data, "-l", logarg, "-w", "-t", "60", "start", NULL};
  if (run_prog(e, "pg_ctl", args) != 0) {
    snprintf(err, errlen, "could not start the embedded server in %s (see %s/server.log)", e->data, e->data);
    return -1;
  }
  return 0;
}

/* Ensures the cluster runs; writes its conninfo. Fast path: one PQping. */
static int embed_ensure(const Embed *e, char *ci, size_t cilen, char *err, size_t errlen) {
  embed_conninfo(e, ci, cilen);
  if (check_shared(e, err, errlen) != 0) return -1; /* before its socket is trusted */
  if (pg_ping(ci)) return 0;
  if (make_dir(e, e->base, 0755, 0, err, errlen) != 0) return -1;
  int fd = open(e->lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) { snprintf(err, errlen, "cannot open %s: %s", e->lock, strerror(errno)); return -1; }
  while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {}
  int rc = pg_ping(ci) ? 0 : embed_start(e, err, errlen);
  close(fd); /* releases the lock */
  return rc;
}

/* Pushes {data_dir, socket_dir, conninfo, url, running} for e. */
static void push_status(lua_State *L, const Embed *e, int running) {
  char ci[PATH_MAX * 2 + 64];
  embed_conninfo(e, ci, sizeof ci);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, e->data); lua_setfield(L, -2, "data_dir");
  lua_pushstring(L, e->sock); lua_setfield(L, -2, "socket_dir");
  lua_pushstring(L, ci); lua_setfield(L, -2, "conninfo");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "postgresql://postgres@/postgres?host=");
  for (const char *p = e->sock; *p; p++) {
    if (*p == '/') luaL_addstring(&b, "%2F");
    else if (*p == '%' || *p == '&' || *p == ' ' || *p == '?' || *p == '#') {
      char hex[4]; snprintf(hex, sizeof hex, "%%%02X", (unsigned char)*p); luaL_addstring(&b, hex);
    } else luaL_addchar(&b, *p);
  }
  luaL_addstring(&b, "&port=" EMBED_PORT);
  luaL_pushresult(&b);
  lua_setfield(L, -2, "url");
  lua_pushboolean(L, running); lua_setfield(L, -2, "running");
}

/* Raises a start-up failure: reported by the host in one line, like a
 * connection failure. */
static int raise_startup(lua_State *L, const char *msg) {
  mv_error_push(L, msg, NULL);
  lua_pushliteral(L, "connection");
  lua_setfield(L, -2, "kind");
  return lua_error(L);
}

/* Resolves the paths for the base dir argument or raises. */
static void check_paths(lua_State *L, Embed *e) {
  char err[512];
  if (embed_paths(e, luaL_checkstring(L, 1), err, sizeof err) != 0 || check_shared(e, err, sizeof err) != 0)
    raise_startup(L, err);
}

/* embed_ensure(dir) -> conninfo; starts (and creates) the cluster if needed */
static int l_embed_ensure(lua_State *L) {
  Embed *e = (Embed *)lua_newuserdatauv(L, sizeof(Embed), 0);
  char ci[PATH_MAX * 2 + 64], err[PATH_MAX * 2 + 128];
  check_paths(L, e);
  if (embed_ensure(e, ci, sizeof ci, err, sizeof err) != 0)
    return raise_startup(L, err);
  lua_pushstring(L, ci);
  return 1;
}

/* embed_status(dir) -> {data_dir, socket_dir, conninfo, url, running} */
static int l_embed_status(lua_State *L) {
  Embed *e = (Embed *)lua_newuserdatauv(L, sizeof(Embed), 0);
  char ci[PATH_MAX * 2 + 64];
  check_paths(L, e);
  embed_conninfo(e, ci, sizeof ci);
  push_status(L, e, pg_ping(ci));
  return 1;
}

/* embed_stop(dir) -> true when it was running and is now stopped */
static int l_embed_stop(lua_State *L) {
  Embed *e = (Embed *)lua_newuserdatauv(L, sizeof(Embed), 0);
  char ci[PATH_MAX * 2 + 64];
  check_paths(L, e);
  embed_conninfo(e, ci, sizeof ci);
  if (!pg_ping(ci)) { lua_pushboolean(L, 0); return 1; }
  const char *args[] = {"-D", e->data, "-m", "fast", "-w", "stop", NULL};
  if (run_prog(e, "pg_ctl", args) != 0) {
    mv_error_push(L, "pg_ctl stop failed (see the embed log)", NULL);
    return lua_error(L);
  }
  lua_pushboolean(L, 1);
  return 1;
}

void mv_register_embed(lua_State *L) {
  lua_pushcfunction(L, l_embed_ensure); lua_setfield(L, -2, "embed_ensure");
  lua_pushcfunction(L, l_embed_status); lua_setfield(L, -2, "embed_status");
  lua_pushcfunction(L, l_embed_stop); lua_setfield(L, -2, "embed_stop");
}
