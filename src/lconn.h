/*
 * lconn.h: the Lua connection object ("matviews.conn"). Other binding areas
 * (services, jobs) take a connection argument through mv_checkconn.
 */
#ifndef MV_LCONN_H
#define MV_LCONN_H
#include <lua.h>
#include <libpq-fe.h>

#define MV_CONN_MT "matviews.conn"

/* The open PGconn of the connection userdata at idx; raises if closed. */
PGconn *mv_checkconn(lua_State *L, int idx);
/* The open PGconn of the value at idx, or NULL when it is no connection or
 * a closed one (never raises). */
PGconn *mv_toconn(lua_State *L, int idx);
/* Runs sql with the Lua values at stack indexes first..last as parameters;
 * on success pushes rows (as_rows) or the affected count; on failure raises
 * the database error table. */
int mv_conn_run(lua_State *L, PGconn *conn, const char *sql, int first, int last, int as_rows);
/* How many connections are open or under way in this process (a child
 * forked while one is would share its socket). */
int mv_conn_live(void);
/* Registers connect, null and the connection metatable in the table at -1. */
void mv_register_conn(lua_State *L);

#endif
