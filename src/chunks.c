/*
 * chunks.c: the compiled form of the host's own Lua modules, kept between
 * runs. Every process (each CLI command, each pool worker, each spec's
 * host) requires some fifty modules of lua/matviews, about 300 kB of
 * source: parsing them took about 7 ms of each start, loading their
 * compiled form (lua_dump, debug information kept, so tracebacks and
 * error lines are the same) about 0.5 ms.
 *
 * A searcher placed before Lua's own file searcher finds a module under
 * the host's Lua directory as package.path would (NAME.lua, then
 * NAME/init.lua) and loads it from DIR/../build/luac/NAME.luac when that
 * file was made from the source as it is now: same path, size, inode and
 * modification time (to the nanosecond), recorded in the file's header.
 * Anything else (no such file, another source, a chunk this Lua cannot
 * load) loads the source and writes the file again, through a temporary
 * file renamed into place, so processes starting side by side never read
 * half a file. The directory is used only where DIR/../build exists (the
 * build tree, which `make` creates): an installed host parses its source.
 * Memory: the file's contents are read into a buffer freed before return.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
#include "chunks.h"

#define MAGIC "MVLUAC1"

/* What a compiled file was made from: the source file's identity. */
typedef struct {
  char magic[8];
  int64_t mtime_sec, mtime_nsec, size, ino;
  uint32_t pathlen; /* then the source's path, then the dump */
} Header;

typedef struct { char *data; size_t len, cap; } Buf;

/* lua_dump's writer: appends to a Buf. */
static int buf_write(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  Buf *b = ud;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 65536;
    while (cap < b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return 1;
    b->data = d, b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

/* The header of src (path, stat st). */
static Header header_of(const char *src, const struct stat *st) {
  Header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, MAGIC, sizeof h.magic);
  h.mtime_sec = (int64_t)st->st_mtim.tv_sec, h.mtime_nsec = (int64_t)st->st_mtim.tv_nsec;
  h.size = (int64_t)st->st_size, h.ino = (int64_t)st->st_ino;
  h.pathlen = (uint32_t)strlen(src);
  return h;
}

/* Reads the whole of path into *out (malloc'd); -1 when it cannot. */
static long read_all(const char *path, char **out) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  Buf b = { NULL, 0, 0 };
  char chunk[16384];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    if (buf_write(NULL, chunk, n, &b)) { free(b.data); fclose(f); return -1; }
  fclose(f);
  *out = b.data;
  return (long)b.len;
}

/* Pushes the chunk of cache when it was made from src as it is now;
 * returns 1, else 0 with nothing pushed. */
static int load_cached(lua_State *L, const char *cache, const char *src, const Header *want) {
  char *data = NULL;
  long n = read_all(cache, &data);
  size_t skip = sizeof(Header) + want->pathlen;
  int ok = n > (long)skip && memcmp(data, want, sizeof(Header)) == 0 &&
           memcmp(data + sizeof(Header), src, want->pathlen) == 0;
  if (ok && luaL_loadbufferx(L, data + skip, (size_t)n - skip, src, "b") != LUA_OK) {
    lua_pop(L, 1); /* a chunk this Lua cannot load: the source is parsed */
    ok = 0;
  }
  free(data);
  return ok;
}

/* Writes the function on top of the stack, compiled from src, to cache
 * (best effort: a cache that cannot be written is only slower). */
static void store(lua_State *L, const char *cache, const char *src, const Header *h) {
  Buf b = { NULL, 0, 0 };
  if (buf_write(L, h, sizeof *h, &b) || buf_write(L, src, h->pathlen, &b) || lua_dump(L, buf_write, &b, 0)) {
    free(b.data);
    return;
  }
  char tmp[PATH_MAX + 32];
  snprintf(tmp, sizeof tmp, "%s.%ld.tmp", cache, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  int ok = f && fwrite(b.data, 1, b.len, f) == b.len;
  if (f && fclose(f) != 0) ok = 0;
  if (!ok || rename(tmp, cache) != 0) unlink(tmp);
  free(b.data);
}

/* The module's source under dir (NAME.lua or NAME/init.lua) into src;
 * 1 with its stat in st, else 0. */
static int find_source(const char *dir, const char *name, char *src, size_t len, struct stat *st) {
  char rel[PATH_MAX];
  snprintf(rel, sizeof rel, "%s", name);
  for (char *p = rel; *p; p++) if (*p == '.') *p = '/';
  if ((size_t)snprintf(src, len, "%s/%s.lua", dir, rel) < len && stat(src, st) == 0 && S_ISREG(st->st_mode)) return 1;
  return (size_t)snprintf(src, len, "%s/%s/init.lua", dir, rel) < len && stat(src, st) == 0 && S_ISREG(st->st_mode);
}

/* The searcher: (name) -> loader, source path | nothing (not one of ours).
 * Upvalues: the Lua directory, the cache directory ("" for none). */
static int searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *dir = lua_tostring(L, lua_upvalueindex(1));
  const char *cdir = lua_tostring(L, lua_upvalueindex(2));
  char src[PATH_MAX], cache[PATH_MAX];
  struct stat st;
  if (strchr(name, '/') || !find_source(dir, name, src, sizeof src, &st)) return 0;
  Header h = header_of(src, &st);
  int use = *cdir && (size_t)snprintf(cache, sizeof cache, "%s/%s.luac", cdir, name) < sizeof cache;
  if (use && load_cached(L, cache, src, &h)) { lua_pushstring(L, src); return 2; }
  int status = luaL_loadfilex(L, src, "t");
  if (status != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, src, lua_tostring(L, -1));
  if (use) store(L, cache, src, &h);
  lua_pushstring(L, src);
  return 2;
}

/* Places the searcher for the modules under dir second in
 * package.searchers (after preload), caching where dir/../build exists. */
void mv_chunks_install(lua_State *L, const char *dir) {
  char cdir[PATH_MAX] = "", parent[PATH_MAX];
  struct stat st;
  snprintf(parent, sizeof parent, "%s", dir);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = '\0';
    char build[PATH_MAX + 8];
    snprintf(build, sizeof build, "%s/build", parent);
    if (stat(build, &st) == 0 && S_ISDIR(st.st_mode) && strlen(build) + 6 < sizeof cdir) {
      snprintf(cdir, sizeof cdir, "%s/luac", build);
      if (mkdir(cdir, 0755) != 0 && errno != EEXIST) cdir[0] = '\0';
    }
  }
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");                  /* [package searchers] */
  for (lua_Integer i = (lua_Integer)luaL_len(L, -1); i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);                       /* shift up, preload stays first */
  }
  lua_pushstring(L, dir);
  lua_pushstring(L, cdir);
  lua_pushcclosure(L, searcher, 2);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
}
