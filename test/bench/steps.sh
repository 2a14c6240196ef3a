#!/bin/bash
# Benchmark: what naming steps saves.  N requests (Meshy previews, fal
# images, ElevenLabs sounds against the fake provider) are each sent R
# times by R pipelines running at once, first as anonymous requests (no
# step named: every send is new work, mi's behaviour before steps), then
# as named steps of one run; then the named steps once more in a new run
# (the step cache).  Prints jobs and creates per step (creates counted by
# the fake provider) and the wall time of each round, side by side with
# the anonymous round as the reference.
#
# usage: bash test/bench/steps.sh [N] [R]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/test/bench/lib.sh"
N=${1:-100}
R=${2:-3}
export PATH="$bin:$PATH" MI_SHAREDIR=${MI_SHAREDIR:-$top/share}
export MI_MIGRATIONS_DIR=${MI_MIGRATIONS_DIR:-$top/migrations}

bench_init steps
bench_pg off
export ASSET_STORAGE_DIR="$tmp/store"
mkdir -p "$ASSET_STORAGE_DIR"
bench_fake --log /dev/null --job-ms 300 --no-log-polls
key=test-key-123
export MESHY_API_KEY=$key FAL_KEY=$key ELEVENLABS_API_KEY=$key
export MI_MESHY_BASE_URL=$url/meshy MI_FAL_BASE_URL=$url/fal MI_FAL_API_URL=$url/falapi \
    MI_ELEVENLABS_SFX_BASE_URL=$url/elevenlabs
for id in MESHY FAL ELEVENLABS_SFX; do
	export "MI_${id}_POLL_INTERVAL_MS=100" "MI_${id}_CONCURRENCY=50"
done
export MI_ALLOWED_FAILS=100000
sql() { "$PGBIN/psql" -X -q -A -t "$DATABASE_URL" -c "$1"; }

# requests ROUND NAMED RUN: N requests; named ones are steps s0..s(N-1)
# of RUN, with prompts that do not change between rounds.
requests() {
	python3 - "$1" "$2" "$3" "$N" <<'EOF'
import json, sys, uuid
rnd, named, run, n = sys.argv[1], sys.argv[2] == "1", sys.argv[3], int(sys.argv[4])
for i in range(n):
    k = i % 3
    r = {"tenant_id": "org_bench", "run_id": run,
         "prompt": "bench %s %d" % ("named" if named else rnd, i),
         "fallback": []}
    if k == 0:
        r.update(media_type="model_3d", provider_id="meshy",
                 params={"refine": False})
    elif k == 1:
        r.update(media_type="image", provider_id="fal", params={})
    else:
        r.update(media_type="audio_sfx", provider_id="elevenlabs-sfx",
                 params={"duration_sec": 1, "sfx_type": "click"})
    if named:
        r.update(step_id="s%d" % i, workflow_name="bench")
    print(json.dumps(r))
EOF
}

creates() {
	curl -s "$url/_fake/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(sum(s.get("creates_accepted", {}).values()))'
}

# round NAME FILE: R pipelines at once over FILE; prints "ms creates".
round() {
	local i t0 c0
	c0=$(creates)
	t0=$(date +%s%3N)
	for i in $(seq 1 "$R"); do
		(mi-submit <"$2" 2>/dev/null | mi-poll -q 2>/dev/null |
		    mi-fetch >"$tmp/$1.$i.out" 2>/dev/null) &
	done
	wait
	echo "$(($(date +%s%3N) - t0)) $(($(creates) - c0))"
}

run1=$(cat /proc/sys/kernel/random/uuid)
run2=$(cat /proc/sys/kernel/random/uuid)
requests anon 0 "$run1" >"$tmp/anon"
requests named 1 "$run1" >"$tmp/named"
requests named 1 "$run2" >"$tmp/again"
read -r t_anon c_anon <<<"$(round anon "$tmp/anon")"
read -r t_named c_named <<<"$(round named "$tmp/named")"
read -r t_again c_again <<<"$(round again "$tmp/again")"
jobs_named=$(sql "SELECT count(*) FROM app.generation_jobs g
    JOIN app.run_steps s ON s.id = g.run_step_id WHERE s.workflow_name = 'bench'
    AND s.run_id = '$run1'")
twice=$(sql "SELECT count(*) FROM (SELECT g.run_step_id FROM app.generation_jobs g
    JOIN app.run_steps s ON s.id = g.run_step_id
    WHERE s.workflow_name = 'bench' AND s.run_id = '$run1'
    GROUP BY 1 HAVING sum(g.submit_count) > 1) x")
hits=$(sql "SELECT count(*) FROM app.run_steps WHERE run_id = '$run2'
    AND cache_hit")
saved=$(sql "SELECT coalesce(sum((debug->'cache'->>'saved_usd')::numeric), 0)
    FROM app.run_steps WHERE run_id = '$run2' AND cache_hit")
out() {
	awk -v n="$N" -v r="$R" -v ta="$t_anon" -v ca="$c_anon" \
	    -v tn="$t_named" -v cn="$c_named" -v tg="$t_again" -v cg="$c_again" \
	    -v jn="$jobs_named" -v tw="$twice" -v h="$hits" -v s="$saved" 'BEGIN {
	printf "steps: %d requests, each sent %d times at once\n", n, r
	printf "%-34s %10s %10s %12s %8s\n", "round", "creates", "per step",
	    "wall ms", "ratio"
	printf "%-34s %10d %10.2f %12d %8.2f\n", "anonymous (reference)", ca,
	    ca / n, ta, 1
	printf "%-34s %10d %10.2f %12d %8.2f\n", "named steps, one run", cn,
	    cn / n, tn, tn / ta
	printf "%-34s %10d %10.2f %12d %8.2f\n", "same steps, a new run (cache)",
	    cg, cg / n, tg, tg / ta
	printf "named steps: %d jobs for %d steps; %d steps created more than once\n",
	    jn, n, tw
	printf "new run: %d of %d steps served from the cache, saving $%.4f\n",
	    h, n, s
	}'
}
out
