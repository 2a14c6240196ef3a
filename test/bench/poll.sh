#!/bin/sh
# Benchmark: one mi-poll holding many in-flight jobs against the fake
# provider server.  Submits JOBS jobs that never finish (Meshy, Suno, Veo
# and fal, a quarter each) with a 5 s poll interval, hands them all to one
# mi-poll, lets it settle, then measures it for SECONDS: peak RSS, CPU
# seconds per minute, and the polls per second the fake answered.
# Goal: <= 64 MB and <= 3 CPU-seconds per minute for 10,000 jobs.
#
# usage: sh test/bench/poll.sh [jobs] [seconds]
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
    MI_NANO_BANANA_VIDEO_BASE_URL=$url/gemini MI_FAL_BASE_URL=$url/fal
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
"$bin/mi-submit" <"$tmp/requests" >"$tmp/jobs" 2>"$tmp/submit.err"
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
requests() {
	curl -s "$url/_fake/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'
}
# Settle: every job taken over and polled once.
sleep $(( (interval / 1000) * 2 + 2 ))
c0=$(cpu)
r0=$(requests)
sleep "$secs"
c1=$(cpu)
r1=$(requests)
hz=$(getconf CLK_TCK)
rss=$(awk '/VmHWM/{print $2}' "/proc/$poll/status")
cpum=$(echo "scale=2; ($c1 - $c0) / $hz * 60 / $secs" | bc)
pps=$(echo "scale=0; ($r1 - $r0) / $secs" | bc)
fcpu=$(awk -v hz="$hz" -v s="$secs" '{print $14 + $15}' "/proc/$fakepid/stat")
echo "mi-poll with $n jobs in flight, polled every $((interval / 1000)) s:"
echo "  peak RSS $((rss / 1024)) MB (goal <= 64)"
echo "  CPU $cpum s per minute (goal <= 3)"
echo "  $pps polls/s answered by the fake (ideal $((n * 1000 / interval)))"
exec 9>&-
