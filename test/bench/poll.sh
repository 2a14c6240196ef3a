#!/bin/sh
# Benchmark: one mi-poll holding many in-flight jobs against the fake
# provider server.  Submits JOBS jobs that never finish (Meshy, Suno, Veo
# and fal, a quarter each) with a 5 s poll interval, hands them all to one
# mi-poll, lets it settle, then measures it for SECONDS: peak RSS, CPU
# seconds per minute, the polls the fake answered (and the connections
# it was asked to open meanwhile), and mi-poll's CPU per poll, which is
# what holds when the fake cannot answer every poll in time.
# Goal: <= 64 MB and <= 3 CPU-seconds per minute for 10,000 jobs.
#
# usage: sh test/bench/poll.sh [jobs] [seconds]
# MI_BENCH_PERF=FILE records mi-poll with perf during the measurement
# (MI_BENCH_PERF_HZ samples a second, 999 unless set).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/test/bench/lib.sh"
jobs=${1:-10000}
secs=${2:-60}
interval=${MI_BENCH_INTERVAL_MS:-5000}

bench_init poll
bench_pg off
export MI_SHAREDIR=$top/share ASSET_STORAGE_DIR=$tmp/store
bench_fake --log "$tmp/fake.log" --no-log-polls --key bench-key

export MESHY_API_KEY=bench-key SUNO_API_KEY=bench-key GEMINI_API_KEY=bench-key \
    FAL_KEY=bench-key
export MI_MESHY_BASE_URL=$url/meshy MI_SUNO_BASE_URL=$url/suno \
    MI_NANO_BANANA_VIDEO_BASE_URL=$url/gemini MI_FAL_BASE_URL=$url/fal MI_FAL_API_URL=$url/falapi
for id in MESHY SUNO NANO_BANANA_VIDEO FAL; do
	export "MI_${id}_POLL_INTERVAL_MS=$interval" \
	    "MI_${id}_TIMEOUT_MS=36000000" "MI_${id}_CONCURRENCY=1000000"
done

run=6f1c8d2e-4b7a-4c1e-9a53-0d2f6b8e7c10
python3 - "$jobs" "$run" >"$tmp/requests" <<'EOF'
import json, sys
n, run = int(sys.argv[1]), sys.argv[2]
kinds = [("meshy", "model_3d", {"refine": False}), ("suno", "audio_bgm", {}),
         ("nano-banana-video", "video", {"duration_sec": 4}),
         ("fal", "image", {})]
for i in range(n):
    p, m, params = kinds[i % 4]
    print(json.dumps({"tenant_id": "org_bench", "run_id": run,
        "media_type": m, "prompt": "bench %d [never]" % i,
        "params": params, "provider_id": p, "fallback": []}))
EOF

t0=$(date +%s.%N)
# Exit 1: some error records (a create timed out on a busy machine); the
# jobs in flight are what counts.
"$bin/mi-submit" <"$tmp/requests" >"$tmp/jobs" 2>"$tmp/submit.err" ||
    [ $? -eq 1 ]
t1=$(date +%s.%N)
n=$(grep -c '"status":"processing"' "$tmp/jobs" || true)
echo "submitted $n jobs in $(echo "$t1 - $t0" | bc) s"

mkfifo "$tmp/in"
"$bin/mi-poll" -q <"$tmp/in" >/dev/null 2>"$tmp/poll.err" &
poll=$!
bench_pids="$bench_pids $poll"
exec 9>"$tmp/in"
cat "$tmp/jobs" >&9

cpu() {
	awk '{print $14 + $15}' "/proc/$poll/stat"
}
stats() {
	curl -s "$url/_fake/stats" | python3 -c 'import json,sys
s = json.load(sys.stdin)
print(s["polls"], s["connections"])'
}
# Settle: every job taken over and polled once.
sleep $(( (interval / 1000) * 2 + 2 ))
c0=$(cpu)
set -- $(stats)
p0=$1 k0=$2
if [ -n "${MI_BENCH_PERF:-}" ]; then
	perf record -q -F "${MI_BENCH_PERF_HZ:-999}" --call-graph dwarf,16384 \
	    -o "$MI_BENCH_PERF" -p "$poll" -- sleep "$secs" 2>/dev/null
else
	sleep "$secs"
fi
c1=$(cpu)
set -- $(stats)
p1=$1 k1=$2
hz=$(getconf CLK_TCK)
rss=$(awk '/VmHWM/{print $2}' "/proc/$poll/status")
ticks=$((c1 - c0))
polls=$((p1 - p0))
cpum=$(echo "scale=2; $ticks / $hz * 60 / $secs" | bc)
pps=$(echo "scale=0; $polls / $secs" | bc)
us=$( [ "$polls" -gt 0 ] && echo "scale=1; $ticks * 1000000 / $hz / $polls" | bc || echo "-")
ideal=$((n * 1000 / interval))
# At the ideal rate, what the CPU per poll measured here comes to.
proj=$( [ "$polls" -gt 0 ] && echo "scale=2; $ticks * $ideal * 60 / $hz / $polls" | bc || echo "-")
echo "mi-poll with $n jobs in flight, polled every $((interval / 1000)) s, measured for $secs s:"
echo "  peak RSS $((rss / 1024)) MB (goal <= 64)"
echo "  CPU $cpum s per minute (goal <= 3)"
echo "  $polls polls made, $pps/s (ideal $ideal/s); $((k1 - k0)) new connections"
echo "  CPU $us us per poll; $proj s per minute at the ideal rate"
exec 9>&-
