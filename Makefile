# matviews: build, test, demo. `make test` and `make demo` work as the only
# command typed on a fresh machine: they install what is missing first.
CC      ?= gcc
PREFIX  ?= /usr/local
LUA_PC  := lua5.4
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE
CPPFLAGS_ALL = $(shell pkg-config --cflags $(LUA_PC) 2>/dev/null || echo -I/usr/include/lua5.4) -I$(shell pg_config --includedir 2>/dev/null) \
	-DMATVIEWS_LUADIR='"$(PREFIX)/share/matviews/lua"' -DMV_PG_BINDIR='"$(shell pg_config --bindir 2>/dev/null)"'
LDLIBS_ALL = $(shell pkg-config --libs $(LUA_PC) 2>/dev/null || echo -llua5.4) -L$(shell pg_config --libdir 2>/dev/null) -lpq -lreadline -lm

SRCS := $(wildcard src/*.c)
HDRS := $(wildcard src/*.h)
OBJS := $(SRCS:src/%.c=build/%.o)
ASAN_OBJS := $(SRCS:src/%.c=build/asan/%.o)
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

DEB_PKGS := lua5.4 liblua5.4-dev lua-cjson lua-busted lua-argparse libpq-dev postgresql libreadline-dev clang libclang-rt-dev graphviz help2man man-db prometheus curl
# The server's headers, for the extension of pgext/ (the C change trigger):
# the major version of the installed server (Debian's `postgresql`: 15).
PG_MAJOR := $(or $(shell pg_config --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p'),15)
DEB_PKGS += postgresql-server-dev-$(PG_MAJOR)
# The charting library `matviews report --html` inlines (package-lock.json).
REPORT_LIB := node_modules/uplot/dist

.PHONY: all docs deps browser-deps bench-deps asan test demo install install-pgext pgext clean fuzz

all: matviews

matviews: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $(OBJS) $(LDLIBS_ALL) -Wl,-E

build/%.o: src/%.c $(HDRS) | build
	@echo "cc $<"
	@$(CC) $(WARN) $(CFLAGS) $(CPPFLAGS_ALL) -c -o $@ $<

build/asan/%.o: src/%.c $(HDRS) | build
	@mkdir -p build/asan
	@echo "cc (asan) $<"
	@$(CC) $(WARN) $(ASAN_FLAGS) $(CPPFLAGS_ALL) -c -o $@ $<

build:
	@mkdir -p build

# pgext/: the extension matviews_changes, the statement trigger of change
# tracking in C (apply uses it when the server has it, else PL/pgSQL).
# `make install-pgext` (root) copies it into the server's directories; a
# file that is already there unchanged is left alone (a server may have it
# loaded). `make test` does it first, so the spec clusters have it.
PGEXT_FLAGS := -Wall -Wextra -Werror -Wmissing-prototypes -Wdeclaration-after-statement -Wpointer-arith \
	-fPIC -O2 -g -fno-strict-aliasing -fwrapv
PGEXT_FILES := pgext/matviews_changes.control pgext/matviews_changes--1.0.sql
pgext: build/pgext/matviews_changes.so

build/pgext/matviews_changes.so: pgext/matviews_changes.c
	@mkdir -p build/pgext
	@echo "cc (server extension) $<"
	@$(CC) $(PGEXT_FLAGS) -isystem $(shell pg_config --includedir-server) -shared -o $@ $<

install-pgext: build/pgext/matviews_changes.so
	@lib=$$(pg_config --pkglibdir); ext=$$(pg_config --sharedir)/extension; \
	install -d $(DESTDIR)$$lib $(DESTDIR)$$ext; \
	cmp -s build/pgext/matviews_changes.so $(DESTDIR)$$lib/matviews_changes.so || \
	  install -m 755 build/pgext/matviews_changes.so $(DESTDIR)$$lib/; \
	for f in $(PGEXT_FILES); do \
	  cmp -s $$f $(DESTDIR)$$ext/$${f#pgext/} || install -m 644 $$f $(DESTDIR)$$ext/; \
	done

# The manual page and the shell completion scripts, from the CLI's own help
# and its argparse parser (installed by `make install`).
CLI_LUA := lua/matviews/cli.lua $(wildcard lua/matviews/commands/*.lua)
DOCS := build/matviews.1 build/completion/matviews.bash build/completion/_matviews
docs: $(DOCS)

build/matviews.1: matviews tools/man.sh $(CLI_LUA) | build
	@sh tools/man.sh ./matviews $@

build/completion/matviews.bash: matviews $(CLI_LUA)
	@mkdir -p build/completion && ./matviews completion bash >$@

build/completion/_matviews: matviews $(CLI_LUA)
	@mkdir -p build/completion && ./matviews completion zsh >$@

# The same host with AddressSanitizer and UBSan, as ./matviews-asan.
asan: matviews-asan
matviews-asan: $(ASAN_OBJS)
	$(CC) $(ASAN_FLAGS) -o $@ $(ASAN_OBJS) $(LDLIBS_ALL) -Wl,-E

# libFuzzer targets: fuzz/NAME_fuzz.c exercises src/NAME.c; each runs
# FUZZ_SECONDS with the seeds of fuzz/corpus/NAME. A crash leaves its input
# as build/fuzz/crash-* and fails the target. `make test` runs each for 10 s
# first, so a target that no longer builds or crashes fails the suite.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_NAMES := $(patsubst fuzz/%_fuzz.c,%,$(wildcard fuzz/*_fuzz.c))

fuzz: $(FUZZ_NAMES:%=build/fuzz/%_fuzz)
	@for n in $(FUZZ_NAMES); do \
	  mkdir -p build/fuzz/corpus-$$n fuzz/corpus/$$n; \
	  echo "fuzz $$n for $(FUZZ_SECONDS)s"; \
	  ./build/fuzz/$${n}_fuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/ build/fuzz/corpus-$$n fuzz/corpus/$$n >build/fuzz/$$n.log 2>&1 \
	    || { tail -n 60 build/fuzz/$$n.log; exit 1; }; \
	  grep -a '^stat::number_of_executed_units' build/fuzz/$$n.log; \
	done

build/fuzz/%_fuzz: fuzz/%_fuzz.c src/%.c src/%.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ fuzz/$*_fuzz.c src/$*.c

deps: node_modules/.package-lock.json
	@sh tools/deps.sh $(DEB_PKGS)

node_modules/.package-lock.json: package.json package-lock.json
	@sh tools/npm.sh

# Headless Chromium for the report's browser spec.
browser-deps:
	@sh tools/deps.sh chromium

# The tools of bench/: hyperfine, pgbench (in the server package), GNU time.
bench-deps: deps
	@sh tools/deps.sh hyperfine postgresql-15 postgresql-client-15 time valgrind

test: deps browser-deps
	@$(MAKE) --no-print-directory all asan docs install-pgext
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10
	@MATVIEWS_BINS="./matviews ./matviews-asan" sh spec/run.sh

# DEMO_USERS=N sets the scale (default 50,000 users).
demo: deps
	@$(MAKE) --no-print-directory all
	@./matviews run demo/demo.lua

install: matviews node_modules/.package-lock.json $(DOCS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/matviews/lua/matviews \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	  $(DESTDIR)$(PREFIX)/share/zsh/site-functions
	install -m 644 build/matviews.1 $(DESTDIR)$(PREFIX)/share/man/man1/matviews.1
	install -m 644 build/completion/matviews.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/matviews
	install -m 644 build/completion/_matviews $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_matviews
	install -m 755 matviews $(DESTDIR)$(PREFIX)/bin/matviews
	cp -R lua/. $(DESTDIR)$(PREFIX)/share/matviews/lua/
	install -m 644 $(REPORT_LIB)/uPlot.iife.min.js $(REPORT_LIB)/uPlot.min.css $(DESTDIR)$(PREFIX)/share/matviews/lua/matviews/report/
	@# the compiled modules (src/chunks.c), made by a first start; staged (DESTDIR) paths would not match
	install -d $(DESTDIR)$(PREFIX)/share/matviews/luac
	[ -n "$(DESTDIR)" ] || $(PREFIX)/bin/matviews --version >/dev/null || true

clean:
	rm -rf build matviews matviews-asan
