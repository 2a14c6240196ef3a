#!/bin/sh
# Benchmark: webhooks against polling alone, side by side, in three parts
# (MI_BENCH_PARTS, default "rate done burst"):
#
# rate   JOBS in-flight jobs that never finish (fal, Suno, Veo and
#        Replicate, a quarter each: the providers whose deliveries mi-hook
#        can verify) in one mi-poll polling every 5 s; the requests the
#        fake provider answers over SECONDS (after the jobs are taken
#        over), polling alone and then with webhooks on (MI_WEBHOOK_URL and
#        the secrets set, mi-hook running: the jobs wait for a delivery and
#        are polled at the backstop interval only).  Goal: <= 1/10 of the
#        polling rate.  SECONDS should be a multiple of the backstop
#        interval, so that every job's backstop polls are counted once.
# done   DONE fal and Replicate jobs that do finish go through submit |
#        poll | fetch with webhooks on: the time from each delivery to its
#        stored artifact, and the provider requests each job cost.
# burst  BURST signed Replicate deliveries sent at once by wrk (32
#        connections) to mi-hook, which records the ones that arrive
#        together in one transaction, and to mi-hook -b 1 (one transaction
#        each): deliveries per second and commits per delivery
#        (xact_commit of pg_stat_database); beside them pgbench on one
#        connection (as mi-hook's one applier) running the same three
#        statements (lock the job, insert the delivery, NOTIFY) one
#        delivery per transaction and 64 per transaction.  fsync is on
#        for this part; it needs wrk.
#
# usage: sh test/bench/hooks.sh [jobs] [seconds] [done] [burst]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/test/lib/pg.sh"
jobs=${1:-10000}
secs=${2:-120}
ndone=${3:-300}
nburst=${4:-4000}
parts=${MI_BENCH_PARTS:-rate done burst}
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
psql1() { "$PGBIN/psql" -X -A -t -q "$DATABASE_URL" -c "$1"; }

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

export SUNO_API_KEY=bench-key GEMINI_API_KEY=bench-key FAL_KEY=bench-key \
    REPLICATE_API_TOKEN=bench-key
export MI_SUNO_BASE_URL=$url/suno MI_NANO_BANANA_VIDEO_BASE_URL=$url/gemini \
    MI_FAL_BASE_URL=$url/fal MI_FAL_API_URL=$url/falapi MI_REPLICATE_BASE_URL=$url/replicate \
    MI_FAL_WEBHOOK_JWKS=$url/_fake/jwks.json
for id in SUNO NANO_BANANA_VIDEO FAL REPLICATE; do
	export "MI_${id}_POLL_INTERVAL_MS=$interval" \
	    "MI_${id}_TIMEOUT_MS=36000000" "MI_${id}_CONCURRENCY=1000000"
done
# The fake's Standard Webhooks secret (test/fake/webhooks.py).
secret=whsec_$(printf %s fake-webhook-secret-0123456789ab | base64)
export MI_REPLICATE_WEBHOOK_SECRET=$secret

"$bin/mi-hook" -l "127.0.0.1:$hookport" 2>"$tmp/hook.err" &
pids="$pids $!"

requests() {
	curl -s "$url/_fake/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'
}

hooks_on() {
	export MI_WEBHOOK_URL=http://127.0.0.1:$hookport \
	    MI_WEBHOOK_BACKSTOP_MS=$backstop \
	    MI_SUNO_WEBHOOK_SECRET=$secret \
	    MI_NANO_BANANA_VIDEO_WEBHOOK_SECRET=$secret \
	    MI_REPLICATE_WEBHOOK_SECRET=$secret
}

hooks_off() {
	unset MI_WEBHOOK_URL MI_WEBHOOK_BACKSTOP_MS MI_SUNO_WEBHOOK_SECRET \
	    MI_NANO_BANANA_VIDEO_WEBHOOK_SECRET MI_REPLICATE_WEBHOOK_SECRET
}

# rate MODE: the fake's requests per second with JOBS never-ending jobs.
rate() {
	mode=$1
	run=$(cat /proc/sys/kernel/random/uuid)
	if [ "$mode" = webhooks ]; then hooks_on; else hooks_off; fi
	python3 - "$jobs" "$run" "$mode" >"$tmp/requests" <<'EOF'
import json, sys
n, run, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
kinds = [("suno", "audio_bgm", {}),
         ("nano-banana-video", "video", {"duration_sec": 4}),
         ("fal", "image", {}),
         ("replicate", "video", {"duration_sec": 6})]
for i in range(n):
    p, m, params = kinds[i % 4]
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
	r0=$(requests)
	cat "$tmp/jobs" >&9
	# Settle: every job taken over (polling alone: polled at once).
	sleep $(( (interval / 1000) * 2 + 2 ))
	r1=$(requests)
	sleep "$secs"
	r2=$(requests)
	exec 9>&-
	kill "$poll" 2>/dev/null || true
	wait "$poll" 2>/dev/null || true
	psql1 "UPDATE app.generation_jobs SET status = 'failed',
	    error_code = 'CANCELLED', lease_owner = NULL,
	    lease_expires_at = NULL WHERE status = 'processing'" >/dev/null
	echo "$n $(( (r2 - r1) / secs )) $((r1 - r0))"
}

case " $parts " in *" rate "*)
	set -- $(rate poll)
	np=$1 pp=$2 tp=$3
	set -- $(rate webhooks)
	nw=$1 pw=$2 tw=$3
	echo "provider requests per second, $np / $nw jobs in flight, measured over $secs s:"
	echo "  polling every $((interval / 1000)) s:            $pp/s (nominal $((np * 1000 / interval))/s)"
	echo "  webhooks on, backstop $((backstop / 1000)) s:    $pw/s (nominal $((nw * 1000 / backstop))/s)"
	echo "  ratio $(echo "scale=3; $pw / $pp" | bc) (goal <= 0.1; nominal $(echo "scale=3; $interval / $backstop" | bc))"
	echo "  while the jobs were taken over: $tp requests polling, $tw with webhooks (creates not counted)"
	;;
esac

# done: jobs that finish; the deliveries complete them.
done_jobs() {
	prov=$1 media=$2 params=$3
	hooks_on
	run=$(cat /proc/sys/kernel/random/uuid)
	python3 - "$ndone" "$run" "$prov" "$media" "$params" >"$tmp/done" <<'EOF'
import json, sys
n, run, p, m, params = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
for i in range(n):
    print(json.dumps({"tenant_id": "org_done_" + p, "run_id": run,
        "media_type": m, "prompt": "done %s %d" % (p, i), "provider_id": p,
        "params": params, "fallback": []}))
EOF
	r0=$(requests)
	t0=$(date +%s.%N)
	"$bin/mi-submit" <"$tmp/done" 2>/dev/null | "$bin/mi-poll" -q 2>/dev/null |
	    "$bin/mi-fetch" >/dev/null 2>&1
	t1=$(date +%s.%N)
	r1=$(requests)
	sleep 1
	psql1 "SELECT
	    round(extract(epoch FROM j.completed_at - d.received_at) * 1000),
	    round(extract(epoch FROM j.updated_at - d.received_at) * 1000),
	    round(extract(epoch FROM a.created_at - d.received_at) * 1000)
	    FROM app.webhook_deliveries d JOIN app.generation_jobs j ON j.id = d.job_id
	    LEFT JOIN app.artifacts a ON a.id = j.artifact_id
	    WHERE j.tenant_id = 'org_done_$prov'" >"$tmp/latency"
	echo "$ndone $prov jobs of 2 s with webhooks, submit | poll | fetch in $(echo "$t1 - $t0" | bc) s:"
	awk -F'|' '{n++; c += $1; if ($1 <= 200) f++; s += $3} END {
	    if (n == 0) { print "  no deliveries"; exit }
	    printf "  delivery to completed job: mean %.1f ms, %d of %d within 200 ms\n", c / n, f, n
	    printf "  delivery to stored artifact: mean %.1f ms (the download from the fake included)\n", s / n
	}' "$tmp/latency"
	echo "  provider requests per job $(echo "scale=2; ($r1 - $r0) / $ndone" | bc) (create and download: 2)"
}

case " $parts " in *" done "*)
	done_jobs fal image '{}'
	done_jobs replicate video '{"duration_sec":6}'
	curl -s "http://127.0.0.1:$hookport/metrics" >"$tmp/metrics"
	saved=$(awk '$1 == "mi_hook_polls_saved_total" {print $2}' "$tmp/metrics")
	cnt=$(awk '$1 == "mi_hook_webhook_to_stored_seconds_count" {print $2}' "$tmp/metrics")
	sum=$(awk '$1 == "mi_hook_webhook_to_stored_seconds_sum" {print $2}' "$tmp/metrics")
	echo "  mi-hook's histogram: $cnt stored, mean $(echo "scale=1; $sum * 1000 / $cnt" | bc) ms; polls saved $saved"
	;;
esac

# burst: many signed deliveries at once, batched and one per transaction.
commits() { psql1 "SELECT xact_commit FROM pg_stat_database WHERE datname = 'bench'"; }

# make_burst: the deliveries, one for each job in $tmp/pjids, signed as
# Replicate signs them, as a table for wrk's Lua ($tmp/burst.lua), and the
# script that sends each once ($tmp/send.lua).
make_burst() {
	python3 - "$secret" "$tmp/pjids" "$tmp/burst.lua" <<'EOF'
import base64, hashlib, hmac, json, sys, time, uuid
secret, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
key = base64.b64decode(secret[6:])
with open(out, "w") as f:
    f.write("return {\n")
    for pid in (l.strip() for l in open(path)):
        if not pid:
            continue
        body = json.dumps({"id": pid, "model": "minimax/video-01", "version": "v1",
                           "status": "succeeded", "output": "http://127.0.0.1:1/%s.mp4" % pid,
                           "error": None, "logs": "", "metrics": {"predict_time": 2.0},
                           "urls": {"get": "http://127.0.0.1:1/v1/predictions/" + pid}},
                          separators=(",", ":"))
        wid, ts = "msg_" + uuid.uuid4().hex, str(int(time.time()))
        mac = hmac.new(key, ("%s.%s." % (wid, ts)).encode() + body.encode(),
                       hashlib.sha256).digest()
        f.write('{"%s","%s","v1,%s",[==[%s]==]},\n'
                % (wid, ts, base64.b64encode(mac).decode(), body))
    f.write("}\n")
EOF
	# Each of wrk's two threads sends its share once, then stops (what it
	# has sent is answered by mi-hook all the same).
	cat >"$tmp/send.lua" <<EOF
local n = 0
function setup(t) t:set("tid", n); n = n + 1 end
function init(args)
	reqs = dofile("$tmp/burst.lua")
	i = tid + 1
end
function request()
	local r = reqs[i]
	if r == nil then
		wrk.thread:stop()
		return wrk.format("GET", "/healthz")
	end
	i = i + 2
	return wrk.format("POST", "/hooks/replicate", {["Content-Type"] =
	    "application/json", ["webhook-id"] = r[1],
	    ["webhook-timestamp"] = r[2], ["webhook-signature"] = r[3]}, r[4])
end
EOF
}

# send PORT: sends every delivery once over 32 connections (wrk); prints
# "seconds accepted": until the last delivery mi-hook received.
send() {
	t0=$(date +%s.%N)
	wrk -t 2 -c 32 -d 120s -s "$tmp/send.lua" "http://127.0.0.1:$1" \
	    >/dev/null 2>&1 &
	wp=$!
	last=0 idle=0 t1=$t0
	while [ $idle -lt 20 ]; do
		m=$(curl -s "http://127.0.0.1:$1/metrics")
		got=$(echo "$m" | awk '$1 == "mi_hook_webhooks_received_total" {print $2}')
		if [ "${got:-0}" -gt "$last" ]; then
			last=$got idle=0 t1=$(date +%s.%N)
		else
			idle=$((idle + 1))
		fi
		[ "$last" -ge "$nb" ] && break
		sleep 0.05
	done
	kill "$wp" 2>/dev/null || true
	wait "$wp" 2>/dev/null || true
	m=$(curl -s "http://127.0.0.1:$1/metrics")
	ok=$(echo "$m" | awk '$1 == "mi_hook_webhooks_total{result=\"accepted\"}" {print $2}')
	echo "$(echo "$t1 - $t0" | bc) $ok"
}

# hook_burst ARGS: "seconds accepted commits transactions" for mi-hook ARGS.
hook_burst() {
	p=$(port)
	MI_REPLICATE_WEBHOOK_SECRET=$secret "$bin/mi-hook" -l "127.0.0.1:$p" \
	    "$@" 2>"$tmp/hook-burst.err" &
	hp=$!
	for i in $(seq 1 50); do
		curl -sf "http://127.0.0.1:$p/healthz" >/dev/null && break
		sleep 0.1
	done
	# Counters reach pg_stat_database within a second, and at exit.
	sleep 1
	c0=$(commits)
	set -- $(send "$p")
	tx=$(curl -s "http://127.0.0.1:$p/metrics" |
	    awk '$1 == "mi_hook_transactions_total" {print $2}')
	kill "$hp"
	wait "$hp" 2>/dev/null || true
	c1=$(commits)
	echo "$1 $2 $((c1 - c0 - 1)) $tx"
}

# pg_burst PER-TX: "deliveries/s commits/delivery" of pgbench running the
# same statements, PER-TX deliveries per transaction.
pg_burst() {
	per=$1
	{
		echo "BEGIN;"
		k=0
		while [ $k -lt "$per" ]; do
			echo "\\set id random(1, $nburst)"
			echo "SELECT status FROM ref.jobs WHERE id = :id FOR UPDATE;"
			echo "INSERT INTO ref.deliveries (webhook_id, job_id, outcome) VALUES (md5(random()::text || clock_timestamp()::text), :id, '{\"status\":\"completed\"}') ON CONFLICT DO NOTHING;"
			echo "SELECT pg_notify('ref_hook', :id::text);"
			k=$((k + 1))
		done
		echo "COMMIT;"
	} >"$tmp/ref-$per.sql"
	sleep 1
	c0=$(commits)
	t=$((nburst / per > 0 ? nburst / per : 1))
	tps=$("$PGBIN/pgbench" -n -f "$tmp/ref-$per.sql" -c 1 -t "$t" \
	    "$DATABASE_URL" 2>/dev/null | awk '/^tps/ {print $3; exit}')
	c1=$(commits)
	echo "$(echo "$tps * $per" | bc | cut -d. -f1) $(echo "scale=3; ($c1 - $c0 - 1) / ($t * $per)" | bc)"
}

if ! command -v wrk >/dev/null 2>&1; then
	case " $parts " in *" burst "*)
		echo "burst: skipped, wrk is not installed" ;;
	esac
	parts=$(echo " $parts " | sed 's/ burst / /')
fi
case " $parts " in *" burst "*)
	hooks_off
	# Commits are what a burst saves: make them durable for this part.
	psql1 "ALTER SYSTEM SET fsync = on" >/dev/null
	psql1 "SELECT pg_reload_conf()" >/dev/null
	run=$(cat /proc/sys/kernel/random/uuid)
	python3 - "$nburst" "$run" >"$tmp/burst" <<'EOF'
import json, sys
n, run = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    print(json.dumps({"tenant_id": "org_burst", "run_id": run, "media_type": "video",
        "prompt": "burst %d [never] [nohook]" % i, "provider_id": "replicate",
        "params": {"duration_sec": 6}, "fallback": []}))
EOF
	"$bin/mi-submit" <"$tmp/burst" >/dev/null 2>"$tmp/burst.err" || true
	psql1 "SELECT provider_job_id FROM app.generation_jobs
	    WHERE tenant_id = 'org_burst' AND status = 'processing'" >"$tmp/pjids"
	nb=$(wc -l <"$tmp/pjids")
	# New delivery ids for each run: the same again would be replays.
	make_burst
	set -- $(hook_burst)
	bs=$1 ba=$2 bc=$3 btx=$4
	make_burst
	set -- $(hook_burst -b 1)
	ss=$1 sa=$2 sc=$3 stx=$4
	psql1 "CREATE SCHEMA ref;
	    CREATE TABLE ref.jobs (id int PRIMARY KEY, status text);
	    INSERT INTO ref.jobs SELECT g, 'processing' FROM generate_series(1, $nburst) g;
	    CREATE TABLE ref.deliveries (webhook_id text PRIMARY KEY, job_id int,
	        outcome jsonb, received_at timestamptz NOT NULL DEFAULT now())" >/dev/null
	set -- $(pg_burst 1)
	r1s=$1 r1c=$2
	set -- $(pg_burst 64)
	r64s=$1 r64c=$2
	echo "$nb signed Replicate deliveries at once (32 connections), fsync on:"
	echo "  mi-hook (batches):           $(echo "$ba / $bs" | bc)/s, $ba accepted, $btx transactions, $(echo "scale=3; $bc / $ba" | bc) commits per delivery"
	echo "  mi-hook -b 1 (one each):     $(echo "$sa / $ss" | bc)/s, $sa accepted, $stx transactions, $(echo "scale=3; $sc / $sa" | bc) commits per delivery"
	echo "  ratio batched / one each:    $(echo "scale=2; ($ba / $bs) / ($sa / $ss)" | bc)x deliveries per second"
	echo "  reference, pgbench on one connection, the same three statements:"
	echo "    one delivery per transaction: $r1s/s, $r1c commits per delivery"
	echo "    64 per transaction:           $r64s/s, $r64c commits per delivery"
	;;
esac
