/*
 * json.c: JSON text of a Lua value, as lua-cjson's cjson.encode writes it
 * with its default settings (the run recorder's meta, once per begin and
 * finish: cjson's own encoder formats every number with snprintf, and
 * walked each table twice through the Lua API's C-string entry points).
 *
 * The same text, byte for byte: keys in lua_next order; a table whose keys
 * are all whole numbers >= 1 is an array (holes written null), unless it
 * is excessively sparse (largest index > 10 and over twice the number of
 * items), which cjson refuses; an empty table is {}; numbers as "%.14g"
 * (whole numbers below 1e14 written directly, which prints the same);
 * number keys quoted; NaN and infinities refused; nil and the NULL light
 * userdata (mv.null) null; strings escaped with cjson's table (control
 * characters, '"', '\\', '/' and DEL); nesting deeper than 1000 refused;
 * any other type refused.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "core.h"

#define JSON_MAX_DEPTH 1000
#define JSON_SPARSE_RATIO 2
#define JSON_SPARSE_SAFE 10

typedef struct {
  char *p;
  size_t n, cap;
  int failed;                  /* out of memory */
} Out;

/* Makes room for more bytes; 0 when it cannot. */
static int room(Out *o, size_t more) {
  if (o->n + more <= o->cap) return 1;
  size_t cap = o->cap ? o->cap : 1024;
  while (cap < o->n + more) cap *= 2;
  char *p = realloc(o->p, cap);
  if (p == NULL) { o->failed = 1; return 0; }
  o->p = p;
  o->cap = cap;
  return 1;
}

static void put(Out *o, const char *s, size_t len) {
  if (room(o, len)) { memcpy(o->p + o->n, s, len); o->n += len; }
}

static void put_char(Out *o, char c) {
  if (room(o, 1)) o->p[o->n++] = c;
}

/* A number as cjson writes it; 0 for NaN and infinities. */
static int put_number(Out *o, lua_State *L, int idx) {
  char buf[40];
  if (lua_isinteger(L, idx)) {
    lua_Integer i = lua_tointeger(L, idx);
    if (i > -100000000000000LL && i < 100000000000000LL) {  /* %.14g prints these digit for digit */
      char *e = buf + sizeof buf, *s = e;
      unsigned long long u = i < 0 ? (unsigned long long)(-i) : (unsigned long long)i;
      do { *--s = (char)('0' + u % 10); u /= 10; } while (u);
      if (i < 0) *--s = '-';
      put(o, s, (size_t)(e - s));
      return 1;
    }
  }
  double d = lua_tonumber(L, idx);
  if (isnan(d) || isinf(d)) return 0;
  int len = snprintf(buf, sizeof buf, "%.14g", d);
  put(o, buf, (size_t)len);
  return 1;
}

/* Whether byte c is written as it is (cjson escapes the others). */
static int plain_byte(unsigned char c) {
  return c >= 0x20 && c != '"' && c != '\\' && c != '/' && c != 0x7f;
}

static void put_string(Out *o, lua_State *L, int idx) {
  static const char hex[] = "0123456789abcdef";
  static unsigned char plain[256];
  static int plain_ready;
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (!plain_ready) {
    for (int c = 0; c < 256; c++) plain[c] = (unsigned char)plain_byte((unsigned char)c);
    plain_ready = 1;
  }
  if (!room(o, len * 6 + 2)) return;
  char *w = o->p + o->n;
  *w++ = '"';
  for (size_t i = 0; i < len; i++) {
    size_t run = i;
    while (run < len && plain[(unsigned char)s[run]]) run++;
    if (run > i) { memcpy(w, s + i, run - i); w += run - i; i = run; if (i == len) break; }
    unsigned char c = (unsigned char)s[i];
    *w++ = '\\';
    switch (c) {
    case '"': *w++ = '"'; break;
    case '\\': *w++ = '\\'; break;
    case '/': *w++ = '/'; break;
    case '\b': *w++ = 'b'; break;
    case '\t': *w++ = 't'; break;
    case '\n': *w++ = 'n'; break;
    case '\f': *w++ = 'f'; break;
    case '\r': *w++ = 'r'; break;
    default: *w++ = 'u'; *w++ = '0'; *w++ = '0'; *w++ = hex[c >> 4]; *w++ = hex[c & 15];
    }
  }
  *w++ = '"';
  o->n = (size_t)(w - o->p);
}

/* The table at idx as an array: its largest index, 0 or less when it is
 * empty or not an array (an object), -1 when it is an excessively sparse
 * one. The largest index is an int, as cjson keeps it (an index past
 * INT_MAX turns it to INT_MIN there, and the table into an object). */
static int array_length(lua_State *L, int idx, int *sparse) {
  int max = 0, items = 0;
  *sparse = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) == LUA_TNUMBER) {
      double k = lua_tonumber(L, -2);
      if (floor(k) == k && k >= 1) {
        if (k > max) max = k > INT_MAX ? INT_MIN : (int)k;
        items++;
        lua_pop(L, 1);
        continue;
      }
    }
    lua_pop(L, 2);
    return 0;
  }
  if ((long long)max > (long long)items * JSON_SPARSE_RATIO && max > JSON_SPARSE_SAFE) *sparse = 1;
  return max;
}

static int put_value(Out *o, lua_State *L, int idx, int depth);

static int put_table(Out *o, lua_State *L, int idx, int depth) {
  if (depth > JSON_MAX_DEPTH || !lua_checkstack(L, 3)) return 0;
  int sparse, n = array_length(L, idx, &sparse);
  if (sparse) return 0;
  if (n > 0) {
    put_char(o, '[');
    for (int i = 1; i <= n; i++) {
      if (i > 1) put_char(o, ',');
      lua_rawgeti(L, idx, (lua_Integer)i);
      int ok = put_value(o, L, lua_gettop(L), depth);
      lua_pop(L, 1);
      if (!ok) return 0;
    }
    put_char(o, ']');
    return 1;
  }
  put_char(o, '{');
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (!first) put_char(o, ',');
    first = 0;
    int kt = lua_type(L, -2), ok = 1;
    if (kt == LUA_TNUMBER) {
      put_char(o, '"');
      ok = put_number(o, L, -2);
      put(o, "\":", 2);
    } else if (kt == LUA_TSTRING) {
      put_string(o, L, -2);
      put_char(o, ':');
    } else ok = 0;
    if (ok) ok = put_value(o, L, lua_gettop(L), depth);
    lua_pop(L, 1);
    if (!ok) { lua_pop(L, 1); return 0; }
  }
  put_char(o, '}');
  return 1;
}

static int put_value(Out *o, lua_State *L, int idx, int depth) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: put_string(o, L, idx); return 1;
  case LUA_TNUMBER: return put_number(o, L, idx);
  case LUA_TBOOLEAN: if (lua_toboolean(L, idx)) put(o, "true", 4); else put(o, "false", 5); return 1;
  case LUA_TNIL: put(o, "null", 4); return 1;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) != NULL) return 0;
    put(o, "null", 4);
    return 1;
  case LUA_TTABLE: return put_table(o, L, idx, depth + 1);
  default: return 0;
  }
}

/* Pushes the JSON text of the value at idx and returns 1, or returns 0
 * (nothing pushed) when cjson would refuse the value. */
static int json_push(lua_State *L, int idx) {
  static Out o;                /* kept between calls: its buffer is reused */
  idx = lua_absindex(L, idx);
  o.n = 0;
  o.failed = 0;
  int top = lua_gettop(L);
  int ok = put_value(&o, L, idx, 0);
  lua_settop(L, top);
  if (!ok || o.failed) return 0;
  lua_pushlstring(L, o.p, o.n);
  return 1;
}

int mv_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  if (!json_push(L, 1)) lua_pushnil(L);
  return 1;
}

void mv_register_json(lua_State *L) {
  lua_pushcfunction(L, mv_json_encode);
  lua_setfield(L, -2, "json_encode");
}
