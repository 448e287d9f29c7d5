# sessioncache: a shared-memory session cache with durable backing, for
# PostgreSQL 15+ (PGXS).
#
#   make && make install        build and install the extension
#   make installcheck           regression, isolation and TAP tests, each on a
#                               temporary instance (run as a non-root user;
#                               scripts/test.sh does all of it, as root)

MODULE_big = sessioncache
OBJS = \
	src/settings.o \
	src/arena.o \
	src/wheel.o \
	src/store.o \
	src/clock.o \
	src/internal_sql.o \
	src/locks.o \
	src/durable.o \
	src/caches.o \
	src/pending.o \
	src/notify.o \
	src/engine.o \
	src/xact.o \
	src/membership.o \
	src/expiry.o \
	src/writeback.o \
	src/prewarm.o \
	src/workers.o \
	src/sql_api.o \
	src/views.o \
	src/sessioncache.o

EXTENSION = sessioncache
DATA = sessioncache--1.0.sql sessioncache--1.0--1.1.sql
PGFILEDESC = "sessioncache - shared-memory session cache with durable backing"

PG_CPPFLAGS = -I$(srcdir)/src
# -Wextra without unused-parameter (PostgreSQL's own headers and callback
# signatures trip it) and missing-field-initializers (the "= {0}" idiom)
PG_CFLAGS = -Wall -Wextra -Wclobbered -Wno-unused-parameter \
	-Wno-missing-field-initializers -Wmissing-prototypes -Werror


# every sql/*.sql is a regression test, every test/specs/*.spec an isolation test
REGRESS = $(sort $(basename $(notdir $(wildcard $(srcdir)/sql/*.sql))))
REGRESS_OPTS = --temp-instance=test/tmp_regress \
	--temp-config=test/sessioncache.conf --load-extension=sessioncache

ISOLATION = $(sort $(basename $(notdir $(wildcard $(srcdir)/test/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test --outputdir=test/output_iso --temp-instance=test/tmp_iso \
	--temp-config=test/sessioncache.conf --load-extension=sessioncache

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = results regression.diffs regression.out test/output_iso test/tmp_regress test/tmp_iso test/tmp_check

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# the tests run in the database named by sessioncache.database in
# test/sessioncache.conf (set after PGXS, which has its own defaults)
CONTRIB_TESTDB = sessioncache_test
ISOLATION_TESTDB = sessioncache_test

# fuzz, fuzz-short, asan, valgrind, lint (see mk/robustness.mk)
include $(srcdir)/mk/robustness.mk

# the 32-client, 5-minute mixed load test of bench/load.sh (by hand, as root)
.PHONY: load bench
load:
	bench/load.sh
bench:
	bench/run.sh

# every object depends on the headers (PGXS tracks no header dependencies)
$(OBJS): $(wildcard $(srcdir)/src/*.h)
