/*
 * cron.c: the cron expression parser and next/previous fire time search.
 * Owns no memory: a cron_expr is a few bit sets filled by cron_parse.
 *
 * Grammar per field: a comma list of items; an item is `*`, a value or a
 * range `a-b`, optionally followed by `/step`; `a/step` means a to the
 * field's maximum. Months and weekdays also take names (jan-dec, sun-sat,
 * any case); weekday 7 is Sunday. Macros: @yearly @annually @monthly
 * @weekly @daily @midnight @hourly; pg_cron's sub-minute form `N seconds`
 * (1-59). Days follow the classic (Vixie) rule:
 * when both day of month and day of week are restricted (neither field
 * begins with `*`) a day matches if either does, otherwise both must.
 *
 * Zones: the *_tz functions set TZ for the duration of the call (then put
 * the previous value back) and convert with localtime_r/mktime, so they
 * read the system's zone database (/usr/share/zoneinfo or $TZDIR).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cron.h"

enum { F_MIN, F_HOUR, F_DOM, F_MONTH, F_DOW, NFIELDS };

static const char *const FIELD_NAME[NFIELDS] = {
  "minute", "hour", "day of month", "month", "day of week"};
static const int FIELD_LO[NFIELDS] = {0, 0, 1, 1, 0};
static const int FIELD_HI[NFIELDS] = {59, 23, 31, 12, 7};
static const char *const MONTHS[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                       "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const DAYS[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
static const char *const MACROS[][2] = {
  {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
  {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"}, {"@midnight", "0 0 * * *"},
  {"@hourly", "0 * * * *"}};

#define DAY 86400
#define SEARCH_YEARS 401 /* every (month, day, weekday) recurs within 400 years */

/* ---- calendar arithmetic (proleptic Gregorian, days since 1970-01-01) ---- */

/* Days from 1970-01-01 to y-m-d. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

typedef struct { int64_t year; int month, day, hour, minute, wday; int64_t days; } civil;

/* Splits civil seconds t (>= 0) into fields. */
static void split(int64_t t, civil *c) {
  int64_t z = t / DAY, secs = t % DAY;
  c->days = z;
  c->hour = (int)(secs / 3600);
  c->minute = (int)(secs % 3600 / 60);
  c->wday = (int)((z + 4) % 7); /* 1970-01-01 was a Thursday */
  z += 719468;
  int64_t era = z / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  c->day = (int)(doy - (153 * mp + 2) / 5 + 1);
  c->month = (int)(mp < 10 ? mp + 3 : mp - 9);
  c->year = yoe + era * 400 + (c->month <= 2);
}

/* Days in month m (1-12) of year y. */
static int month_days(int64_t y, int m) {
  static const int n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : n[m - 1];
}

/* ---- parsing ---- */

typedef struct { const char *p, *end; char *err; size_t errlen; int field; } parser;

/* Writes "field: message" into the error buffer; returns -1. */
__attribute__((format(printf, 2, 3)))
static int fail(parser *ps, const char *fmt, ...) {
  char msg[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(ps->err, ps->errlen, "%s: %s", FIELD_NAME[ps->field], msg);
  return -1;
}

/* Describes byte ch for a message: "'x'" or "byte 0xNN". */
static const char *show_char(unsigned char ch, char *buf, size_t n) {
  if (isprint(ch) && ch != '\'') snprintf(buf, n, "'%c'", ch);
  else snprintf(buf, n, "byte 0x%02x", ch);
  return buf;
}

/* Reads a number or (months, weekdays) a three-letter name into *v. */
static int parse_value(parser *ps, int *v) {
  char shown[16];
  if (ps->p < ps->end && isdigit((unsigned char)*ps->p)) {
    int n = 0, digits = 0;
    while (ps->p < ps->end && isdigit((unsigned char)*ps->p)) {
      if (++digits > 4) return fail(ps, "number too long");
      n = n * 10 + (*ps->p++ - '0');
    }
    *v = n;
    return 0;
  }
  const char *const *names = ps->field == F_MONTH ? MONTHS : ps->field == F_DOW ? DAYS : NULL;
  int count = ps->field == F_MONTH ? 12 : 7, base = ps->field == F_MONTH ? 1 : 0;
  if (names && ps->end - ps->p >= 3) {
    for (int i = 0; i < count; i++) {
      if (strncasecmp(ps->p, names[i], 3) == 0 && (ps->end - ps->p == 3 || !isalpha((unsigned char)ps->p[3]))) {
        *v = i + base;
        ps->p += 3;
        return 0;
      }
    }
  }
  if (ps->p >= ps->end) return fail(ps, "a value is missing");
  if (isalpha((unsigned char)*ps->p)) {
    int n = 0;
    while (ps->p + n < ps->end && n < 12 && isalpha((unsigned char)ps->p[n])) n++;
    if (names) return fail(ps, "unknown name '%.*s' (use %s)", n, ps->p, ps->field == F_MONTH ? "jan-dec" : "sun-sat");
    return fail(ps, "unexpected '%.*s'", n, ps->p);
  }
  return fail(ps, "unexpected %s", show_char((unsigned char)*ps->p, shown, sizeof shown));
}

/* Checks that v lies in the field's range. */
static int check_range(parser *ps, int v) {
  if (v < FIELD_LO[ps->field] || v > FIELD_HI[ps->field])
    return fail(ps, "%d is out of range %d-%d", v, FIELD_LO[ps->field], FIELD_HI[ps->field]);
  return 0;
}

/* Parses one list item ([*|a[-b]][/step]) and sets its bits in *bits. */
static int parse_item(parser *ps, uint64_t *bits) {
  int lo = FIELD_LO[ps->field], hi = FIELD_HI[ps->field], step = 1, a, b;
  char shown[16];
  if (ps->p < ps->end && *ps->p == '*') {
    ps->p++;
    a = lo; b = ps->field == F_DOW ? 6 : hi;
  } else {
    if (parse_value(ps, &a) < 0 || check_range(ps, a) < 0) return -1;
    b = a;
    if (ps->p < ps->end && *ps->p == '-') {
      ps->p++;
      if (parse_value(ps, &b) < 0 || check_range(ps, b) < 0) return -1;
      if (a > b) return fail(ps, "range %d-%d goes backwards", a, b);
    } else if (ps->p < ps->end && *ps->p == '/') {
      b = hi;
    }
  }
  if (ps->p < ps->end && *ps->p == '/') {
    ps->p++;
    if (ps->p >= ps->end || !isdigit((unsigned char)*ps->p)) return fail(ps, "a step must be a number");
    if (parse_value(ps, &step) < 0) return -1;
    if (step < 1 || step > hi) return fail(ps, "step %d is out of range 1-%d", step, hi);
  }
  if (ps->p < ps->end && *ps->p != ',') return fail(ps, "unexpected %s", show_char((unsigned char)*ps->p, shown, sizeof shown));
  for (int v = a; v <= b; v += step) *bits |= UINT64_C(1) << (ps->field == F_DOW && v == 7 ? 0 : v);
  return 0;
}

/* Parses field text [p, end) into bits. */
static int parse_field(parser *ps, uint64_t *bits) {
  *bits = 0;
  for (;;) {
    if (ps->p >= ps->end || *ps->p == ',') return fail(ps, "empty list item");
    if (parse_item(ps, bits) < 0) return -1;
    if (ps->p >= ps->end) return 0;
    ps->p++; /* ',' */
  }
}

/* 1 when some day in the day-of-month set exists in some month of the set. */
static int some_day_exists(const cron_expr *e) {
  for (int m = 1; m <= 12; m++) {
    if (!(e->month >> m & 1)) continue;
    for (int d = 1; d <= month_days(2000, m); d++)
      if (e->dom >> d & 1) return 1;
  }
  return 0;
}

/* Splits text into exactly five whitespace-separated fields. */
static int split_fields(const char *s, const char *end, const char *f[NFIELDS][2], char *err, size_t errlen) {
  int n = 0;
  while (s < end) {
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    if (s >= end) break;
    const char *start = s;
    while (s < end && *s != ' ' && *s != '\t') s++;
    if (n < NFIELDS) { f[n][0] = start; f[n][1] = s; }
    n++;
  }
  if (n == NFIELDS) return 0;
  snprintf(err, errlen, "expected 5 fields (minute hour day-of-month month day-of-week), got %d", n);
  return -1;
}

/* The "N seconds" form of text[0..len) (leading blanks skipped): 1 and
 * *n set; 0 when text is not of that form; -1 with err when N is out of
 * range. */
static int parse_seconds(const char *text, size_t len, int *n, char *err, size_t errlen) {
  const char *p = text, *end = text + len;
  int v = 0, digits = 0;
  while (p < end && isdigit((unsigned char)*p) && digits < 4) { v = v * 10 + (*p - '0'); p++; digits++; }
  if (digits == 0 || p == end || (*p != ' ' && *p != '\t')) return 0;
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  size_t rest = (size_t)(end - p);
  if (rest >= 6 && strncasecmp(p, "second", 6) == 0) {
    p += 6;
    if (p < end && (*p == 's' || *p == 'S')) p++;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    if (p != end) return 0;
    if (digits > 2 || v < 1 || v > 59) {
      snprintf(err, errlen, "seconds: %d is out of range 1-59", v);
      return -1;
    }
    *n = v;
    return 1;
  }
  return 0;
}

int cron_parse(const char *text, size_t len, cron_expr *out, char *err, size_t errlen) {
  const char *end = text + len, *f[NFIELDS][2];
  uint64_t bits[NFIELDS];
  int secs = 0, form;
  if (memchr(text, '\0', len)) { snprintf(err, errlen, "contains a NUL byte"); return -1; }
  while (len > 0 && (*text == ' ' || *text == '\t')) { text++; len--; }
  form = parse_seconds(text, len, &secs, err, errlen);
  if (form < 0) return -1;
  if (form > 0) {
    memset(out, 0, sizeof *out);
    out->seconds = (unsigned char)secs;
    return 0;
  }
  if (len > 0 && *text == '@') {
    for (size_t i = 0; i < sizeof MACROS / sizeof MACROS[0]; i++) {
      size_t n = strlen(MACROS[i][0]);
      const char *rest = text + n;
      while (rest < end && (*rest == ' ' || *rest == '\t')) rest++;
      if (len >= n && strncasecmp(text, MACROS[i][0], n) == 0 && rest == end)
        return cron_parse(MACROS[i][1], strlen(MACROS[i][1]), out, err, errlen);
    }
    snprintf(err, errlen, "unknown macro (use @yearly, @monthly, @weekly, @daily or @hourly)");
    return -1;
  }
  if (split_fields(text, end, f, err, errlen) < 0) return -1;
  for (int i = 0; i < NFIELDS; i++) {
    parser ps = {f[i][0], f[i][1], err, errlen, i};
    if (parse_field(&ps, &bits[i]) < 0) return -1;
  }
  out->minute = bits[F_MIN];
  out->hour = (uint32_t)bits[F_HOUR];
  out->dom = (uint32_t)bits[F_DOM];
  out->month = (uint16_t)bits[F_MONTH];
  out->dow = (uint8_t)bits[F_DOW];
  out->dom_star = *f[F_DOM][0] == '*';
  out->dow_star = *f[F_DOW][0] == '*';
  out->seconds = 0;
  if (out->dow_star && !some_day_exists(out)) {
    snprintf(err, errlen, "day of month: never occurs in the given months");
    return -1;
  }
  return 0;
}

/* ---- evaluation on the civil (zone-less) clock ---- */

/* 1 when the day of c matches the day-of-month/day-of-week rule. */
static int day_matches(const cron_expr *e, const civil *c) {
  int dom = (int)(e->dom >> c->day & 1), dow = (int)(e->dow >> c->wday & 1);
  if (e->dom_star || e->dow_star) return dom && dow;
  return dom || dow;
}

int cron_matches(const cron_expr *e, int64_t t) {
  civil c;
  if (t < CRON_TIME_MIN || t > CRON_TIME_MAX) return 0;
  if (e->seconds) return t % e->seconds == 0;
  split(t, &c);
  return (e->month >> c.month & 1) && day_matches(e, &c) && (e->hour >> c.hour & 1) && (e->minute >> c.minute & 1);
}

/* Start (civil seconds) of month m of year y; m may be 13 (next January). */
static int64_t month_start(int64_t y, int m) {
  if (m > 12) { y++; m = 1; }
  return days_from_civil(y, m, 1) * DAY;
}

int cron_next_civil(const cron_expr *e, int64_t after, int64_t *out) {
  if (after < CRON_TIME_MIN || after > CRON_TIME_MAX) return -1;
  if (e->seconds) {
    int64_t t = after - after % e->seconds + e->seconds;
    if (t > CRON_TIME_MAX) return -1;
    *out = t;
    return 0;
  }
  int64_t t = after - after % 60 + 60, limit = after + (int64_t)SEARCH_YEARS * 366 * DAY;
  if (limit > CRON_TIME_MAX) limit = CRON_TIME_MAX;
  civil c;
  while (t <= limit) {
    split(t, &c);
    if (!(e->month >> c.month & 1)) t = month_start(c.year, c.month + 1);
    else if (!day_matches(e, &c)) t = (c.days + 1) * DAY;
    else if (!(e->hour >> c.hour & 1)) t = c.days * DAY + (c.hour + 1) * 3600;
    else if (!(e->minute >> c.minute & 1)) t += 60;
    else { *out = t; return 0; }
  }
  return -1;
}

int cron_prev_civil(const cron_expr *e, int64_t at, int64_t *out) {
  if (at < CRON_TIME_MIN || at > CRON_TIME_MAX) return -1;
  if (e->seconds) { *out = at - at % e->seconds; return 0; }
  int64_t t = at - at % 60, limit = at - (int64_t)SEARCH_YEARS * 366 * DAY;
  if (limit < CRON_TIME_MIN) limit = CRON_TIME_MIN;
  civil c;
  while (t >= limit) {
    split(t, &c);
    if (!(e->month >> c.month & 1)) t = month_start(c.year, c.month) - 60;
    else if (!day_matches(e, &c)) t = c.days * DAY - 60;
    else if (!(e->hour >> c.hour & 1)) t = c.days * DAY + c.hour * 3600 - 60;
    else if (!(e->minute >> c.minute & 1)) t -= 60;
    else { *out = t; return 0; }
  }
  return -1;
}

/* ---- zones ---- */

/* 1 for the zones handled without the zone database. */
static int is_utc(const char *tz) {
  return tz == NULL || *tz == '\0' || strcmp(tz, "UTC") == 0 || strcmp(tz, "Etc/UTC") == 0;
}

int cron_zone_ok(const char *tz) {
  if (is_utc(tz)) return 1;
  if (tz[0] == '/' || strstr(tz, "..") != NULL || strlen(tz) > 200) return 0;
  for (const char *p = tz; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("/_+-", *p)) return 0;
  const char *dir = getenv("TZDIR");
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", tz);
  return access(path, R_OK) == 0;
}

typedef struct { char *old; int had; } zone_saved;

/* Makes tz the process's zone; the previous TZ goes into *s. */
static void zone_enter(const char *tz, zone_saved *s) {
  const char *old = getenv("TZ");
  s->had = old != NULL;
  s->old = old ? strdup(old) : NULL;
  setenv("TZ", tz, 1);
  tzset();
}

/* Puts back the TZ saved by zone_enter. */
static void zone_leave(zone_saved *s) {
  if (s->had && s->old) setenv("TZ", s->old, 1);
  else unsetenv("TZ");
  free(s->old);
  tzset();
}

/* Wall-clock (civil) seconds of UTC time u in the current zone. */
static int64_t to_wall(int64_t u) {
  time_t tt = (time_t)u;
  struct tm tm;
  if (localtime_r(&tt, &tm) == NULL) return -1;
  return days_from_civil((int64_t)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday) * DAY +
         tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
}

/* The UTC time at which the wall clock first shows w in the current zone:
 * the earlier of two readings, or the end of a DST gap that skips w. */
static int64_t from_wall(int64_t w) {
  int64_t best = -1;
  for (int dst = 0; dst <= 1; dst++) {
    civil c;
    split(w, &c);
    struct tm tm = {0};
    tm.tm_year = (int)(c.year - 1900); tm.tm_mon = c.month - 1; tm.tm_mday = c.day;
    tm.tm_hour = c.hour; tm.tm_min = c.minute; tm.tm_isdst = dst;
    time_t u = mktime(&tm);
    if (u != (time_t)-1 && to_wall((int64_t)u) == w && (best < 0 || (int64_t)u < best)) best = (int64_t)u;
  }
  if (best >= 0) return best;
  /* a gap: the first instant whose wall time is past w (offsets change by
   * far less than a day, and the wall clock only jumps forward here) */
  int64_t lo = w - 2 * DAY, hi = w + 2 * DAY;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (to_wall(mid) > w) hi = mid; else lo = mid + 1;
  }
  return lo;
}

/* Shared body of cron_next_tz (dir > 0) and cron_prev_tz (dir < 0): search
 * on the wall clock, then convert; skip wall times whose UTC instant falls
 * on the wrong side of t (a repeated hour's second pass). */
static int search_tz(const cron_expr *e, int64_t t, const char *tz, int64_t *out, int dir) {
  if (is_utc(tz) || e->seconds) return dir > 0 ? cron_next_civil(e, t, out) : cron_prev_civil(e, t, out);
  if (t < CRON_TIME_MIN || t > CRON_TIME_MAX) return -1;
  zone_saved s;
  zone_enter(tz, &s);
  int64_t w = to_wall(t), found;
  int rc = -1;
  for (int i = 0; i < 1000 && w >= 0; i++) {
    if ((dir > 0 ? cron_next_civil(e, w, &found) : cron_prev_civil(e, w, &found)) != 0) break;
    int64_t u = from_wall(found);
    if (dir > 0 ? u > t : u <= t) { *out = u; rc = 0; break; }
    w = dir > 0 ? found : found - 60;
  }
  zone_leave(&s);
  return rc;
}

int cron_next_tz(const cron_expr *e, int64_t after, const char *tz, int64_t *out) {
  return search_tz(e, after, tz, out, 1);
}

int cron_prev_tz(const cron_expr *e, int64_t at, const char *tz, int64_t *out) {
  return search_tz(e, at, tz, out, -1);
}

int cron_format(int64_t t, const char *tz, char *buf, size_t buflen) {
  if (t < CRON_TIME_MIN || t > CRON_TIME_MAX) return -1;
  int64_t w = t;
  if (!is_utc(tz)) {
    zone_saved s;
    zone_enter(tz, &s);
    w = to_wall(t);
    zone_leave(&s);
    if (w < 0) return -1;
  }
  civil c;
  split(w, &c);
  int sec = (int)(w % 60);
  int off = (int)((w - t) / 60), aoff = off < 0 ? -off : off;
  int n = snprintf(buf, buflen, "%04d-%02d-%02dT%02d:%02d:%02d", (int)c.year, c.month, c.day, c.hour, c.minute, sec);
  if (is_utc(tz)) snprintf(buf + n, buflen - (size_t)n, "Z");
  else snprintf(buf + n, buflen - (size_t)n, "%c%02d:%02d", off < 0 ? '-' : '+', aoff / 60, aoff % 60);
  return 0;
}
