/*
 * errors.c: the error object shared by C and Lua (see errors.h).
 * __tostring gives "message" or "message (SQLSTATE xxxxx)".
 */
#include <lauxlib.h>
#include "errors.h"

/* __tostring: the message, and the SQLSTATE when there is one. */
static int error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "sqlstate");
  const char *msg = lua_tostring(L, -2);
  const char *st = lua_tostring(L, -1);
  if (msg == NULL) msg = "unknown error";
  if (st != NULL)
    lua_pushfstring(L, "%s (SQLSTATE %s)", msg, st);
  else
    lua_pushstring(L, msg);
  return 1;
}

void mv_error_setmt(lua_State *L) {
  luaL_setmetatable(L, MV_ERROR_MT);
}

void mv_error_push(lua_State *L, const char *message, const char *sqlstate) {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  if (sqlstate != NULL) {
    lua_pushstring(L, sqlstate);
    lua_setfield(L, -2, "sqlstate");
  }
  mv_error_setmt(L);
}

int mv_error_raise(lua_State *L) {
  return lua_error(L);
}

/* mv.error(msg | tbl [, level]): raise a matviews error from Lua. A string
 * becomes {message = msg}; a table gets the metatable and is raised as is. */
static int l_error(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    mv_error_push(L, lua_tostring(L, 1), NULL);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushvalue(L, 1);
    mv_error_setmt(L);
  }
  return lua_error(L);
}

/* mv.is_error(v): true when v is a matviews error table. */
static int l_is_error(lua_State *L) {
  int is = 0;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, MV_ERROR_MT);
    is = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, is);
  return 1;
}

/* mv.error_message(e): the text of what a pcall caught, without the
 * SQLSTATE: an error's (or any table's) message, else tostring(e). */
static int l_error_message(lua_State *L) {
  lua_settop(L, 1);
  if (lua_type(L, 1) == LUA_TTABLE && lua_getfield(L, 1, "message") != LUA_TNIL) {
    luaL_tolstring(L, -1, NULL);
    return 1;
  }
  luaL_tolstring(L, 1, NULL);
  return 1;
}

void mv_register_errors(lua_State *L) {
  if (luaL_newmetatable(L, MV_ERROR_MT)) {     /* [core mt] */
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, "matviews.error");
    lua_setfield(L, -2, "__name");
  }
  lua_setfield(L, -2, "error_mt");             /* [core] */
  lua_pushcfunction(L, l_error);
  lua_setfield(L, -2, "error");
  lua_pushcfunction(L, l_is_error);
  lua_setfield(L, -2, "is_error");
  lua_pushcfunction(L, l_error_message);
  lua_setfield(L, -2, "error_message");
}
