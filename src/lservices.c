/*
 * lservices.c: the Lua binding of the view services. Registers into
 * matviews.core: services.{create_view, regular_refresh, concurrent_refresh,
 * swap_refresh, delete_view}(defn_table, opts), validate_name(name) and
 * validate_sql(sql). The C services see only an MvDefn/MvOpts built here;
 * the Lua wrapper (lua/matviews/init.lua) turns names and ids into tables
 * and supplies the default connection.
 * Memory: definition strings stay owned by the caller's tables (not modified
 * while a service runs); arrays of them live in userdata on the stack; the
 * MvResp is a userdata whose __gc frees what the service malloc'd, so a Lua
 * error while building the response table leaks nothing.
 */
#include <string.h>
#include <strings.h>
#include <lauxlib.h>
#include "core.h"
#include "errors.h"
#include "lconn.h"
#include "svc.h"
#include "validate.h"
#include "vocab.h"
#include "swap.h"
#include "pg.h"

#define RESP_MT "matviews.svcresp"

enum { REQ_CREATE = 1, REQ_DELETE = 2, REQ_SWAP = 4 };

/* Raises a matviews error (no C memory is owned when this is called). */
static int raise_msg(lua_State *L, const char *msg) {
  mv_error_push(L, msg, NULL);
  return lua_error(L);
}

/* The string at the top of the stack and its length; notes the field in
 * *nul_field (when not NULL) if it holds a NUL byte (C would see a shorter
 * string). Name and SQL are checked with their length instead. */
static const char *checked_string(lua_State *L, const char *field, size_t *len, const char **nul_field) {
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  if (nul_field && strlen(s) != n && *nul_field == NULL) *nul_field = field;
  if (len) *len = n;
  return s;
}

/* Reads t[key] (t at idx) as an optional string; raises on another type. */
static const char *opt_string_field(lua_State *L, int idx, const char *key, size_t *len, const char **nul_field) {
  int t = lua_getfield(L, idx, key);
  const char *s = NULL;
  if (len) *len = 0;
  if (t == LUA_TSTRING) s = checked_string(L, key, len, nul_field);
  else if (t != LUA_TNIL && !(t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL)) {
    lua_pushfstring(L, "definition field %s must be a string", key);
    return raise_msg(L, lua_tostring(L, -1)), NULL;
  }
  lua_pop(L, 1);
  return s; /* still referenced by the table */
}

/* Reads the array of strings at the top of the stack into a userdata
 * array (left on the stack, below the array); returns its length. */
static int string_array(lua_State *L, const char *what, const char ***out, const char **nul_field) {
  int t = lua_type(L, -1);
  if (t != LUA_TTABLE && t != LUA_TNIL && !(t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL)) {
    lua_pushfstring(L, "%s must be an array of strings", what);
    raise_msg(L, lua_tostring(L, -1));
  }
  int n = t == LUA_TTABLE ? (int)luaL_len(L, -1) : 0;
  const char **v = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  lua_insert(L, -2);                                   /* [ud arr] */
  for (int i = 0; i < n; i++) {
    if (lua_geti(L, -1, i + 1) != LUA_TSTRING) {
      lua_pushfstring(L, "%s must be an array of strings", what);
      raise_msg(L, lua_tostring(L, -1));
    }
    v[i] = checked_string(L, what, NULL, nul_field);
    lua_pop(L, 1);
  }
  v[n] = NULL;
  *out = v;
  return n;
}

/* The MV_PRIV_* bit of privilege name p (any case), or 0 when it is none. */
static unsigned privilege_bit(const char *p) {
  for (int i = 0; mv_privilege_names[i]; i++)
    if (strcasecmp(p, mv_privilege_names[i]) == 0) return 1u << i;
  return 0;
}

/* The privileges of one grant entry (at the top): its `privileges` array,
 * SELECT when it has none; raises on a name that is no privilege. */
static unsigned grant_privileges(lua_State *L) {
  unsigned mask = 0;
  if (lua_getfield(L, -1, "privileges") != LUA_TTABLE) { lua_pop(L, 1); return MV_PRIV_SELECT; }
  for (int j = 1; lua_geti(L, -1, j) != LUA_TNIL; j++) {
    unsigned bit = lua_type(L, -1) == LUA_TSTRING ? privilege_bit(lua_tostring(L, -1)) : 0;
    if (bit == 0) raise_msg(L, lua_pushfstring(L, "grants: '%s' is no privilege", luaL_tolstring(L, -1, NULL)));
    mask |= bit;
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return mask ? mask : MV_PRIV_SELECT;
}

/* Reads grants ({ "role" } or { { role = r, privileges = {...} } }) into d;
 * the arrays live in userdata left on the stack. */
static void read_grants(lua_State *L, MvDefn *d) {
  int t = lua_getfield(L, 1, "grants");
  int n = t == LUA_TTABLE ? (int)luaL_len(L, -1) : 0;
  d->grant_roles = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  d->grant_privs = lua_newuserdatauv(L, sizeof(unsigned) * (size_t)(n + 1), 0);
  lua_rotate(L, -3, 2);                                /* [.. ud ud grants] */
  for (int i = 0; i < n; i++) {
    int et = lua_geti(L, -1, i + 1);                   /* [.. grants entry] */
    if (et == LUA_TTABLE) { lua_getfield(L, -1, "role"); lua_insert(L, -2); } /* [.. role entry] */
    else lua_pushnil(L);                               /* [.. role nil] */
    if (lua_type(L, -2) != LUA_TSTRING) raise_msg(L, "grants: each grant names a role (a string)");
    d->grant_privs[i] = et == LUA_TTABLE ? grant_privileges(L) : MV_PRIV_SELECT;
    lua_pop(L, 1);                                     /* [.. grants role] */
    d->grant_roles[i] = checked_string(L, "grants", NULL, &d->nul_field);
    lua_pop(L, 1);                                     /* the role stays in the definition */
  }
  d->n_grants = n;
  lua_pop(L, 1);
}

static int opt_bool(lua_State *L, int idx, const char *key);

/* Fills d from the definition table at idx 1; leaves helper userdata on the stack. */
static void read_defn(lua_State *L, MvDefn *d) {
  if (!lua_istable(L, 1)) raise_msg(L, "services: the definition argument must be a table (or a name or id through mv.services)");
  memset(d, 0, sizeof *d);
  if (lua_getfield(L, 1, "name") != LUA_TSTRING) raise_msg(L, "services: the definition has no name");
  d->name = checked_string(L, "name", &d->name_len, NULL);
  lua_pop(L, 1);
  d->schema = opt_string_field(L, 1, "schema_name", &d->schema_len, NULL);
  d->sql = opt_string_field(L, 1, "sql", &d->sql_len, NULL);
  d->comment = opt_string_field(L, 1, "comment", NULL, &d->nul_field);
  lua_getfield(L, 1, "unique_index_columns");
  d->n_unique = string_array(L, "unique_index_columns", &d->unique_cols, &d->nul_field);
  lua_pop(L, 1);                                       /* [.. ud] */
  int t = lua_getfield(L, 1, "indexes");
  int n = t == LUA_TTABLE ? (int)luaL_len(L, -1) : 0;
  d->indexes = lua_newuserdatauv(L, sizeof(char **) * (size_t)(n + 1), 0);
  d->index_names = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  d->index_unique = lua_newuserdatauv(L, sizeof(int) * (size_t)(n + 1), 0);
  d->index_tails = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  lua_rotate(L, -5, 4);                                /* [.. ud ud2 ud3 ud4 ud5 indexes] */
  luaL_checkstack(L, n + 8, "too many indexes");
  for (int i = 0; i < n; i++) {
    if (lua_geti(L, -1, i + 1) != LUA_TTABLE)         /* [.. indexes entry] */
      raise_msg(L, "each of indexes must be an array of column names");
    d->index_names[i] = opt_string_field(L, lua_gettop(L), "name", NULL, &d->nul_field);
    d->index_unique[i] = opt_bool(L, lua_gettop(L), "unique");
    d->index_tails[i] = opt_string_field(L, lua_gettop(L), "tail", NULL, &d->nul_field);
    if (lua_getfield(L, -1, "columns") == LUA_TTABLE) lua_remove(L, -2);
    else lua_pop(L, 1);                                /* [.. indexes columns] */
    string_array(L, "indexes", &d->indexes[i], &d->nul_field); /* [.. indexes ud_i columns] */
    lua_pop(L, 1);
    lua_insert(L, -2);                                 /* [.. ud_i indexes] */
  }
  d->n_indexes = n;
  lua_pop(L, 1);
  read_grants(L, d);
}

/* Reads a boolean option. */
static int opt_bool(lua_State *L, int idx, const char *key) {
  lua_getfield(L, idx, key);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* Fills o and the connection from the options table at idx 2. */
static PGconn *read_opts(lua_State *L, MvOpts *o) {
  static const char *const strategies[] = MV_ROW_COUNT_NAMES_NULL;
  if (!lua_istable(L, 2)) raise_msg(L, "services: options with a connection (opts.conn) are required");
  int which = 1; /* estimated */
  if (lua_getfield(L, 2, "row_count_strategy") != LUA_TNIL) {
    const char *rc = lua_tostring(L, -1);
    for (which = 0; strategies[which] && !(rc && strcmp(rc, strategies[which]) == 0); which++) {}
    if (strategies[which] == NULL)
      raise_msg(L, lua_pushfstring(L, "services: row_count_strategy must be \"%s\", \"%s\" or \"%s\" (got %s)",
                                   strategies[0], strategies[1], strategies[2], luaL_tolstring(L, -1, NULL)));
  }
  o->row_count = (MvRowCount)which;
  lua_pop(L, 1);
  o->force = opt_bool(L, 2, "force");
  o->no_data = opt_bool(L, 2, "no_data");
  o->cascade = opt_bool(L, 2, "cascade");
  o->if_exists = opt_bool(L, 2, "if_exists");
  o->replace = opt_bool(L, 2, "replace");
  o->analyze = lua_getfield(L, 2, "analyze") == LUA_TNIL || lua_toboolean(L, -1); /* default on */
  lua_pop(L, 1);
  lua_getfield(L, 2, "lock_timeout_ms");
  lua_Integer ms = luaL_optinteger(L, -1, 5000);
  if (ms <= 0 || ms > 86400000) raise_msg(L, "services: lock_timeout_ms must be between 1 and 86400000");
  o->lock_timeout_ms = (int)ms;
  lua_pop(L, 1);
  lua_getfield(L, 2, "conn");
  if (lua_isnil(L, -1)) raise_msg(L, "services: opts.conn is required");
  if (luaL_testudata(L, -1, MV_CONN_MT) == NULL) raise_msg(L, "services: opts.conn must be a connection (mv.connect)");
  PGconn *c = mv_checkconn(L, -1);
  lua_pop(L, 1);
  return c;
}

/* __gc of the response userdata. */
static int resp_gc(lua_State *L) {
  mv_resp_free((MvResp *)luaL_checkudata(L, 1, RESP_MT));
  return 0;
}

/* t[key] = s when s is set. */
static void set_str(lua_State *L, const char *key, const char *s) {
  if (s == NULL) return;
  lua_pushstring(L, s);
  lua_setfield(L, -2, key);
}

/* t[key] = array of the list's strings. */
static void set_list(lua_State *L, const char *key, const MvStrList *l) {
  lua_createtable(L, l->n, 0);
  for (int i = 0; i < l->n; i++) { lua_pushstring(L, l->v[i]); lua_rawseti(L, -2, i + 1); }
  lua_setfield(L, -2, key);
}

/* Pushes the request table: what was asked, by whom. */
static void push_request(lua_State *L, const MvDefn *d, const MvOpts *o, int kind) {
  static const char *const rc[] = MV_ROW_COUNT_NAMES;
  lua_createtable(L, 0, 6);
  set_str(L, "name", d->name);
  set_str(L, "row_count_strategy", rc[o->row_count]);
  if (!(kind & REQ_DELETE)) { lua_pushboolean(L, o->analyze); lua_setfield(L, -2, "analyze"); }
  if (kind & REQ_CREATE) {
    lua_pushboolean(L, o->force); lua_setfield(L, -2, "force");
    lua_pushboolean(L, o->no_data); lua_setfield(L, -2, "no_data");
  }
  if (kind & REQ_DELETE) {
    lua_pushboolean(L, o->cascade); lua_setfield(L, -2, "cascade");
    lua_pushboolean(L, o->if_exists); lua_setfield(L, -2, "if_exists");
  }
  if (kind & REQ_SWAP) { lua_pushinteger(L, o->lock_timeout_ms); lua_setfield(L, -2, "lock_timeout_ms"); }
}

/* Pushes the response.response table. */
static void push_inner(lua_State *L, const MvResp *r, int kind) {
  lua_createtable(L, 0, 8);
  set_list(L, "sql", &r->sql);
  lua_pushinteger(L, r->before); lua_setfield(L, -2, "row_count_before");
  lua_pushinteger(L, r->after); lua_setfield(L, -2, "row_count_after");
  if (r->analyze_ms >= 0) { lua_pushinteger(L, r->analyze_ms); lua_setfield(L, -2, "analyze_ms"); }
  if (kind & REQ_SWAP) {
    lua_pushinteger(L, r->lock_ms); lua_setfield(L, -2, "lock_ms");
    set_list(L, "rebuilt", &r->rebuilt);
    set_str(L, "temp_relation", r->temp_relation);
  }
  set_str(L, "refresh", r->refresh);
  set_str(L, "note", r->note);
  if (r->warnings.n) set_list(L, "warnings", &r->warnings);
}

/* Pushes the whole response table of a finished service call. */
static void push_response(lua_State *L, const MvResp *r, const MvDefn *d, const MvOpts *o, int kind) {
  static const char *const st[] = MV_SERVICE_STATUS_NAMES;
  lua_createtable(L, 0, 6);
  set_str(L, "status", st[r->status]);
  lua_pushboolean(L, r->status != MV_ST_ERROR); lua_setfield(L, -2, "success");
  if (r->view[0]) set_str(L, "view", r->view);
  push_request(L, d, o, kind);
  lua_setfield(L, -2, "request");
  push_inner(L, r, kind);
  lua_setfield(L, -2, "response");
  if (r->status == MV_ST_ERROR) {
    mv_error_push(L, r->err_message, r->err_sqlstate);
    set_str(L, "detail", r->err_detail);
    set_str(L, "hint", r->err_hint);
    lua_setfield(L, -2, "error");
  }
}

typedef void (*svc_fn)(PGconn *, const MvDefn *, const MvOpts *, MvResp *);

/* The body shared by the five services. */
static int run_service(lua_State *L, svc_fn fn, int kind) {
  MvDefn d;
  MvOpts o;
  lua_settop(L, 2);
  read_defn(L, &d);
  PGconn *conn = read_opts(L, &o);
  MvResp *r = lua_newuserdatauv(L, sizeof(MvResp), 0);
  mv_resp_init(r);
  luaL_setmetatable(L, RESP_MT);
  fn(conn, &d, &o, r);
  push_response(L, r, &d, &o, kind);
  mv_resp_free(r);
  return 1;
}

static int l_create_view(lua_State *L) { return run_service(L, svc_create_view, REQ_CREATE); }
static int l_regular_refresh(lua_State *L) { return run_service(L, svc_regular_refresh, 0); }
static int l_concurrent_refresh(lua_State *L) { return run_service(L, svc_concurrent_refresh, 0); }
static int l_swap_refresh(lua_State *L) { return run_service(L, svc_swap_refresh, REQ_SWAP); }
static int l_delete_view(lua_State *L) { return run_service(L, svc_delete_view, REQ_DELETE); }

/* validate_name(name) -> true | nil, "invalid name \"x\": reason" */
static int l_validate_name(lua_State *L) {
  char err[256];
  size_t len = 0;
  const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
  if (s == NULL) { lua_pushnil(L); lua_pushliteral(L, "invalid name: must be a string"); return 2; }
  if (mv_valid_identifier(s, len, err, sizeof err)) { lua_pushboolean(L, 1); return 1; }
  lua_pushnil(L);
  if (strlen(s) != len) lua_pushfstring(L, "invalid name: %s", err); /* the name would print cut */
  else lua_pushfstring(L, "invalid name \"%s\": %s", s, err);
  return 2;
}

/* validate_sql(sql) -> true | nil, "invalid sql: reason" */
static int l_validate_sql(lua_State *L) {
  char err[256];
  size_t len = 0;
  const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
  if (s == NULL) { lua_pushnil(L); lua_pushliteral(L, "invalid sql: must be a string"); return 2; }
  if (mv_valid_query_sql(s, len, NULL, err, sizeof err)) { lua_pushboolean(L, 1); return 1; }
  lua_pushnil(L);
  lua_pushfstring(L, "invalid sql: %s", err);
  return 2;
}

/* A swap built and not yet published (core.services.swap_build): the
 * service's state between its two halves. The definition's strings and the
 * arrays read_defn made stay reachable as the userdata's user values. */
#define BUILD_MT "matviews.swapbuild"
typedef struct {
  MvDefn d;
  MvOpts o;
  MvResp r;
  MvSvc s;
  MvRel rel;
  SwapPlan p;
  int state;                     /* 0 free, 1 built, 2 published or dropped */
} Build;

/* Frees a build; drops its relation unless it was published. */
static void build_release(Build *b, int drop) {
  if (b->state == 1 && drop && pg_connected(b->s.conn)) {
    swap_drop_build(&b->s, &b->p);
    swap_guard_release(&b->s, &b->p);
  }
  if (b->state != 0) {
    swap_plan_free(&b->p);
    svc_close(&b->s);
    mv_resp_free(&b->r);
  }
  b->state = 0;
}

/* __gc, __close and build:drop(): drops the build relation if it was not
 * published; harmless twice. */
static int build_drop(lua_State *L) {
  Build *b = (Build *)luaL_checkudata(L, 1, BUILD_MT);
  lua_getiuservalue(L, 1, 3);                          /* the connection, still open? */
  if (b->state == 1 && mv_toconn(L, -1) != b->s.conn) b->state = 2;
  lua_pop(L, 1);
  build_release(b, 1);
  return 0;
}

/* For a service in two halves: reads [defn opts] (1, 2) into d and o for
 * the userdata at 3, which keeps what they borrow as its user values (1:
 * the arrays read_defn made, 2: the definition's strings, 3: the
 * connection); leaves [defn opts ud]. */
static PGconn *read_kept(lua_State *L, MvDefn *d, MvOpts *o) {
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 3, 2);
  if (lua_istable(L, 2)) lua_getfield(L, 2, "conn");
  else lua_pushnil(L);
  lua_setiuservalue(L, 3, 3);
  read_defn(L, d);                                     /* [defn opts ud arrays...] */
  PGconn *conn = read_opts(L, o);
  int top = lua_gettop(L);
  lua_createtable(L, top - 3, 0);
  for (int i = 4; i <= top; i++) { lua_pushvalue(L, i); lua_rawseti(L, -2, i - 3); }
  lua_setiuservalue(L, 3, 1);
  lua_settop(L, 3);
  return conn;
}

/* swap_build(defn, opts) -> build, "schema"."build relation" | nil,
 * response: the first half of swap_refresh (see swap.h). */
static int l_swap_build(lua_State *L) {
  lua_settop(L, 2);                                    /* [defn opts] */
  Build *b = lua_newuserdatauv(L, sizeof(Build), 3);  /* [defn opts b] */
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, BUILD_MT);
  PGconn *conn = read_kept(L, &b->d, &b->o);
  mv_resp_init(&b->r);
  b->state = 1;
  if (svc_open(&b->s, conn, &b->d, &b->o, &b->r, 1) < 0 || swap_build_phase(&b->s, &b->rel, &b->p) < 0) {
    lua_pushnil(L);
    push_response(L, &b->r, &b->d, &b->o, REQ_SWAP);
    build_release(b, 1);
    return 2;
  }
  lua_pushstring(L, b->p.qtmp);
  return 2;
}

/* build:publish() -> the response swap_refresh gives: the second half. */
static int build_publish(lua_State *L) {
  Build *b = (Build *)luaL_checkudata(L, 1, BUILD_MT);
  if (b->state != 1) return raise_msg(L, "publish: nothing built to publish (build first, and publish once)");
  lua_getiuservalue(L, 1, 3);
  if (mv_toconn(L, -1) != b->s.conn) return raise_msg(L, "publish: the connection of the build is closed");
  lua_pop(L, 1);
  swap_publish_phase(&b->s, &b->rel, &b->p);
  b->state = 2;                                        /* published, or dropped by the failure */
  push_response(L, &b->r, &b->d, &b->o, REQ_SWAP);
  b->state = 1;
  build_release(b, 0);
  return 1;
}

/* A regular refresh sent and not read yet (core.services.regular_refresh_send):
 * the service's state between its two halves; the definition's strings
 * and arrays stay reachable as the userdata's user values, as a Build's. */
#define SENT_MT "matviews.svcsent"
typedef struct {
  MvDefn d;
  MvOpts o;
  MvResp r;
  SvcRefresh f;
  int state;                     /* 1 sent, 0 read (or never sent) */
} Sent;

/* Reads what is still unread (nothing when the connection was closed
 * meanwhile) and frees the service's state. */
static void sent_release(lua_State *L, Sent *x, int idx) {
  if (x->state != 1) return;
  lua_getiuservalue(L, idx, 3);
  int connected = mv_toconn(L, -1) == x->f.s.conn;
  lua_pop(L, 1);
  x->state = 0;
  svc_regular_refresh_collect(&x->f, connected);
}

/* __gc and __close: a refresh sent and never collected is read and dropped. */
static int sent_gc(lua_State *L) {
  Sent *x = (Sent *)luaL_checkudata(L, 1, SENT_MT);
  sent_release(L, x, 1);
  mv_resp_free(&x->r);
  return 0;
}

/* regular_refresh_send(defn, opts) -> sent: the first half of
 * regular_refresh (see svc.h); sent:collect() returns its response. */
static int l_regular_refresh_send(lua_State *L) {
  lua_settop(L, 2);                                    /* [defn opts] */
  Sent *x = lua_newuserdatauv(L, sizeof(Sent), 3);    /* [defn opts x] */
  memset(x, 0, sizeof *x);
  mv_resp_init(&x->r);
  luaL_setmetatable(L, SENT_MT);
  PGconn *conn = read_kept(L, &x->d, &x->o);
  x->state = 1;
  svc_regular_refresh_send(&x->f, conn, &x->d, &x->o, &x->r);
  return 1;
}

/* sent:collect() -> the response regular_refresh gives. */
static int sent_collect(lua_State *L) {
  Sent *x = (Sent *)luaL_checkudata(L, 1, SENT_MT);
  if (x->state != 1) return raise_msg(L, "collect: the refresh was collected already");
  sent_release(L, x, 1);
  push_response(L, &x->r, &x->d, &x->o, 0);
  return 1;
}

static const luaL_Reg services[] = {
  {"create_view", l_create_view}, {"regular_refresh", l_regular_refresh},
  {"concurrent_refresh", l_concurrent_refresh}, {"swap_refresh", l_swap_refresh},
  {"delete_view", l_delete_view}, {"swap_build", l_swap_build}, {"regular_refresh_send", l_regular_refresh_send},
  {NULL, NULL}
};

void mv_register_services(lua_State *L) {
  if (luaL_newmetatable(L, RESP_MT)) {
    lua_pushcfunction(L, resp_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);                                       /* [core] */
  if (luaL_newmetatable(L, BUILD_MT)) {
    lua_pushcfunction(L, build_drop); lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, build_drop); lua_setfield(L, -2, "__close");
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, build_publish); lua_setfield(L, -2, "publish");
    lua_pushcfunction(L, build_drop); lua_setfield(L, -2, "drop");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, SENT_MT)) {
    lua_pushcfunction(L, sent_gc); lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, sent_gc); lua_setfield(L, -2, "__close");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, sent_collect); lua_setfield(L, -2, "collect");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, services);
  lua_setfield(L, -2, "services");
  lua_pushcfunction(L, l_validate_name);
  lua_setfield(L, -2, "validate_name");
  lua_pushcfunction(L, l_validate_sql);
  lua_setfield(L, -2, "validate_sql");
}
