#!/bin/sh
# The suites, after the dependency step and the build (make check,
# test/check.sh): starts a throwaway PostgreSQL 15 cluster under /tmp
# (where the postgres user can reach it, whatever the clone's path),
# applies the migrations to a template database, runs the bats suites
# (each file gets its own database), stops the cluster and prints
# "N passed, N failed" as its last line.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/lib/pg.sh"

: "${MI_BIN_DIR:=$top/bin}" "${MI_SHAREDIR:=$top/share}"
: "${MI_MIGRATIONS_DIR:=$top/migrations}"
export MI_BIN_DIR MI_SHAREDIR MI_MIGRATIONS_DIR


MI_TEST_TMP=$(mktemp -d /tmp/mi-test.XXXXXX)
chmod 755 "$MI_TEST_TMP"
export MI_TEST_TMP
[ -n "${MI_PG_PORT:-}" ] && MI_PG_PORT_GIVEN=1
MI_PG_PORT=${MI_PG_PORT:-$((20000 + $$ % 12000))}
export MI_PG_PORT MI_PG_DIR="$MI_TEST_TMP/pg"
cleanup() {
	pg_stop "$MI_PG_DIR"
	[ -n "${MI_KEEP_TMP:-}" ] || rm -rf "$MI_TEST_TMP"
}
trap cleanup EXIT INT TERM

# make check VALGRIND=1: every program runs under valgrind, and a leak or
# memory error fails the test that ran it (exit 99 is otherwise unused).
# --run-libc-freeres=no: glibc's cleanup at the exit of a forked child
# (the audio/video probe) would set the file offset of the stdin it
# shares with its parent back, and the parent read its input twice.
if [ -n "${VALGRIND:-}" ] && [ "$VALGRIND" != 0 ]; then
	mkdir -p "$MI_TEST_TMP/vgbin"
	for p in "$MI_BIN_DIR"/mi-*; do
		cat > "$MI_TEST_TMP/vgbin/${p##*/}" <<VG
#!/bin/sh
exec valgrind -q --error-exitcode=99 --leak-check=full \\
    --errors-for-leak-kinds=definite --show-leak-kinds=definite \\
    --trace-children=no \\
    --run-libc-freeres=no "$p" "\$@"
VG
		chmod +x "$MI_TEST_TMP/vgbin/${p##*/}"
	done
	# Audio and video are probed by ffprobe, not in a forked child:
	# valgrind checks a forked child's leaks when it leaves by _exit,
	# finds what the parent would free later (jq's state), and turns the
	# child's status into 99.
	export MI_FFPROBE="${MI_FFPROBE:-ffprobe}"
	MI_BIN_DIR="$MI_TEST_TMP/vgbin"
fi

# make check SANITIZE=...: the programs are built with sanitizers.  Every
# report goes to a file of its own (ASan, LeakSanitizer at exit, UBSan),
# whatever the test did with the program's status or stderr (a daemon
# stopped by a signal, a pipeline allowed to fail): any report fails the
# run, and the first lines of each are printed at the end.
san_dir=
if [ -n "${SANITIZE:-}" ]; then
	san_dir=$MI_TEST_TMP/sanitizer
	mkdir -p "$san_dir"
	chmod 777 "$san_dir"
	# verify_asan_link_order=0: the fault shims some tests LD_PRELOAD
	# (test/lib/failwrite.c) come before libasan.  For deeper stacks in
	# the reports (libjq has no frame pointers), run with
	# ASAN_OPTIONS=fast_unwind_on_malloc=0 (slower).
	ASAN_OPTIONS="detect_leaks=1:verify_asan_link_order=0:log_path=$san_dir/report${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
	UBSAN_OPTIONS="print_stacktrace=1:log_path=$san_dir/report${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
	export ASAN_OPTIONS UBSAN_OPTIONS
fi

# Wall-clock bounds in the tests are multiplied by MI_TEST_SLOW: the
# programs run about ten times slower under valgrind, two under the
# sanitizers.  Tests whose point is speed or batching check what depends
# on it only at full speed (MI_TEST_SLOW=1).
if [ -z "${MI_TEST_SLOW:-}" ]; then
	MI_TEST_SLOW=1
	[ -n "${SANITIZE:-}" ] && MI_TEST_SLOW=2
	[ -n "${VALGRIND:-}" ] && [ "$VALGRIND" != 0 ] && MI_TEST_SLOW=10
fi
export MI_TEST_SLOW

# The port is a guess below the ephemeral range: taken by another server
# meanwhile, the cluster starts on another.
tries=0
until PG_FSYNC=off pg_start "$MI_PG_DIR" "$MI_PG_PORT" 2>"$MI_TEST_TMP/pg.err"; do
	tries=$((tries + 1))
	if [ -z "${MI_PG_PORT_GIVEN:-}" ] && [ "$tries" -lt 5 ] &&
	    grep -q 'Address already in use' "$MI_TEST_TMP/pg.err"; then
		echo "# port $MI_PG_PORT is taken; trying another" >&2
		MI_PG_PORT=$((20000 + ($$ + tries * 7919) % 12000))
		continue
	fi
	cat "$MI_TEST_TMP/pg.err" >&2
	echo "0 passed, 1 failed"
	exit 1
done
export MI_PG_PORT
export MI_PG_BASE="postgresql://postgres@127.0.0.1:$MI_PG_PORT"
"$PGBIN/psql" -q -X "$MI_PG_BASE/postgres" -c "CREATE DATABASE mi_template" >/dev/null
DATABASE_URL="$MI_PG_BASE/mi_template" "$MI_BIN_DIR/mi-migrate" -q >/dev/null ||
    { echo "0 passed, 1 failed"; exit 1; }

if [ $# -eq 0 ]; then
	set -- "$here"/*.bats
fi
out="$MI_TEST_TMP/tap"
bats --tap "$@" | tee "$out"
pass=$(grep -c '^ok ' "$out")
fail=$(grep -c '^not ok ' "$out")
planned=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$out" | head -1)
# Tests that never reported (a crashed suite) count as failed.
if [ -n "$planned" ] && [ $((pass + fail)) -lt "$planned" ]; then
	fail=$((planned - pass))
fi
if [ -n "$san_dir" ]; then
	reports=$(find "$san_dir" -type f -name 'report*' | sort)
	if [ -n "$reports" ]; then
		for r in $reports; do
			echo "# sanitizer report ${r##*/}:"
			grep -v '^ *#[0-9]* 0x[0-9a-f]* in \(__interceptor_\|__libc_\|_start\)' "$r" |
			    head -30 | sed 's/^/#   /'
		done
		n=$(echo "$reports" | wc -l)
		echo "# $n sanitizer reports: each counts as a failed test"
		fail=$((fail + n))
	fi
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
