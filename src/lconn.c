/*
 * lconn.c: the Lua binding of connections. A "matviews.conn" userdata holds
 * one PGconn (NULL once closed: closing twice is harmless, __gc and __close
 * share one function). SQL runs through pg.c only.
 */
#include <stdio.h>
#include <string.h>
#include <lauxlib.h>
#include "lconn.h"
#include "pg.h"
#include "errors.h"

/* conn: NULL once closed. pending: a connection conn:clone(true) began
 * and nothing has used yet (pg_open_like_start's state); it is completed
 * on first use, and closed when that fails. */
typedef struct { PGconn *conn; int pending; } LConn;

/* How many connection userdata hold a PGconn (open or under way). */
static int live;

int mv_conn_live(void) { return live; }

/* Completes c's connection when it is still under way; closes it when it
 * failed (conn NULL: the caller sees a closed connection). */
static void complete(LConn *c) {
  if (c->conn == NULL || !c->pending) return;
  int ok = pg_open_finish(c->conn, &c->pending);
  c->pending = 0;
  if (!ok) { pg_close(c->conn); c->conn = NULL; live--; }
}

PGconn *mv_checkconn(lua_State *L, int idx) {
  LConn *c = (LConn *)luaL_checkudata(L, idx, MV_CONN_MT);
  complete(c);
  if (c->conn == NULL) {
    mv_error_push(L, "connection is closed", NULL);
    lua_error(L);
  }
  return c->conn;
}

PGconn *mv_toconn(lua_State *L, int idx) {
  LConn *c = (LConn *)luaL_testudata(L, idx, MV_CONN_MT);
  if (c) complete(c);
  return c ? c->conn : NULL;
}

/* Converts the Lua value at idx to a text parameter kept alive on the stack
 * (pushes one value: a string, or nil for NULL). cjson.encode is upvalue 1
 * of the calling closure, used for tables. */
static const char *param_text(lua_State *L, int idx, int n) {
  char buf[64];
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    lua_pushnil(L);
    return NULL;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) { lua_pushnil(L); return NULL; }
    break;
  case LUA_TBOOLEAN:
    lua_pushstring(L, lua_toboolean(L, idx) ? "t" : "f");
    return lua_tostring(L, -1);
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(L, idx));
    else
      snprintf(buf, sizeof buf, "%.17g", (double)lua_tonumber(L, idx));
    lua_pushstring(L, buf);
    return lua_tostring(L, -1);
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len)
      luaL_error(L, "parameter $%d contains a NUL byte", n);
    lua_pushvalue(L, idx);
    return s;
  }
  case LUA_TTABLE:
    lua_getfield(L, LUA_REGISTRYINDEX, "matviews.json_encode");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1); /* cjson.encode: raises on cycles, which is right */
    return lua_tostring(L, -1);
  default:
    break;
  }
  luaL_error(L, "parameter $%d: cannot pass a %s", n, luaL_typename(L, idx));
  return NULL;
}

int mv_conn_run(lua_State *L, PGconn *conn, const char *sql, int first, int last, int as_rows) {
  int n = last >= first ? last - first + 1 : 0;
  /* n comes from the caller: the guard, the array and n keepers */
  luaL_checkstack(L, n + 3, "too many query parameters");
  PGresult **res = pg_guard(L);                   /* [guard] */
  const char **vals = (const char **)lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (int i = 0; i < n; i++)
    vals[i] = param_text(L, first + i, i + 1); /* each pushes its keeper */
  *res = pg_exec(conn, sql, n, vals);
  lua_pop(L, n + 1);                              /* [guard] */
  if (!pg_ok(*res)) {
    pg_push_error(L, conn, *res);                 /* [guard err] */
    pg_guard_clear(res);
    return lua_error(L);
  }
  if (as_rows) pg_push_rows(L, *res);             /* [guard rows] */
  else lua_pushinteger(L, (lua_Integer)pg_affected(*res));
  pg_guard_clear(res);
  return 1;
}

/* conn:query(sql, ...) -> array of rows */
static int conn_query(lua_State *L) {
  PGconn *c = mv_checkconn(L, 1);
  return mv_conn_run(L, c, luaL_checkstring(L, 2), 3, lua_gettop(L), 1);
}

/* conn:exec(sql, ...) -> affected row count */
static int conn_exec(lua_State *L) {
  PGconn *c = mv_checkconn(L, 1);
  return mv_conn_run(L, c, luaL_checkstring(L, 2), 3, lua_gettop(L), 0);
}

/* conn:describe(sql) -> array of { name, type_oid }: the columns sql
 * would return, from the server's parse analysis, without running it;
 * raises like conn:query when it does not parse or analyse. */
static int conn_describe(lua_State *L) {
  PGconn *c = mv_checkconn(L, 1);
  const char *sql = luaL_checkstring(L, 2);
  PGresult **res = pg_guard(L);                   /* [guard] */
  *res = pg_describe(c, sql);
  if (!pg_ok(*res)) {
    pg_push_error(L, c, *res);                    /* [guard err] */
    pg_guard_clear(res);
    return lua_error(L);
  }
  int nc = pg_ncols(*res);
  lua_createtable(L, nc, 0);                      /* [guard cols] */
  for (int i = 0; i < nc; i++) {
    lua_createtable(L, 0, 2);                     /* [guard cols col] */
    lua_pushstring(L, pg_colname(*res, i));
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)pg_coltype(*res, i));
    lua_setfield(L, -2, "type_oid");
    lua_rawseti(L, -2, i + 1);                    /* [guard cols] */
  }
  pg_guard_clear(res);
  return 1;
}

/* conn:script(sql): several trusted statements, no parameters */
static int conn_script(lua_State *L) {
  PGconn *c = mv_checkconn(L, 1);
  const char *sql = luaL_checkstring(L, 2);
  PGresult **res = pg_guard(L);
  *res = pg_exec_script(c, sql);
  if (!pg_ok(*res)) {
    pg_push_error(L, c, *res);
    pg_guard_clear(res);
    return lua_error(L);
  }
  pg_guard_clear(res);
  return 0;
}

/* Pushes a new connection: opened from conninfo, or with the parameters of
 * `like` (early: under way, see conn:clone and connect). Raises {message, kind =
 * "connection"} naming host and port. */
static int open_conn(lua_State *L, const char *conninfo, PGconn *like, int early) {
  char err[768];
  LConn *c = (LConn *)lua_newuserdatauv(L, sizeof(LConn), 0);
  c->conn = NULL; /* set before acquiring, so __gc is harmless */
  c->pending = 0;
  luaL_setmetatable(L, MV_CONN_MT);
  if (early && (c->conn = like ? pg_open_like_start(like, &c->pending) : pg_open_start(conninfo, &c->pending)) != NULL) {
    live++;
    return 1;
  }
  c->pending = 0;
  c->conn = like ? pg_open_like(like, err, sizeof err) : pg_open(conninfo, err, sizeof err);
  if (c->conn == NULL) {
    mv_error_push(L, err, NULL);
    lua_pushliteral(L, "connection");
    lua_setfield(L, -2, "kind"); /* the host reports these in one line */
    return lua_error(L);
  }
  live++;
  return 1;
}

/* __gc, __close and conn:close(): idempotent */
static int conn_close(lua_State *L) {
  LConn *c = (LConn *)luaL_checkudata(L, 1, MV_CONN_MT);
  if (c->conn) { pg_close(c->conn); c->conn = NULL; live--; }
  c->pending = 0;
  return 0;
}

/* conn:info() -> {host, port, dbname, user, pid, in_transaction} */
static int conn_info(lua_State *L) {
  PGconn *c = mv_checkconn(L, 1);
  lua_createtable(L, 0, 6);
  lua_pushstring(L, pg_host(c)); lua_setfield(L, -2, "host");
  lua_pushstring(L, pg_port(c)); lua_setfield(L, -2, "port");
  lua_pushstring(L, pg_db(c)); lua_setfield(L, -2, "dbname");
  lua_pushstring(L, pg_user(c)); lua_setfield(L, -2, "user");
  lua_pushinteger(L, pg_backend_pid(c)); lua_setfield(L, -2, "pid");
  lua_pushboolean(L, pg_in_transaction(c)); lua_setfield(L, -2, "in_transaction");
  return 1;
}

/* conn:quote_ident(name) -> "quoted" via PQescapeIdentifier */
static int conn_quote_ident(lua_State *L) {
  PGconn *c = mv_checkconn(L, 1);
  char *q = pg_quote_ident(c, luaL_checkstring(L, 2));
  if (q == NULL) {
    mv_error_push(L, pg_errmsg(c, NULL), NULL);
    return lua_error(L);
  }
  lua_pushstring(L, q);
  pg_free(q);
  return 1;
}

/* conn:is_open() */
static int conn_is_open(lua_State *L) {
  LConn *c = (LConn *)luaL_checkudata(L, 1, MV_CONN_MT);
  complete(c);
  lua_pushboolean(L, c->conn != NULL);
  return 1;
}

static int conn_tostring(lua_State *L) {
  LConn *c = (LConn *)luaL_checkudata(L, 1, MV_CONN_MT);
  complete(c);
  if (c->conn) lua_pushfstring(L, "matviews.conn (%s, pid %d)", pg_db(c->conn), pg_backend_pid(c->conn));
  else lua_pushliteral(L, "matviews.conn (closed)");
  return 1;
}

/* conn:clone([early]) -> a new connection with the same parameters
 * (server, database, user, password): jobs record runs on their own
 * connection. early: return at once, the connection under way (the
 * server starts its backend meanwhile), completed on first use; when that
 * fails the clone is closed (is_open false), and a clone made then
 * reports why. */
static int conn_clone(lua_State *L) {
  int early = lua_toboolean(L, 2);
  LConn *c = (LConn *)luaL_checkudata(L, 1, MV_CONN_MT);
  /* an early clone of a connection still under way does not wait for it:
   * both backends start side by side */
  return open_conn(L, NULL, early && c->conn && c->pending ? c->conn : mv_checkconn(L, 1), early);
}

/* conn:is_connected(): false once the server side is lost */
static int conn_is_connected(lua_State *L) {
  LConn *c = (LConn *)luaL_checkudata(L, 1, MV_CONN_MT);
  complete(c);
  lua_pushboolean(L, pg_connected(c->conn));
  return 1;
}

/* slot_wait(ms): how long connect and clone wait while the server has no
 * free connection slot (0: fail at once). */
static int l_slot_wait(lua_State *L) {
  pg_set_slot_wait((long)luaL_checkinteger(L, 1));
  return 0;
}

/* slot_refused(message) -> whether a connection error says the server
 * has no free connection slot (too many clients, a CONNECTION LIMIT). */
static int l_slot_refused(lua_State *L) {
  lua_pushboolean(L, pg_slot_refusal(luaL_checkstring(L, 1)));
  return 1;
}

/* connect(conninfo [, early]) -> conn; raises {message} naming host and
 * port. early: return at once, the connection under way, completed on
 * first use (as conn:clone's); one that then fails is closed (is_open
 * false), and connecting again says why. */
static int l_connect(lua_State *L) {
  return open_conn(L, luaL_optstring(L, 1, ""), NULL, lua_toboolean(L, 2));
}

static const luaL_Reg conn_methods[] = {
  {"query", conn_query}, {"exec", conn_exec}, {"script", conn_script}, {"describe", conn_describe}, {"close", conn_close},
  {"info", conn_info}, {"quote_ident", conn_quote_ident}, {"is_open", conn_is_open},
  {"clone", conn_clone}, {"is_connected", conn_is_connected},
  {NULL, NULL}
};

void mv_register_conn(lua_State *L) {
  if (luaL_newmetatable(L, MV_CONN_MT)) {          /* [core mt] */
    luaL_newlib(L, conn_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_close); lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, conn_close); lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, conn_tostring); lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);                                    /* [core] */
  lua_pushcfunction(L, l_connect);
  lua_setfield(L, -2, "connect");
  lua_pushcfunction(L, l_slot_wait);
  lua_setfield(L, -2, "slot_wait");
  lua_pushcfunction(L, l_slot_refused);
  lua_setfield(L, -2, "slot_refused");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
}
