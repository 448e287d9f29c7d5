# sessioncache: a shared-memory session cache with durable backing, for
# PostgreSQL 15+ (PGXS).
#
#   make && make install        build and install the extension
#   make installcheck           regression, isolation and TAP tests, each on a
#                               temporary instance (run as a non-root user;
#                               test/run-tests.sh does all of it)

MODULE_big = sessioncache
OBJS = \
	src/sessioncache.o \
	src/arena.o \
	src/table.o \
	src/caches.o \
	src/xact.o \
	src/engine.o \
	src/durable.o \
	src/writeback.o \
	src/expiry.o \
	src/notify.o \
	src/membership.o \
	src/workers.o \
	src/sql_api.o \
	src/views.o

EXTENSION = sessioncache
DATA = sessioncache--1.0.sql
PGFILEDESC = "sessioncache - shared-memory session cache with durable backing"

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wmissing-prototypes -Werror

TESTDB = sessioncache_test
CONTRIB_TESTDB = $(TESTDB)
ISOLATION_TESTDB = $(TESTDB)

REGRESS = setup caches entries transactions errors views privileges expiry limits durable notify membership
REGRESS_OPTS = --temp-instance=test/tmp_regress \
	--temp-config=test/sessioncache.conf --load-extension=sessioncache

ISOLATION = visibility rollback same_key delete_user_race stale_fill \
	user_limit counters notify membership
ISOLATION_OPTS = --inputdir=test --outputdir=test/output_iso --temp-instance=test/tmp_iso \
	--temp-config=test/sessioncache.conf --load-extension=sessioncache

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = results regression.diffs regression.out test/output_iso test/tmp_regress test/tmp_iso test/tmp_check

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
