# Robustness tooling of sessioncache: fuzzing, sanitizers, static analysis.
# Included from the Makefile (after PGXS).  See test/fuzz/README.md.
#
#   make fuzz-short   the short fuzz run (about a minute; the test suite runs it)
#   make fuzz         the long fuzz run (1,000,000 calls)
#   make asan         build PostgreSQL (once, cached) and the extension with
#                     AddressSanitizer into $(ROBUST_DIR), run the regression
#                     and isolation suites and a short fuzz run there; fail on
#                     any report
#   make valgrind     the regression suite with every server process under
#                     valgrind memcheck (slow; optional)
#   make lint         cppcheck and clang-tidy on src/*.c; fail on any finding
#
# fuzz-short, fuzz, asan and valgrind may be run as root (they switch to user
# postgres for the servers) or as an unprivileged user.  fuzz and fuzz-short
# test the installed extension: run "make install" first.  asan and valgrind
# never touch the system installation: they install into $(ROBUST_DIR).
#
# Useful variables: FUZZ_ARGS="--seed 42 --skip join"  ROBUST_DIR=/tmp/x
#   PG_SRC=/path/to/postgresql-15.x (asan)  VALGRIND_REGRESS="smoke" (valgrind)

ROBUST_SRC := $(CURDIR)
ROBUST_DIR ?= /tmp/sessioncache-robustness
ROBUST_USER ?= postgres
FUZZ_ARGS ?=
# the real pg_config binary (Debian's /usr/bin/pg_config is a wrapper script)
ROBUST_BINDIR := $(shell $(PG_CONFIG) --bindir)
ROBUST_PGLIB := $(abspath $(ROBUST_BINDIR)/..)
ROBUST_PGSHARE := $(shell $(PG_CONFIG) --sharedir)
ROBUST_INCLUDE := $(shell $(PG_CONFIG) --includedir-server)

# run a command as $(ROBUST_USER) when we are root (PostgreSQL refuses root)
ROBUST_AS_USER = $(if $(filter 0,$(shell id -u)),runuser -u $(ROBUST_USER) --,)

.PHONY: fuzz fuzz-short asan valgrind lint lint-cppcheck lint-clang-tidy

fuzz-short:
	$(ROBUST_SRC)/test/fuzz/run.sh --short $(FUZZ_ARGS)

fuzz:
	$(ROBUST_SRC)/test/fuzz/run.sh --long $(FUZZ_ARGS)

# ---------------------------------------------------------------------------
# Static analysis
# ---------------------------------------------------------------------------

LINT_SOURCES = $(sort $(wildcard $(ROBUST_SRC)/src/*.c))
LINT_INCLUDES = -I$(ROBUST_SRC)/src -I$(ROBUST_INCLUDE)

CPPCHECK_FLAGS = --enable=warning,performance,portability --error-exitcode=1 \
	--inline-suppr --quiet --std=c99 --max-configs=1 \
	-D__GNUC__=12 -D__x86_64__ --suppress=missingIncludeSystem

# the analyzer and the bug-prone patterns, minus checks that only flag
# PostgreSQL's own idioms (_PG_init, int arithmetic on small constants,
# size_t lengths of 255-byte keys, memcpy) or argument order style
robust_empty :=
robust_space := $(robust_empty) $(robust_empty)
CLANG_TIDY_CHECKS = $(subst $(robust_space),,-*,clang-analyzer-*,bugprone-*, \
	-bugprone-easily-swappable-parameters, \
	-bugprone-reserved-identifier, \
	-bugprone-narrowing-conversions, \
	-bugprone-implicit-widening-of-multiplication-result, \
	-bugprone-macro-parentheses, \
	-bugprone-assignment-in-if-condition, \
	-clang-analyzer-security.insecureAPI.*)

lint: lint-cppcheck lint-clang-tidy

lint-cppcheck:
	@command -v cppcheck >/dev/null || { echo "lint: cppcheck is missing (apt-get install cppcheck)"; exit 2; }
	cppcheck $(CPPCHECK_FLAGS) $(LINT_INCLUDES) $(LINT_SOURCES)
	@echo "cppcheck: no findings"

lint-clang-tidy:
	@command -v clang-tidy >/dev/null || { echo "lint: clang-tidy is missing (apt-get install clang-tidy)"; exit 2; }
	@out=$$(mktemp); \
	echo "clang-tidy -checks='$(CLANG_TIDY_CHECKS)' src/*.c"; \
	clang-tidy --quiet -checks='$(CLANG_TIDY_CHECKS)' --warnings-as-errors='*' \
		$(LINT_SOURCES) -- $(LINT_INCLUDES) -D_GNU_SOURCE -std=gnu99 >$$out 2>&1; \
	rc=$$?; grep -v -E '^[0-9]+ (warning|error)s? generated' $$out; rm -f $$out; \
	if [ $$rc -ne 0 ]; then echo "clang-tidy: findings above"; exit 1; fi; \
	echo "clang-tidy: no findings"

# ---------------------------------------------------------------------------
# AddressSanitizer.  Preloading libasan into Debian's postgres does not work
# here: with glibc 2.36 it deadlocks at start-up (the gettext and setlocale
# rwlocks of glibc end up corrupted, "postgres -V" hangs), and loading it
# late, with the extension, misses PostgreSQL's siglongjmp and reports every
# ereport(ERROR) as a stack-buffer-overflow.  So PostgreSQL itself is built
# with -fsanitize=address once, from a source tree (PG_SRC, by default the
# one beside the checkout; MAKELEVEL=0 makes it generate its headers), into $(ROBUST_DIR)/postgresql-asan (about 15 minutes the
# first time, then reused), and the extension is built and installed there.
# The system installation is never touched.
# ---------------------------------------------------------------------------

PG_SRC ?= $(patsubst %/configure,%,$(firstword $(wildcard $(ROBUST_SRC)/../pg-source/postgresql-*/configure /work/pg-source/postgresql-*/configure)))
# The prefix must contain "postgres": Debian's patched source otherwise
# installs its libraries into /usr/lib/postgresql/<major>/lib, over the
# system's.  The install is staged (DESTDIR) and checked before it is moved.
ASAN_PG = $(ROBUST_DIR)/postgresql-asan
ASAN_CFLAGS = -O1 -g -fsanitize=address -fno-omit-frame-pointer
# detect_leaks=0: PostgreSQL frees by memory context and exits without
# freeing, so leak reports would be noise
ASAN_RUN_OPTIONS = detect_leaks=0:abort_on_error=1:disable_coredump=0:print_stacktrace=1

$(ASAN_PG)/bin/pg_config $(ASAN_PG)/lib/dblink.so asan: export ASAN_OPTIONS = $(ASAN_RUN_OPTIONS)

$(ASAN_PG)/bin/pg_config:
	@test -n "$(PG_SRC)" -a -f "$(PG_SRC)/configure" || { \
		echo "asan: no PostgreSQL source tree: set PG_SRC=/path/to/postgresql-15.x"; exit 2; }
	@echo "asan: building PostgreSQL from $(PG_SRC) with AddressSanitizer into $(ASAN_PG) (once)"
	rm -rf $(ROBUST_DIR)/pg-asan-build $(ROBUST_DIR)/pg-asan-stage $(ASAN_PG)
	mkdir -p $(ROBUST_DIR)/pg-asan-build
	cd $(ROBUST_DIR)/pg-asan-build && $(PG_SRC)/configure --prefix=$(ASAN_PG) --enable-debug \
		--without-readline --without-icu --without-zlib \
		CFLAGS='$(ASAN_CFLAGS)' LDFLAGS=-fsanitize=address >configure.log 2>&1 \
		|| { tail -20 configure.log; exit 2; }
	$(MAKE) -C $(ROBUST_DIR)/pg-asan-build -s -j2 MAKELEVEL=0 >$(ROBUST_DIR)/pg-asan-build/make.log 2>&1 \
		|| { tail -30 $(ROBUST_DIR)/pg-asan-build/make.log; exit 2; }
	$(MAKE) -C $(ROBUST_DIR)/pg-asan-build -s install MAKELEVEL=0 DESTDIR=$(ROBUST_DIR)/pg-asan-stage >/dev/null
	$(MAKE) -C $(ROBUST_DIR)/pg-asan-build/src/test/isolation -s install MAKELEVEL=0 \
		DESTDIR=$(ROBUST_DIR)/pg-asan-stage >/dev/null
	@stray=$$(cd $(ROBUST_DIR)/pg-asan-stage && find . ! -type d | grep -v '^\.$(ASAN_PG)/' | head -5); \
	if [ -n "$$stray" ]; then \
		echo "asan: the PostgreSQL build would install outside $(ASAN_PG), e.g. $$stray; giving up"; \
		exit 2; \
	fi
	mv $(ROBUST_DIR)/pg-asan-stage$(ASAN_PG) $(ASAN_PG)
	rm -rf $(ROBUST_DIR)/pg-asan-build $(ROBUST_DIR)/pg-asan-stage

# dblink (the regression tests use it), built from the same source tree
$(ASAN_PG)/lib/dblink.so: $(ASAN_PG)/bin/pg_config
	rm -rf $(ROBUST_DIR)/dblink-build
	mkdir -p $(ROBUST_DIR)/dblink-build
	$(MAKE) -C $(ROBUST_DIR)/dblink-build -s -f $(PG_SRC)/contrib/dblink/Makefile \
		USE_PGXS=1 PG_CONFIG=$(ASAN_PG)/bin/pg_config
	$(MAKE) -C $(ROBUST_DIR)/dblink-build -s -f $(PG_SRC)/contrib/dblink/Makefile \
		USE_PGXS=1 PG_CONFIG=$(ASAN_PG)/bin/pg_config install
	rm -rf $(ROBUST_DIR)/dblink-build

asan: $(ASAN_PG)/bin/pg_config $(ASAN_PG)/lib/dblink.so
	@case "$$($(ASAN_PG)/bin/pg_config --pkglibdir)" in $(ASAN_PG)/*) ;; \
		*) echo "asan: $(ASAN_PG) would install the extension elsewhere; giving up"; exit 2 ;; esac
	rm -rf $(ROBUST_DIR)/asan
	mkdir -p $(ROBUST_DIR)/asan/src $(ROBUST_DIR)/asan/logs
	cd $(ROBUST_SRC) && tar --exclude='./.git' --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude='./results' --exclude='./test/tmp_*' --exclude='./tmp_check' \
		--exclude='./test/output_iso' -cf - . | tar -C $(ROBUST_DIR)/asan/src -xf -
	$(MAKE) -C $(ROBUST_DIR)/asan/src -s PG_CONFIG=$(ASAN_PG)/bin/pg_config
	$(MAKE) -C $(ROBUST_DIR)/asan/src -s install PG_CONFIG=$(ASAN_PG)/bin/pg_config
	# pgTAP (plain SQL) for the regression tests that use it
	-cp $(ROBUST_PGSHARE)/extension/pgtap* $$($(ASAN_PG)/bin/pg_config --sharedir)/extension/ 2>/dev/null
	@if [ "$$(id -u)" = 0 ]; then chown -R $(ROBUST_USER): $(ROBUST_DIR)/asan; fi
	@status=0; \
	echo "asan: regression suite"; \
	$(ROBUST_AS_USER) env ASAN_OPTIONS=$(ASAN_RUN_OPTIONS):log_path=$(ROBUST_DIR)/asan/logs/asan \
		$(MAKE) -C $(ROBUST_DIR)/asan/src -s installcheck PG_CONFIG=$(ASAN_PG)/bin/pg_config \
		ISOLATION= TAP_TESTS= || status=1; \
	echo "asan: isolation suite"; \
	$(ROBUST_AS_USER) env ASAN_OPTIONS=$(ASAN_RUN_OPTIONS):log_path=$(ROBUST_DIR)/asan/logs/asan \
		$(MAKE) -C $(ROBUST_DIR)/asan/src -s installcheck PG_CONFIG=$(ASAN_PG)/bin/pg_config \
		REGRESS= TAP_TESTS= || status=1; \
	echo "asan: short fuzz run"; \
	PG_CONFIG=$(ASAN_PG)/bin/pg_config FUZZ_ASAN=1 FUZZ_OUT=$(ROBUST_DIR)/asan/fuzz \
		$(ROBUST_DIR)/asan/src/test/fuzz/run.sh --short $(FUZZ_ARGS) || status=1; \
	for d in $(ROBUST_DIR)/asan/logs $(ROBUST_DIR)/asan/fuzz/asan; do \
		ls $$d/asan* >/dev/null 2>&1 || continue; \
		echo "asan: AddressSanitizer reports in $$d:"; \
		for f in $$d/asan*; do \
			grep -E 'ERROR: AddressSanitizer|^    #[0-9]+ ' $$f | grep -E 'ERROR|sessioncache|src/[a-z_]+\.c' | head -8; \
			echo; \
		done; \
		status=1; \
	done; \
	[ $$status = 0 ] && echo "asan: no AddressSanitizer report, suites passed"; \
	exit $$status

# ---------------------------------------------------------------------------
# Valgrind: a private, relocated copy of the PostgreSQL installation
# ($(ROBUST_DIR)/valgrind/root) whose "postgres" is a wrapper that starts the
# real binary under memcheck.
# ---------------------------------------------------------------------------

# PostgreSQL's own suppressions (src/tools/valgrind.supp in its source), when
# a source tree is at hand
VALGRIND_SUPP ?= $(firstword $(wildcard $(ROBUST_SRC)/../pg-source/postgresql-*/src/tools/valgrind.supp \
	/work/pg-source/postgresql-*/src/tools/valgrind.supp))
# our source files, to keep only the reports that involve them (Debian's
# postgres is not built for valgrind: its own reports are noise here)
VALGRIND_OURS = $(subst $(robust_space),|,$(strip $(basename $(notdir $(LINT_SOURCES)))))
VALGRIND_OPTS = --quiet --trace-children=yes --track-origins=no --read-var-info=no \
	--leak-check=no --gen-suppressions=all \
	$(if $(VALGRIND_SUPP),--suppressions=$(VALGRIND_SUPP))

valgrind:
	@command -v valgrind >/dev/null || { echo "valgrind: not installed"; exit 2; }
	rm -rf $(ROBUST_DIR)/valgrind
	mkdir -p $(ROBUST_DIR)/valgrind/root$(dir $(ROBUST_PGLIB)) $(ROBUST_DIR)/valgrind/root$(dir $(ROBUST_PGSHARE)) \
		$(ROBUST_DIR)/valgrind/logs $(ROBUST_DIR)/valgrind/src
	cp -a $(ROBUST_PGLIB) $(ROBUST_DIR)/valgrind/root$(dir $(ROBUST_PGLIB))
	cp -a $(ROBUST_PGSHARE) $(ROBUST_DIR)/valgrind/root$(dir $(ROBUST_PGSHARE))
	ln -s /usr/include $(ROBUST_DIR)/valgrind/root/usr/include
	mv $(ROBUST_DIR)/valgrind/root$(ROBUST_BINDIR)/postgres $(ROBUST_DIR)/valgrind/root$(ROBUST_BINDIR)/postgres.real
	printf '%s\n' '#!/bin/sh' \
		'exec valgrind $(VALGRIND_OPTS) --log-file=$(ROBUST_DIR)/valgrind/logs/%p.log "$$0.real" "$$@"' \
		> $(ROBUST_DIR)/valgrind/root$(ROBUST_BINDIR)/postgres
	chmod 755 $(ROBUST_DIR)/valgrind/root$(ROBUST_BINDIR)/postgres
	cd $(ROBUST_SRC) && tar --exclude='./.git' --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude='./results' --exclude='./test/tmp_*' --exclude='./tmp_check' \
		--exclude='./test/output_iso' -cf - . | tar -C $(ROBUST_DIR)/valgrind/src -xf -
	$(MAKE) -C $(ROBUST_DIR)/valgrind/src -s install PG_CONFIG=$(ROBUST_DIR)/valgrind/root$(ROBUST_BINDIR)/pg_config \
		PG_CFLAGS='-Wall -Wmissing-prototypes -Werror -g -O1'
	@if [ "$$(id -u)" = 0 ]; then chown -R $(ROBUST_USER): $(ROBUST_DIR)/valgrind; fi
	@status=0; \
	$(ROBUST_AS_USER) $(MAKE) -C $(ROBUST_DIR)/valgrind/src -s installcheck ISOLATION= TAP_TESTS= \
		PG_CONFIG=$(ROBUST_DIR)/valgrind/root$(ROBUST_BINDIR)/pg_config $(if $(VALGRIND_REGRESS),REGRESS='$(VALGRIND_REGRESS)') \
		|| status=1; \
	cat $(ROBUST_DIR)/valgrind/logs/*.log 2>/dev/null | awk \
		'/^==[0-9]+== (Invalid|Conditional|Use of|Syscall param|Source and destination|Mismatched)/ \
			{ blk = $$0; inb = 1; nfr = 0; ours = 0; next } \
		 inb && /^==[0-9]+== *$$/ { if (ours) print blk "\n"; inb = 0; next } \
		 inb && /^==[0-9]+== +(at|by) / && ++nfr <= 4 && /sessioncache\.so|\(($(VALGRIND_OURS))\.c:/ { ours = 1 } \
		 inb && /^==[0-9]+== +Address/ { nfr = 99 } \
		 inb { blk = blk "\n" $$0 }' > $(ROBUST_DIR)/valgrind/ours.txt; \
	if [ -s $(ROBUST_DIR)/valgrind/ours.txt ]; then \
		echo "valgrind: memcheck reports in sessioncache's code ($(ROBUST_DIR)/valgrind/ours.txt):"; \
		head -80 $(ROBUST_DIR)/valgrind/ours.txt; \
		status=1; \
	else \
		echo "valgrind: no memcheck report in sessioncache's code" \
			"(PostgreSQL's own, e.g. uninitialised WAL padding, are in $(ROBUST_DIR)/valgrind/logs)"; \
	fi; \
	exit $$status
