/*
 * ticker.h: the live progress line (ticker.c). pg.c's poll loop calls
 * mv_ticker_poll() while a statement runs, and proc.c's poll_read while the
 * parallel refresh's coordinator waits for its workers; it redraws the line at most once
 * a second when the Lua side started one, and does nothing otherwise.
 */
#ifndef MV_TICKER_H
#define MV_TICKER_H
void mv_ticker_poll(void);
#endif
