/* chunks.h: the compiled form of the host's own Lua modules (chunks.c). */
#ifndef MV_CHUNKS_H
#define MV_CHUNKS_H
#include <lua.h>

/* Installs the searcher of the modules under dir (the host's Lua directory). */
void mv_chunks_install(lua_State *L, const char *dir);

#endif
