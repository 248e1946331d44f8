/*
 * validate.c: name and query checks (see validate.h). A small SQL lexer that
 * knows just enough of PostgreSQL's quoting to find the end of the first
 * statement. Owns no memory.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "validate.h"

/* Character classes in the C locale only: unicode is not an identifier here. */
static int is_alpha_(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_ident(int c) { return is_alpha_(c) || is_digit(c); }
static int is_blank(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

int mv_valid_identifier(const char *s, size_t len, char *err, size_t errlen) {
  if (s == NULL || len == 0) {
    snprintf(err, errlen, "is empty");
    return 0;
  }
  if (memchr(s, '\0', len) != NULL) {
    snprintf(err, errlen, "contains a NUL byte");
    return 0;
  }
  if (len > MV_MAX_IDENT) {
    snprintf(err, errlen, "is %zu bytes long (at most %d)", len, MV_MAX_IDENT);
    return 0;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i == 0 ? !is_alpha_(c) : !is_ident(c)) {
      snprintf(err, errlen, "is not a simple identifier (letters, digits and underscores, not starting with a digit)");
      return 0;
    }
  }
  return 1;
}

/* Skips from s[i] (a quote char q) to just past the closing quote; a doubled
 * quote is an escaped one; backslash escapes when bs. Returns len+1 when
 * unterminated. */
static size_t skip_quoted(const char *s, size_t len, size_t i, char q, int bs) {
  for (i++; i < len; i++) {
    if (bs && s[i] == '\\') { i++; continue; }
    if (s[i] == q) {
      if (i + 1 < len && s[i + 1] == q) { i++; continue; }
      return i + 1;
    }
  }
  return len + 1;
}

/* At s[i] == '$': when a dollar-quote opening tag starts here, returns the
 * index just past the closing tag (len+1 if unterminated); else 0. */
static size_t skip_dollar(const char *s, size_t len, size_t i) {
  size_t j = i + 1;
  if (i > 0 && is_ident((unsigned char)s[i - 1])) return 0;   /* a$b is an identifier */
  if (j < len && is_digit((unsigned char)s[j])) return 0;       /* $1 is a parameter */
  while (j < len && is_ident((unsigned char)s[j])) j++;
  if (j >= len || s[j] != '$') return 0;
  size_t taglen = j - i + 1;                                    /* "$tag$" */
  for (size_t k = j + 1; k + taglen <= len; k++)
    if (s[k] == '$' && memcmp(s + k, s + i, taglen) == 0) return k + taglen;
  return len + 1;
}

/* Skips a comment at s[i] ("--" or nested slash-star); returns the index
 * past it (len+1 when unterminated), or i when there is none. */
static size_t skip_comment(const char *s, size_t len, size_t i) {
  if (i + 1 < len && s[i] == '-' && s[i + 1] == '-') {
    while (i < len && s[i] != '\n') i++;
    return i;
  }
  if (i + 1 < len && s[i] == '/' && s[i + 1] == '*') {
    int depth = 0;
    while (i + 1 < len) {
      if (s[i] == '/' && s[i + 1] == '*') { depth++; i += 2; }
      else if (s[i] == '*' && s[i + 1] == '/') { i += 2; if (--depth == 0) return i; }
      else i++;
    }
    return len + 1;
  }
  return i;
}

/* Skips blanks and comments from i; len+1 when a comment is unterminated. */
static size_t skip_space(const char *s, size_t len, size_t i) {
  while (i < len) {
    size_t j = skip_comment(s, len, i);
    if (j > len) return j;
    if (j != i) { i = j; continue; }
    if (!is_blank((unsigned char)s[i])) break;
    i++;
  }
  return i;
}

/* 1 when the word at s[i] is one a query may start with. */
static int query_keyword(const char *s, size_t len, size_t i) {
  static const char *const words[] = { "select", "with", "values", "table" };
  for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
    size_t n = strlen(words[w]);
    if (i + n <= len && strncasecmp(s + i, words[w], n) == 0 &&
        (i + n == len || !is_ident((unsigned char)s[i + n])))
      return 1;
  }
  return 0;
}

/* Advances past one token starting at s[i] (not blank, not a comment);
 * returns len+1 when a quote is unterminated. */
static size_t skip_token(const char *s, size_t len, size_t i) {
  unsigned char c = (unsigned char)s[i];
  if (c == '\'') return skip_quoted(s, len, i, '\'', 0);
  if (c == '"') return skip_quoted(s, len, i, '"', 0);
  if ((c == 'E' || c == 'e') && i + 1 < len && s[i + 1] == '\'' &&
      (i == 0 || !is_ident((unsigned char)s[i - 1])))
    return skip_quoted(s, len, i + 1, '\'', 1);
  if (c == '$') {
    size_t j = skip_dollar(s, len, i);
    if (j) return j;
  }
  if (is_ident(c)) {
    while (i < len && (is_ident((unsigned char)s[i]) || s[i] == '$')) i++;
    return i;
  }
  return i + 1;
}

/* Walks the tokens of the statement from s[i] to its end (a semicolon or
 * the end of s), counting parentheses from depth. Returns the index where
 * it stopped and sets *end past the last token; 0 with err on an
 * unterminated quote or comment or unbalanced parentheses (a statement
 * that could close the parentheses matviews puts it in). */
static size_t walk_statement(const char *s, size_t len, size_t i, int depth, size_t *end,
                             char *err, size_t errlen) {
  while (i < len && s[i] != ';') {
    if (s[i] == '(') depth++;
    if (s[i] == ')' && --depth < 0) { snprintf(err, errlen, "has a ')' without its '('"); return 0; }
    i = skip_token(s, len, i);
    if (i > len) { snprintf(err, errlen, "has an unterminated quoted string or identifier"); return 0; }
    *end = i;
    i = skip_space(s, len, i);
    if (i > len) { snprintf(err, errlen, "has an unterminated comment"); return 0; }
  }
  if (depth > 0) { snprintf(err, errlen, "has a '(' without its ')'"); return 0; }
  return i;
}

int mv_valid_query_sql(const char *s, size_t len, size_t *stmt_len, char *err, size_t errlen) {
  size_t i, end = 0;
  int depth = 0;
  if (s == NULL || memchr(s, '\0', len) != NULL) {
    snprintf(err, errlen, s ? "contains a NUL byte" : "is empty");
    return 0;
  }
  i = skip_space(s, len, 0);
  while (i < len && s[i] == '(') { depth++; i = skip_space(s, len, i + 1); }
  if (i >= len) {
    snprintf(err, errlen, i > len ? "has an unterminated comment" : "is empty");
    return 0;
  }
  if (!query_keyword(s, len, i)) {
    snprintf(err, errlen, "must be a query starting with SELECT, WITH, VALUES or TABLE");
    return 0;
  }
  i = walk_statement(s, len, i, depth, &end, err, errlen);
  if (i == 0) return 0;
  while (i < len && s[i] == ';') {
    i = skip_space(s, len, i + 1);
    if (i > len) { snprintf(err, errlen, "has an unterminated comment"); return 0; }
  }
  if (i < len) {
    snprintf(err, errlen, "must be a single statement (found more after a semicolon)");
    return 0;
  }
  if (stmt_len) *stmt_len = end;
  return 1;
}
