/*
 * errors.h: matviews error objects. An error is a table with at least
 * `message` (and `sqlstate` when it comes from the database) whose
 * metatable (registry "matviews.error") gives __tostring.
 */
#ifndef MV_ERRORS_H
#define MV_ERRORS_H
#include <lua.h>

#define MV_ERROR_MT "matviews.error"

/* Sets the error metatable on the table at the top of the stack. */
void mv_error_setmt(lua_State *L);
/* Pushes a new error table with the given message (and sqlstate, may be NULL). */
void mv_error_push(lua_State *L, const char *message, const char *sqlstate);
/* Raises the error on the top of the stack. */
int mv_error_raise(lua_State *L);
/* Registers the metatable, `error` (constructor), `is_error` and
 * `error_message` (the text of a caught error) in the table at -1. */
void mv_register_errors(lua_State *L);

#endif
