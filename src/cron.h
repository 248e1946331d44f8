/*
 * cron.h: 5-field cron expressions (minute hour day-of-month month
 * day-of-week), parsed and evaluated in plain C with no Lua and no
 * allocation, so the parser can be fuzzed on its own (fuzz/cron_fuzz.c).
 *
 * Times are seconds since 1970-01-01 00:00. The *_civil functions work on a
 * wall clock with no zone (UTC); the *_tz functions take an IANA zone name
 * and convert through the C library's zone data (TZ + mktime/localtime_r).
 */
#ifndef MV_CRON_H
#define MV_CRON_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t minute;    /* bit m set: minute m (0-59) */
  uint32_t hour;      /* bit h: hour h (0-23) */
  uint32_t dom;       /* bit d: day of month d (1-31) */
  uint16_t month;     /* bit m: month m (1-12) */
  uint8_t dow;        /* bit d: weekday d (0-6, 0 = Sunday) */
  unsigned char dom_star, dow_star; /* the field begins with '*' */
  unsigned char seconds; /* 1-59: pg_cron's 'N seconds' form (fires every N
                            seconds of the epoch); 0: the five fields apply */
} cron_expr;

/* Civil times handled: 1970-01-01 00:00 to 9999-12-31 23:59. */
#define CRON_TIME_MIN 0
#define CRON_TIME_MAX INT64_C(253402300799)

/* Parses text[0..len) (may hold any bytes): five fields, a macro, or
 * "N seconds" / "N second" with N in 1-59 (a fire time every N seconds,
 * counted from the epoch, so every zone sees the same instants). Returns 0 and fills out, or -1
 * with a one-line reason in err (e.g. "minute: 60 is out of range 0-59"). */
int cron_parse(const char *text, size_t len, cron_expr *out, char *err, size_t errlen);
/* 1 when the civil time t (any second of the minute) is a fire time. */
int cron_matches(const cron_expr *e, int64_t t);
/* The first fire time strictly after `after` into *out: 0, or -1 if none
 * within the handled range. */
int cron_next_civil(const cron_expr *e, int64_t after, int64_t *out);
/* The last fire time at or before `at` into *out: 0, or -1 if none. */
int cron_prev_civil(const cron_expr *e, int64_t at, int64_t *out);

/* 1 when tz names a zone the C library knows (NULL, "" and "UTC" do). */
int cron_zone_ok(const char *tz);
/* As the civil forms, with fire times read on the wall clock of zone tz and
 * results in UTC seconds. A wall time skipped by a DST jump fires at the
 * jump; a wall time that occurs twice fires at its first occurrence only. */
int cron_next_tz(const cron_expr *e, int64_t after, const char *tz, int64_t *out);
int cron_prev_tz(const cron_expr *e, int64_t at, const char *tz, int64_t *out);
/* Formats UTC time t as "YYYY-MM-DDTHH:MM:SS+hh:mm" in zone tz ("Z" for
 * UTC) into buf; returns 0, or -1 if t is out of range. */
int cron_format(int64_t t, const char *tz, char *buf, size_t buflen);

#endif
