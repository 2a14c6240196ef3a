#!/bin/sh
# Runs libFuzzer targets built by `make fuzz-build` for SECONDS each:
#   sh test/fuzz/run.sh SECONDS NAME...
# Each target starts from its kept corpus (test/fuzz/corpus/NAME/, read
# only) and a working one (.build/fuzz/corpus/NAME/, where new inputs go);
# a crash, leak or timeout input is written to .build/fuzz/NAME-*.  Prints
# one line per target, "NAME: N executions in S s, K crashes", and exits
# 1 when any target found one.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=$1
shift
out=$top/.build/fuzz
bad=0
for t in "$@"; do
	bin=$out/$t
	if [ ! -x "$bin" ]; then
		echo "$t: not built (make fuzz-build)" >&2
		bad=1
		continue
	fi
	mkdir -p "$out/corpus/$t" "$here/corpus/$t"
	rm -f "$out/$t"-crash-* "$out/$t"-leak-* "$out/$t"-timeout-* \
	    "$out/$t"-oom-*
	set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -artifact_prefix="$out/$t-"
	[ -f "$here/$t.dict" ] && set -- "$@" -dict="$here/$t.dict"
	"$bin" "$@" "$out/corpus/$t" "$here/corpus/$t" >"$out/$t.log" 2>&1
	st=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log")
	took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' \
	    "$out/$t.log")
	found=$(ls "$out/$t"-crash-* "$out/$t"-leak-* "$out/$t"-timeout-* \
	    "$out/$t"-oom-* 2>/dev/null | wc -l)
	if [ "$st" -ne 0 ] && [ "$found" -eq 0 ]; then
		found=1		# died without writing an input
	fi
	echo "$t: ${runs:-0} executions in ${took:-$secs} s, $found crashes"
	if [ "$found" -ne 0 ]; then
		bad=1
		tail -40 "$out/$t.log" >&2
		ls "$out/$t"-* 2>/dev/null | grep -v '\.log$' >&2
	fi
done
exit $bad
