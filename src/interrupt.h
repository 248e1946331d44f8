/*
 * interrupt.h: SIGINT/SIGTERM handling shared by the host and the libpq unit.
 * The handler only sets flags or a Lua hook (as lua.c does); pg.c notices
 * the flag while it waits for a result and sends PQcancel itself.
 */
#ifndef MV_INTERRUPT_H
#define MV_INTERRUPT_H
#include <signal.h>
#include <lua.h>

/* Installs the handler; L is the state a hook is set on outside queries. */
void mv_interrupt_install(lua_State *L);
/* pg.c brackets each wait for a server result with these. */
void mv_query_begin(void);
void mv_query_end(void);
/* Non-zero when SIGINT arrived during the current query. */
int mv_query_interrupted(void);
/* Disarms the hook a SIGINT outside a query armed on L; returns 1 when one
 * was pending (the caller then raises "interrupted!" itself once it is safe:
 * jobs finalise their run row first). */
int mv_interrupt_take(lua_State *L);
/* The last SIGINT/SIGTERM received since mv_stop_clear (0: none). */
int mv_stop_signal(void);
void mv_stop_clear(void);

/* While held (a job runs), SIGINT outside a statement does not raise at
 * the next Lua instruction: it stays pending, cancels the next statement
 * at once, and the job raises "interrupted!" once its run is finalised.
 * Returns the previous hold. */
int mv_interrupt_hold(int on);
/* Whether an interrupt is pending; clears it when clear is set. */
int mv_interrupt_pending(int clear);

#endif
