#!/usr/bin/env bats
# Every program: --help, --version, bad usage, a man page; make install;
# man pages pass mandoc's lint.

load test_helper

programs() {
	for p in "$MI_BIN_DIR"/mi-*; do basename "$p"; done
}

@test "every program has --help, --version and exits 64 on a bad option" {
	for p in $(programs); do
		run -0 --separate-stderr "$p" --help
		[[ $output == *"usage: $p"* ]] || { echo "$p --help: $output"; false; }
		run -0 "$p" --version
		[ "$output" = "$p 0.1.0" ] || { echo "$p --version: $output"; false; }
		run -64 --separate-stderr "$p" --no-such-option
		[[ $stderr == "$p: unknown option '--no-such-option'"* ]] ||
		    { echo "$p: $stderr"; false; }
		[ -z "$output" ]
	done
}

@test "every program has a man page that passes mandoc -Tlint" {
	top=$(dirname "$BATS_TEST_DIRNAME")
	for p in $(programs); do
		[ -f "$top/man/$p.1" ] || { echo "no man page for $p"; false; }
	done
	[ -f "$top/man/mi.7" ]
	run mandoc -Tlint -Wwarning "$top"/man/*.[1-8]
	assert_output ""
}

@test "make install puts programs, share data and man pages under PREFIX and DESTDIR" {
	top=$(dirname "$BATS_TEST_DIRNAME")
	dest="$BATS_TEST_TMPDIR/dest"
	# A copy of the tree, so the build under test is not rebuilt.
	cp -a "$top" "$BATS_TEST_TMPDIR/src"
	rm -rf "$BATS_TEST_TMPDIR/src/test/node_modules" "$BATS_TEST_TMPDIR/src/demo"
	run make -s -C "$BATS_TEST_TMPDIR/src" install PREFIX=/opt/mi DESTDIR="$dest"
	assert_success
	for p in $(programs); do [ -x "$dest/opt/mi/bin/$p" ]; done
	[ -f "$dest/opt/mi/share/man/man1/mi-store.1" ]
	[ -f "$dest/opt/mi/share/man/man7/mi.7" ]
	[ -f "$dest/opt/mi/share/mi/migrations/0001_core.sql" ]
	# The installed programs find their share data without any variable.
	strings "$dest/opt/mi/bin/mi-migrate" | grep -qx /opt/mi/share/mi
	run make -s -C "$BATS_TEST_TMPDIR/src" uninstall PREFIX=/opt/mi DESTDIR="$dest"
	assert_success
	[ -z "$(find "$dest" -type f)" ]
}

@test "an installed mi-migrate finds its migrations by itself" {
	top=$(dirname "$BATS_TEST_DIRNAME")
	cp -a "$top" "$BATS_TEST_TMPDIR/src"
	rm -rf "$BATS_TEST_TMPDIR/src/test/node_modules" "$BATS_TEST_TMPDIR/src/demo"
	prefix="$BATS_TEST_TMPDIR/prefix"
	make -s -C "$BATS_TEST_TMPDIR/src" install PREFIX="$prefix" >/dev/null
	mi_setup_db
	$PSQL -q -X "$MI_PG_BASE/postgres" -c "CREATE DATABASE inst_$$" >/dev/null
	run -0 --separate-stderr env -u MI_SHAREDIR -u MI_MIGRATIONS_DIR \
	    DATABASE_URL="$MI_PG_BASE/inst_$$" "$prefix/bin/mi-migrate"
	echo "$output" | jq -e -s 'length >= 1 and all(.status == "applied")'
}
