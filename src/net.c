/*
 * net.c: the few TCP calls `matviews metrics --listen` needs, as core.net:
 * listen, accept, recv, send, close on plain descriptors (integers), every
 * wait bounded by poll() with a timeout. HTTP itself (request line,
 * headers, limits) is in lua/matviews/http.lua. Owns no memory beyond a
 * receive buffer on the C stack; descriptors belong to the Lua caller,
 * which closes them.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <lauxlib.h>
#include "core.h"

#define RECV_MAX 65536 /* the most one recv() returns */

/* Pushes nil and "what: strerror(err)"; returns 2. */
static int fail(lua_State *L, const char *what, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, strerror(err));
  return 2;
}

/* Waits up to ms for fd to be ready (events); 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int ms) {
  struct pollfd p = {fd, events, 0};
  int rc;
  do rc = poll(&p, 1, ms); while (rc < 0 && errno == EINTR);
  return rc;
}

/* listen(host, port) -> fd, bound port | nil, message. Binds the first
 * address of host that works (SO_REUSEADDR), backlog 16; port "0" takes
 * any free port (the second result says which). */
static int l_listen(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  const char *port = luaL_checkstring(L, 2);
  struct addrinfo hints, *res = NULL, *ai;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot resolve %s: %s", host, gai_strerror(rc));
    return 2;
  }
  int fd = -1, err = 0;
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) { err = errno; continue; }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) break;
    err = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return fail(L, "cannot listen", err);
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  int bound = 0;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
    if (sa.ss_family == AF_INET) bound = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    else if (sa.ss_family == AF_INET6) bound = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
  }
  lua_pushinteger(L, fd);
  lua_pushinteger(L, bound);
  return 2;
}

/* accept(fd, timeout_ms) -> client fd | nil, "timeout" | nil, message */
static int l_accept(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int ms = (int)luaL_checkinteger(L, 2);
  int rc = wait_fd(fd, POLLIN, ms);
  if (rc == 0) { lua_pushnil(L); lua_pushliteral(L, "timeout"); return 2; }
  if (rc < 0) return fail(L, "poll", errno);
  int c;
  do c = accept4(fd, NULL, NULL, SOCK_CLOEXEC); while (c < 0 && errno == EINTR);
  if (c < 0) return fail(L, "accept", errno);
  lua_pushinteger(L, c);
  return 1;
}

/* recv(fd, max, timeout_ms) -> bytes ("" at end of stream) | nil, "timeout"
 * | nil, message. At most max (capped at RECV_MAX) bytes. */
static int l_recv(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  int ms = (int)luaL_checkinteger(L, 3);
  char buf[RECV_MAX];
  if (max < 1) max = 1;
  if (max > RECV_MAX) max = RECV_MAX;
  int rc = wait_fd(fd, POLLIN, ms);
  if (rc == 0) { lua_pushnil(L); lua_pushliteral(L, "timeout"); return 2; }
  if (rc < 0) return fail(L, "poll", errno);
  ssize_t n;
  do n = recv(fd, buf, (size_t)max, 0); while (n < 0 && errno == EINTR);
  if (n < 0) return fail(L, "recv", errno);
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

/* send(fd, bytes, timeout_ms) -> true | nil, message. Sends everything, each
 * wait bounded by timeout_ms; never raises SIGPIPE. */
static int l_send(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int ms = (int)luaL_checkinteger(L, 3);
  while (len > 0) {
    int rc = wait_fd(fd, POLLOUT, ms);
    if (rc == 0) { lua_pushnil(L); lua_pushliteral(L, "timeout"); return 2; }
    if (rc < 0) return fail(L, "poll", errno);
    ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(L, "send", errno);
    s += n;
    len -= (size_t)n;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* shutdown(fd): no more sends (the peer reads end of stream) -> true */
static int l_shutdown(lua_State *L) {
  shutdown((int)luaL_checkinteger(L, 1), SHUT_WR);
  lua_pushboolean(L, 1);
  return 1;
}

/* close(fd) -> true */
static int l_close(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg net_funcs[] = {
  {"listen", l_listen}, {"accept", l_accept}, {"recv", l_recv}, {"send", l_send}, {"shutdown", l_shutdown}, {"close", l_close},
  {NULL, NULL}
};

void mv_register_net(lua_State *L) {
  luaL_newlib(L, net_funcs);
  lua_setfield(L, -2, "net");
}
