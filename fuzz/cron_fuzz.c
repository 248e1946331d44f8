/*
 * cron_fuzz.c: libFuzzer target for the cron parser and evaluator (src/cron.c).
 * Any input must parse or fail with a message, never crash; an expression
 * that parses must give next/previous fire times that match it, in order.
 * Built and run by `make fuzz` (clang, -fsanitize=fuzzer,address,undefined).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../src/cron.h"

/* Stops the run on a broken invariant (libFuzzer records the input). */
static void check(int ok) {
  if (!ok) abort();
}

/* Checks next/prev around civil time t for expression e. */
static void check_around(const cron_expr *e, int64_t t) {
  int64_t next, prev, again;
  if (cron_next_civil(e, t, &next) == 0) {
    check(next > t && next % (e->seconds ? e->seconds : 60) == 0 && cron_matches(e, next));
    check(cron_prev_civil(e, next, &again) == 0 && again == next);
    check(cron_prev_civil(e, next - 1, &prev) != 0 || prev <= t);
  }
  if (cron_prev_civil(e, t, &prev) == 0) {
    check(prev <= t && cron_matches(e, prev));
    check(cron_next_civil(e, prev, &again) != 0 || again > t);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cron_expr e;
  char err[256];
  if (cron_parse((const char *)data, size, &e, err, sizeof err) != 0) {
    check(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
    return 0;
  }
  static const int64_t times[] = {0, 951782400 /* 2000-02-29 */, 1772942400, 4102444799, CRON_TIME_MAX - 30};
  for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) check_around(&e, times[i]);
  char buf[64];
  int64_t next;
  if (cron_next_tz(&e, 1772942400, "America/New_York", &next) == 0)
    check(cron_format(next, "America/New_York", buf, sizeof buf) == 0);
  return 0;
}
