#!/usr/bin/env bats
# The libFuzzer targets (test/fuzz/NAME.c): each builds, has a kept
# corpus, and runs a short while (10 s; MI_FUZZ_TIME) from that corpus
# without a crash, leak or timeout.  `make fuzz` runs them for longer.

load test_helper

setup_file() {
	TOP=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	export TOP
}

fmake() {
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$TOP" "$@"
}

@test "every fuzz target has a kept corpus and library sources in the Makefile" {
	local c t n=0
	for c in "$TOP"/test/fuzz/*.c; do
		t=$(basename "$c" .c)
		n=$((n + 1))
		ls "$TOP/test/fuzz/corpus/$t/" | grep -q .
		grep -q "^FUZZ_SRCS_$t *=" "$TOP/Makefile"
	done
	[ "$n" -ge 2 ]
}

@test "every fuzz target runs from its corpus without a crash" {
	run fmake fuzz-build
	[ "$status" -eq 0 ] || { echo "$output"; false; }
	run fmake fuzz FUZZ_TIME="${MI_FUZZ_TIME:-10}"
	echo "$output"
	[ "$status" -eq 0 ]
	for c in "$TOP"/test/fuzz/*.c; do
		t=$(basename "$c" .c)
		[[ $output == *"$t: "*" executions in "*", 0 crashes"* ]]
	done
}
