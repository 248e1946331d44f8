/*
 * validate_fuzz.c: libFuzzer target for the name and query checks
 * (src/validate.c). The first byte picks the check; the rest is the input.
 * Any input must be accepted or rejected with a message, never crash; an
 * accepted query's statement (without its trailing semicolon) must itself
 * be accepted with the same length; an accepted name must be a C-locale
 * simple identifier. Built and run by `make fuzz`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../src/validate.h"

/* Stops the run on a broken invariant (libFuzzer records the input). */
static void check(int ok) {
  if (!ok) abort();
}

/* Reference check of a simple identifier. */
static int simple_identifier(const char *s, size_t n) {
  if (n == 0 || n > MV_MAX_IDENT) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!(alpha || (i > 0 && c >= '0' && c <= '9'))) return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const char *s = (const char *)data + 1;
  size_t n = size - 1;
  char err[256] = "";
  if (data[0] & 1) {
    int ok = mv_valid_identifier(s, n, err, sizeof err);
    check(ok == simple_identifier(s, n));
    check(ok || (err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL));
    return 0;
  }
  size_t stmt = 0, again = 0;
  if (!mv_valid_query_sql(s, n, &stmt, err, sizeof err)) {
    check(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
    return 0;
  }
  check(stmt > 0 && stmt <= n);
  check(mv_valid_query_sql(s, stmt, &again, err, sizeof err) == 1 && again == stmt);
  return 0;
}
