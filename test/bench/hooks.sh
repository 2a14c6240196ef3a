#!/bin/sh
# Benchmark: provider requests with webhooks on against polling alone,
# side by side.  Each run holds JOBS in-flight jobs that never finish (fal,
# Suno and Veo, a third each: the providers whose deliveries mi-hook can
# verify) in one mi-poll polling every 5 s, and counts the requests the
# fake provider answers over SECONDS; with webhooks on (MI_WEBHOOK_URL and
# the secrets set, mi-hook running) the jobs wait for a delivery and are
# polled at the backstop interval only.  Goal: <= 1/10 of the polling
# rate.  Then DONE fal jobs that do finish go through submit | poll |
# fetch with webhooks on: the time from each delivery to its stored
# artifact (mi-hook's histogram) and the polls each job had.
#
# usage: sh test/bench/hooks.sh [jobs] [seconds] [done]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/test/lib/pg.sh"
jobs=${1:-10000}
secs=${2:-90}
ndone=${3:-300}
interval=${MI_BENCH_INTERVAL_MS:-5000}
backstop=${MI_BENCH_BACKSTOP_MS:-60000}
bin=${MI_BIN_DIR:-$top/bin}

tmp=$(mktemp -d /tmp/mi-bench-hooks.XXXXXX)
chmod 755 "$tmp"
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	pg_stop "$tmp/pg"
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pgport=$(port)
PG_FSYNC=off pg_start "$tmp/pg" "$pgport"
"$PGBIN/psql" -q -X "postgresql://postgres@127.0.0.1:$pgport/postgres" \
    -c "CREATE DATABASE bench" >/dev/null
export DATABASE_URL="postgresql://postgres@127.0.0.1:$pgport/bench"
MI_MIGRATIONS_DIR=$top/migrations "$bin/mi-migrate" -q >/dev/null
export MI_SHAREDIR=$top/share ASSET_STORAGE_DIR=$tmp/store

python3 "$top/test/fake/provider.py" --port 0 --log "$tmp/fake.log" \
    --no-log-polls --key bench-key --job-ms 2000 >"$tmp/fake.out" \
    2>"$tmp/fake.err" &
pids="$pids $!"
i=0
until grep -q '^ready ' "$tmp/fake.out" 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 100 ] || { cat "$tmp/fake.err" >&2; exit 1; }
	sleep 0.1
done
url="http://127.0.0.1:$(awk '/^ready /{print $2}' "$tmp/fake.out")"
hookport=$(port)

export SUNO_API_KEY=bench-key GEMINI_API_KEY=bench-key FAL_KEY=bench-key
export MI_SUNO_BASE_URL=$url/suno MI_NANO_BANANA_VIDEO_BASE_URL=$url/gemini \
    MI_FAL_BASE_URL=$url/fal MI_FAL_WEBHOOK_JWKS=$url/_fake/jwks.json
for id in SUNO NANO_BANANA_VIDEO FAL; do
	export "MI_${id}_POLL_INTERVAL_MS=$interval" \
	    "MI_${id}_TIMEOUT_MS=36000000" "MI_${id}_CONCURRENCY=1000000"
done
secret=whsec_$(printf %s fake-webhook-secret-0123456789ab | base64)

"$bin/mi-hook" -l "127.0.0.1:$hookport" 2>"$tmp/hook.err" &
pids="$pids $!"

requests() {
	curl -s "$url/_fake/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'
}

# rate MODE: the fake's requests per second with JOBS never-ending jobs.
rate() {
	mode=$1
	run=$(cat /proc/sys/kernel/random/uuid)
	if [ "$mode" = webhooks ]; then
		export MI_WEBHOOK_URL=http://127.0.0.1:$hookport \
		    MI_WEBHOOK_BACKSTOP_MS=$backstop \
		    MI_SUNO_WEBHOOK_SECRET=$secret \
		    MI_NANO_BANANA_VIDEO_WEBHOOK_SECRET=$secret
	else
		unset MI_WEBHOOK_URL MI_WEBHOOK_BACKSTOP_MS \
		    MI_SUNO_WEBHOOK_SECRET MI_NANO_BANANA_VIDEO_WEBHOOK_SECRET
	fi
	python3 - "$jobs" "$run" "$mode" >"$tmp/requests" <<'EOF'
import json, sys
n, run, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
kinds = [("suno", "audio_bgm", {}),
         ("nano-banana-video", "video", {"duration_sec": 4}),
         ("fal", "image", {})]
for i in range(n):
    p, m, params = kinds[i % 3]
    print(json.dumps({"tenant_id": "org_bench", "run_id": run,
        "media_type": m, "prompt": "%s %d [never]" % (mode, i),
        "params": params, "provider_id": p, "fallback": []}))
EOF
	"$bin/mi-submit" <"$tmp/requests" >"$tmp/jobs" 2>"$tmp/submit.err" || true
	n=$(grep -c '"status":"processing"' "$tmp/jobs" || true)
	rm -f "$tmp/in"
	mkfifo "$tmp/in"
	"$bin/mi-poll" -q <"$tmp/in" >/dev/null 2>"$tmp/poll.err" &
	poll=$!
	exec 9>"$tmp/in"
	cat "$tmp/jobs" >&9
	# Settle: every job taken over and polled once.
	sleep $(( (interval / 1000) * 2 + 2 ))
	r0=$(requests)
	sleep "$secs"
	r1=$(requests)
	exec 9>&-
	kill "$poll" 2>/dev/null || true
	wait "$poll" 2>/dev/null || true
	"$PGBIN/psql" -q -X "$DATABASE_URL" -c "UPDATE app.generation_jobs
	    SET status = 'failed', error_code = 'CANCELLED',
	    lease_owner = NULL, lease_expires_at = NULL
	    WHERE status = 'processing'" >/dev/null
	echo "$n $(( (r1 - r0) / secs ))"
}

set -- $(rate poll)
np=$1 pp=$2
set -- $(rate webhooks)
nw=$1 pw=$2
echo "provider requests per second, $np / $nw jobs in flight, measured over $secs s:"
echo "  polling every $((interval / 1000)) s:            $pp/s"
echo "  webhooks on, backstop $((backstop / 1000)) s:    $pw/s"
echo "  ratio $(echo "scale=3; $pw / $pp" | bc) (goal <= 0.1)"

# Jobs that finish: the deliveries complete them.
export MI_WEBHOOK_URL=http://127.0.0.1:$hookport MI_WEBHOOK_BACKSTOP_MS=$backstop
run=$(cat /proc/sys/kernel/random/uuid)
python3 - "$ndone" "$run" >"$tmp/done" <<'EOF'
import json, sys
n, run = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    print(json.dumps({"tenant_id": "org_done", "run_id": run,
        "media_type": "image", "prompt": "done %d" % i, "provider_id": "fal",
        "fallback": []}))
EOF
r0=$(requests)
t0=$(date +%s.%N)
"$bin/mi-submit" <"$tmp/done" 2>/dev/null | "$bin/mi-poll" -q 2>/dev/null |
    "$bin/mi-fetch" >/dev/null 2>&1
t1=$(date +%s.%N)
r1=$(requests)
sleep 1
"$PGBIN/psql" -X -A -t "$DATABASE_URL" -c "SELECT
    round(extract(epoch FROM j.completed_at - d.received_at) * 1000),
    round(extract(epoch FROM j.updated_at - d.received_at) * 1000),
    round(extract(epoch FROM a.created_at - d.received_at) * 1000)
    FROM app.webhook_deliveries d JOIN app.generation_jobs j ON j.id = d.job_id
    LEFT JOIN app.artifacts a ON a.id = j.artifact_id
    WHERE j.tenant_id = 'org_done'" >"$tmp/latency"
curl -s "http://127.0.0.1:$hookport/metrics" >"$tmp/metrics"
saved=$(awk '$1 == "mi_hook_polls_saved_total" {print $2}' "$tmp/metrics")
cnt=$(awk '$1 == "mi_hook_webhook_to_stored_seconds_count" {print $2}' "$tmp/metrics")
sum=$(awk '$1 == "mi_hook_webhook_to_stored_seconds_sum" {print $2}' "$tmp/metrics")
echo "$ndone fal jobs of 2 s with webhooks, submit | poll | fetch in $(echo "$t1 - $t0" | bc) s:"
awk -F'|' '{n++; c += $1; if ($1 <= 200) f++; s += $3} END {
    printf "  delivery to completed job: mean %.1f ms, %d of %d within 200 ms\n", c / n, f, n
    printf "  delivery to stored artifact: mean %.1f ms (the download from the fake included)\n", s / n
}' "$tmp/latency"
echo "  mi-hook's histogram: $cnt stored, mean $(echo "scale=1; $sum * 1000 / $cnt" | bc) ms"
echo "  provider requests per job $(echo "scale=2; ($r1 - $r0) / $ndone" | bc) (create, polls, download); polls saved $saved"
