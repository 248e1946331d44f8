/*
 * validate.h: pure C checks of what a definition names and runs, with no Lua
 * or libpq dependency (so they can be fuzzed on their own). Each returns 1
 * when the input is acceptable, else 0 with a one-line reason in err.
 */
#ifndef MV_VALIDATE_H
#define MV_VALIDATE_H
#include <stddef.h>

#define MV_MAX_IDENT 63   /* NAMEDATALEN - 1 */

/* A simple identifier: ^[A-Za-z_][A-Za-z0-9_]*$, 1..63 bytes. */
int mv_valid_identifier(const char *s, size_t len, char *err, size_t errlen);

/* One query statement: starts (after blanks, comments and opening parens)
 * with SELECT, WITH, VALUES or TABLE; nothing but blanks, comments and
 * semicolons after a terminating semicolon; balanced parentheses (the
 * statement is put inside parentheses as a subquery). Quoted strings, E'' strings,
 * quoted identifiers, dollar quotes and nested comments are skipped.
 * On success *stmt_len (when not NULL) is the length of the statement
 * without its trailing semicolon, blanks and comments. */
int mv_valid_query_sql(const char *s, size_t len, size_t *stmt_len, char *err, size_t errlen);

#endif
