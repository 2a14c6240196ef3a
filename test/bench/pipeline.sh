#!/bin/sh
# Benchmark: N requests through WORKERS pipelines `mi-submit | mi-poll |
# mi-fetch`, all sharing one database (fsync on), against the fake
# provider with no latency: half ElevenLabs sound effects (synchronous,
# the create's answer is the audio) and half fal images (asynchronous:
# submit, poll, download).  With TENANTS=many each pipeline has its own
# tenant, else all share one.  Prints jobs/s end to end, the committed
# transactions per job (pg_stat_database.xact_commit), and a pgbench
# reference that writes the same rows per job in the same number of
# transactions, side by side with the ratio.  MI_GROUP_COMMIT=0 in the
# environment runs the pipelines without group commit; the WAL flushes per
# job (pg_stat_wal.wal_sync) then show what it saves.
# Goal: >= 2,000 jobs/s for N = 10,000, <= 1 commit per 10 jobs,
# ratio >= 0.5.  Also prints what creating a file cost on the store's
# filesystem just before the run, which moves the figures more than
# anything mi does.
#
# usage: sh test/bench/pipeline.sh [N] [WORKERS]
#   env TENANTS=one|many, MIX=both|sync (sound effects only),
#   STATEMENTS=1 also prints the statements mi ran, by calls per job
#   (pg_stat_statements), MI_BENCH_KEEP=1 keeps the working directory
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/test/bench/lib.sh"
n=${1:-10000}
workers=${2:-1}
tenants=${TENANTS:-one}
mix=${MIX:-both}

bench_init pipeline
[ -z "${STATEMENTS:-}" ] ||
	export PG_EXTRA_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
bench_pg
psql() {
	"$PGBIN/psql" -q -X -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"
}
[ -z "${STATEMENTS:-}" ] ||
	psql -c "CREATE EXTENSION pg_stat_statements; SELECT pg_stat_statements_reset()" >/dev/null
export MI_SHAREDIR=$top/share ASSET_STORAGE_DIR=$tmp/store
bench_fake --log /dev/null --job-ms 0 --no-log-polls --key bench-key
# Each job stores one new file.  What creating one costs on the store's
# filesystem varies more than anything mi does: on ext4 without a
# journal a burst of creates skips every free inode whose table block is
# still dirty (about 20 us a file on a quiet disk, 400-700 us in a burst
# or just after a large delete).  It is printed with the run's figures.
mkdir -p "$tmp/create-probe"
fcreate=$(python3 - "$tmp/create-probe" <<'PY'
import os, sys, time
t = time.perf_counter()
for i in range(500):
    os.close(os.open("%s/f%d" % (sys.argv[1], i),
        os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
print("%.0f" % ((time.perf_counter() - t) / 500 * 1e6))
PY
)
export ELEVENLABS_API_KEY=bench-key FAL_KEY=bench-key
export MI_ELEVENLABS_SFX_BASE_URL=$url/elevenlabs MI_FAL_BASE_URL=$url/fal MI_FAL_API_URL=$url/falapi
for id in ELEVENLABS_SFX FAL; do
	export "MI_${id}_POLL_INTERVAL_MS=100" "MI_${id}_CONCURRENCY=1000000"
done

python3 - "$n" "$workers" "$tenants" "$tmp" "$mix" <<'PY'
import json, sys, uuid
n, w, tenants, tmp, mix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
files = [open("%s/requests.%d" % (tmp, k), "w") for k in range(w)]
run = str(uuid.uuid4())
for i in range(n):
    k = i % w
    tenant = "org_bench_%d" % k if tenants == "many" else "org_bench"
    if mix == "sync" or i % 2 == 0:
        r = {"media_type": "audio_sfx", "provider_id": "elevenlabs-sfx",
             "params": {"duration_sec": 2}}
    else:
        r = {"media_type": "image", "provider_id": "fal", "params": {}}
    r.update({"tenant_id": tenant, "run_id": run, "step_id": "s%d" % i,
              "prompt": "bench %d" % i, "fallback": []})
    files[k].write(json.dumps(r) + "\n")
PY

commits() {
	psql -At -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'bench'"
}
flushes() {
	psql -At -c "SELECT wal_sync FROM pg_stat_wal"
}
# CPU ticks of a process and its reaped children (fields 14-17 of stat).
ticks() {
	awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat" 2>/dev/null ||
	    echo 0
}
# PostgreSQL's: the postmaster's, its exited backends' and the live ones'.
pg_ticks() {
	_pm=$(head -1 "$tmp/pg/data/postmaster.pid")
	_t=$(ticks "$_pm")
	for _c in $(cat "/proc/$_pm/task/$_pm/children" 2>/dev/null); do
		_t=$((_t + $(ticks "$_c")))
	done
	echo "$_t"
}
# The CPU seconds of this shell's reaped children (the pipelines) into
# $cs: times is a builtin, run here (not in a subshell, whose children
# are not these).
child_secs() {
	times >"$tmp/times"
	cs=$(awk 'NR == 2 { gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4 }' \
	    "$tmp/times")
}
hz=$(getconf CLK_TCK)
p0=$(pg_ticks)
k0=$(ticks "$fakepid")
child_secs
m0=$cs
c0=$(commits)
f0=$(flushes)
t0=$(date +%s.%N)
k=0
wpids=
while [ $k -lt "$workers" ]; do
	( "$bin/mi-submit" <"$tmp/requests.$k" 2>"$tmp/submit.$k.err" |
	  "$bin/mi-poll" -q 2>"$tmp/poll.$k.err" |
	  "$bin/mi-fetch" >"$tmp/out.$k" 2>"$tmp/fetch.$k.err" ) &
	wpids="$wpids $!"
	k=$((k + 1))
done
for p in $wpids; do wait "$p" || true; done
t1=$(date +%s.%N)
child_secs
m1=$cs
p1=$(pg_ticks)
k1=$(ticks "$fakepid")
c1=$(commits)
f1=$(flushes)
done=$(cat "$tmp"/out.* | grep -c '"content_hash"' || true)
secs=$(echo "$t1 - $t0" | bc)
jps=$(echo "scale=0; $done / $secs" | bc)
cpj=$(echo "scale=3; ($c1 - $c0) / $n" | bc)
fpj=$(echo "scale=3; ($f1 - $f0) / $n" | bc)
rows=$(psql -At -c "SELECT count(*) FROM app.artifacts")
echo "mi: $done of $n jobs stored in $secs s by $workers pipeline(s)," \
    "tenants $tenants, MI_GROUP_COMMIT=${MI_GROUP_COMMIT:-1}: $jps jobs/s," \
    "$cpj commits and $fpj WAL flushes per job ($rows artifact rows)"
echo "CPU per job: mi programs $(echo "scale=2; ($m1 - $m0) * 1000 / $n" | bc) ms," \
    "PostgreSQL $(echo "scale=2; ($p1 - $p0) * 1000 / $hz / $n" | bc) ms," \
    "fake provider $(echo "scale=2; ($k1 - $k0) * 1000 / $hz / $n" | bc) ms" \
    "($(nproc) cores: $(echo "scale=2; $(nproc) * $secs * 1000 / $n" | bc) ms of CPU a job at this rate)"
echo "store filesystem: $fcreate us to create a file (500 before the run)"
if [ -n "${STATEMENTS:-}" ]; then
	psql -c "SELECT round(calls::numeric / $n, 2) AS per_job,
	    round(total_exec_time::numeric / $n, 3) AS ms_job,
	    round(total_plan_time::numeric / $n, 3) AS plan_ms_job,
	    round(rows::numeric / greatest(calls, 1), 1) AS rows_call,
	    round(min_exec_time::numeric, 3) AS min_ms,
	    round(max_exec_time::numeric, 1) AS max_ms,
	    left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS statement
	  FROM pg_stat_statements WHERE calls >= $n / 20
	  ORDER BY total_exec_time + total_plan_time DESC LIMIT 25"
fi
if [ "$done" -ne "$n" ]; then
	echo "mi: $((n - done)) jobs not stored; errors:" >&2
	cat "$tmp"/*.err | sort | uniq -c | sort -rn | head -5 >&2
fi

# The reference: pgbench writing each job's rows -- the job insert, its
# claim, its completion and its artifact -- in batches of B jobs a
# transaction, B being the jobs per commit mi reached (at least 1).
batch=$(echo "scale=0; $n / ($c1 - $c0)" | bc)
[ "$batch" -ge 1 ] || batch=1
cat >"$tmp/ref.sql" <<SQL
BEGIN;
WITH ins AS (INSERT INTO app.generation_jobs (tenant_id, run_id,
    run_step_id, provider_id, media_type, poll_interval_ms, timeout_ms,
    input_params, cost_usd, cost_source, lease_owner, lease_expires_at)
  SELECT 'ref_' || :client_id, gen_random_uuid(), gen_random_uuid(),
    'fal', 'image', 100, 60000, '{"prompt":"bench"}', 0.04, 'estimate',
    'ref', now() + interval '30 s' FROM generate_series(1, $batch)
  RETURNING id)
UPDATE app.generation_jobs j SET status = 'processing',
    started_at = clock_timestamp(), updated_at = now()
  FROM ins WHERE j.id = ins.id;
WITH d AS (UPDATE app.generation_jobs SET status = 'completed',
    provider_job_id = 'p', result_uri = 'https://x', completed_at = now(),
    updated_at = now()
  WHERE tenant_id = 'ref_' || :client_id AND status = 'processing'
  RETURNING id, tenant_id, run_id)
INSERT INTO app.artifacts (tenant_id, run_id, type, uri, content_hash,
    size_bytes)
SELECT tenant_id, run_id, 'image', 'https://x/' || id, md5(id::text) ||
    md5(id::text), 1 FROM d;
COMMIT;
SQL
xacts=$(( (n + batch - 1) / batch ))
per=$(( (xacts + workers - 1) / workers ))
out=$("$PGBIN/pgbench" -n -f "$tmp/ref.sql" -c "$workers" -j "$workers" \
    -t "$per" "$DATABASE_URL" 2>&1) || { echo "$out" >&2; exit 1; }
tps=$(echo "$out" | awk '/^tps = /{print $3; exit}')
ref=$(echo "scale=0; $tps * $batch / 1" | bc)
echo "pgbench: the same rows, $batch jobs a transaction, $workers client(s):" \
    "$ref jobs/s"
echo "ratio mi/pgbench: $(echo "scale=2; $jps / $ref" | bc)" \
    "(goal >= 0.5; goal 2000 jobs/s, <= 0.1 commits per job)"
