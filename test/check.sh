#!/bin/sh
# The whole suite from any state of a Debian 12 machine, a bare one without
# make included: installs what is missing (test/deps.sh), builds with
# warnings as errors, runs every suite against a throwaway PostgreSQL
# (test/run.sh).  The last line is always "N passed, N failed", also when
# a step before the suites fails.  Plain POSIX sh, so that it runs before
# make is installed; `make check` is the same once make is there.
#   sh test/check.sh [VAR=value ...]    make variables (CC=clang,
#                                       SANITIZE=address, ...); TESTS and
#                                       VALGRIND as for make check
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

tests=
for a in "$@"; do
	case $a in
	TESTS=*) tests=${a#TESTS=} ;;
	VALGRIND=*) VALGRIND=${a#VALGRIND=} && export VALGRIND ;;
	SANITIZE=*) SANITIZE=${a#SANITIZE=} && export SANITIZE ;;
	*=*) ;;
	*) echo "usage: sh test/check.sh [VAR=value ...]" >&2; exit 64 ;;
	esac
done
failed() {
	echo "check: $*" >&2
	echo "0 passed, 1 failed"
	exit 1
}

sh "$here/deps.sh" || failed "the dependency step failed"
jobs=$(nproc 2>/dev/null || echo 1)
make -C "$top" --no-print-directory -j"$jobs" DEVELOPER=1 "$@" all ||
    failed "the build failed"
# shellcheck disable=SC2086
MI_BIN_DIR=$top/bin MI_SHAREDIR=$top/share MI_MIGRATIONS_DIR=$top/migrations \
    exec sh "$here/run.sh" $tests
