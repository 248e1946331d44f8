/*
 * chunks.c: the compiled form of the host's own Lua modules, kept between
 * runs. Every process (each CLI command, each pool worker, each spec's
 * host) requires some fifty modules of lua/matviews, about 300 kB of
 * source: parsing them took about 7 ms of each start, loading their
 * compiled form (lua_dump, debug information kept, so tracebacks and
 * error lines are the same) about 0.5 ms.
 *
 * A searcher placed before Lua's own file searcher finds a module's file
 * as that one would (package.searchpath over package.path: the host's own
 * modules first, then argparse and the others of the system) and loads it
 * from CACHE/NAME.luac when that file was made from the source as it is
 * now: same path, size, inode and modification time (to the nanosecond),
 * recorded in the file's header.
 * Anything else (no such file, another source, a chunk this Lua cannot
 * load) loads the source and writes the file again, through a temporary
 * file renamed into place, so processes starting side by side never read
 * half a file. CACHE is DIR/../build/luac in a build tree (DIR: the host's
 * Lua directory), DIR/../luac in an installed one (`make install` makes
 * and fills it); without either, sources are parsed as Lua does.
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

/* The searcher: (name) -> loader, source path | nothing (no such file on
 * package.path: Lua's own searchers go on and say where they looked).
 * Upvalue: the cache directory. */
static int searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *cdir = lua_tostring(L, lua_upvalueindex(1));
  char cache[PATH_MAX];
  struct stat st;
  if (strchr(name, '/') || (size_t)snprintf(cache, sizeof cache, "%s/%s.luac", cdir, name) >= sizeof cache)
    return 0; /* Lua's file searcher loads it */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchpath");
  lua_pushvalue(L, 1);
  lua_getfield(L, -3, "path");
  /* a script that took package.searchpath or package.path away: Lua's own searcher says so */
  if (!lua_isfunction(L, -3) || !lua_isstring(L, -1)) return 0;
  lua_call(L, 2, 1);                                 /* [package path|nil] */
  const char *src = lua_tostring(L, -1);
  if (src == NULL || stat(src, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  Header h = header_of(src, &st);
  if (load_cached(L, cache, src, &h)) { lua_pushstring(L, src); return 2; }
  if (luaL_loadfilex(L, src, "t") != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, src, lua_tostring(L, -1));
  store(L, cache, src, &h);
  lua_pushstring(L, src);
  return 2;
}

/* Places the searcher second in package.searchers (after preload), when
 * there is a cache directory: DIR/../build/luac in a build tree (made
 * here), else DIR/../luac if an install made it. */
void mv_chunks_install(lua_State *L, const char *dir) {
  char cdir[PATH_MAX];
  struct stat st;
  const char *slash = strrchr(dir, '/');
  int plen = slash ? (int)(slash - dir) : 0;
  if (plen <= 0 || (size_t)snprintf(cdir, sizeof cdir, "%.*s/build", plen, dir) + 5 >= sizeof cdir) return;
  if (stat(cdir, &st) == 0 && S_ISDIR(st.st_mode)) {
    strcat(cdir, "/luac");
    if (mkdir(cdir, 0755) != 0 && errno != EEXIST) return;
  } else if ((size_t)snprintf(cdir, sizeof cdir, "%.*s/luac", plen, dir) >= sizeof cdir
             || stat(cdir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return;
  }
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");                  /* [package searchers] */
  for (lua_Integer i = (lua_Integer)luaL_len(L, -1); i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);                       /* shift up, preload stays first */
  }
  lua_pushstring(L, cdir);
  lua_pushcclosure(L, searcher, 1);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
}
