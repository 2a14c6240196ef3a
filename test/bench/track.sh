#!/bin/sh
# Benchmark: the cost of keeping app.run_steps current.  A pgbench script
# (one client, prepared, synchronous_commit off so that the CPU shows,
# not the WAL flush) runs a job's life as mi writes it: the step and its
# job inserted, then the job's slot, its create, its end and its artifact
# as four updates, each firing the step tracking trigger.  Rounds of S
# seconds alternate between the trigger as it is now, the trigger of
# 0009_step_recovery.sql (which rebuilt the list of attempts at every
# change), and no step tracking at all, the floor.  Prints each one's
# median job lives a second and the ratios.
#
# usage: sh test/bench/track.sh [ROUNDS] [S]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/test/bench/lib.sh"
rounds=${1:-6}
secs=${2:-5}

bench_init track
bench_pg
psql() {
	"$PGBIN/psql" -q -X -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"
}
run=00000000-0000-4000-8000-000000000001
art=00000000-0000-4000-8000-0000000000a1
psql -c "INSERT INTO app.runs (id, tenant_id, status) VALUES ('$run', 't', 'running');
INSERT INTO app.artifacts (id, tenant_id, run_id, type, uri, content_hash,
    size_bytes) VALUES ('$art', 't', '$run', 'image', 'x', repeat('a', 64), 1)"

# The three ways, as SQL that puts each in place.
{
	echo "ALTER TABLE app.generation_jobs ENABLE TRIGGER USER;"
	psql -At -c "SELECT pg_get_functiondef('app.mi_step_track'::regproc) || ';'"
} >"$tmp/now.sql"
{
	echo "ALTER TABLE app.generation_jobs ENABLE TRIGGER USER;"
	sed -n '/^CREATE OR REPLACE FUNCTION app.mi_step_track/,/^\$\$;/p' \
	    "$top/migrations/0009_step_recovery.sql"
} >"$tmp/before.sql"
grep -q 'jsonb_agg' "$tmp/before.sql"
cat >"$tmp/none.sql" <<'SQL'
ALTER TABLE app.generation_jobs DISABLE TRIGGER generation_jobs_step_insert;
ALTER TABLE app.generation_jobs DISABLE TRIGGER generation_jobs_step_update;
SQL

cat >"$tmp/life.sql" <<SQL
\set n random(1, 2000000000)
BEGIN;
INSERT INTO app.run_steps (run_id, tenant_id, step_id) VALUES ('$run', 't', 's' || :n || '-' || random()) RETURNING id AS sid \gset
INSERT INTO app.generation_jobs (tenant_id, run_id, run_step_id, provider_id, media_type, poll_interval_ms, timeout_ms, input_params, request) VALUES ('t', '$run', :sid, 'fal', 'image', 100, 600000, '{}', '{"prompt":"a cat on a mat","params":{}}') RETURNING id AS jid \gset
COMMIT;
UPDATE app.generation_jobs SET status = 'processing', provider_job_id = 'p' || :n, started_at = now(), lease_owner = 'w' WHERE id = :jid;
UPDATE app.generation_jobs SET submit_count = submit_count + 1, submit_unknown = true WHERE id = :jid;
UPDATE app.generation_jobs SET status = 'completed', result_uri = 'http://x/y', cost_usd = 0.01, cost_source = 'provider', submit_unknown = false WHERE id = :jid;
UPDATE app.generation_jobs SET artifact_id = '$art', lease_owner = NULL WHERE id = :jid;
SQL

i=0
while [ "$i" -lt "$rounds" ]; do
	for v in now before none; do
		psql -f "$tmp/$v.sql" >/dev/null
		PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -n \
		    -M prepared -c 1 -T "$secs" -f "$tmp/life.sql" \
		    "$DATABASE_URL" >"$tmp/out" 2>&1 ||
			{ cat "$tmp/out" >&2; exit 1; }
		sed -n "s/^tps = \([0-9.]*\) .*/$v \1/p" "$tmp/out" >>"$tmp/tps"
	done
	i=$((i + 1))
done
# The tracking must have run: the last round of "now" wrote steps'
# lists of attempts.
[ "$(psql -At -c "SELECT count(*) FROM app.run_steps
    WHERE jsonb_array_length(debug->'attempts') = 1")" -gt 0 ]
median() {
	awk -v v="$1" '$1 == v { print $2 }' "$tmp/tps" | sort -n |
	    awk '{ a[NR] = $1 } END { printf "%.0f", (a[int((NR + 1) / 2)] + a[int(NR / 2) + 1]) / 2 }'
}
now=$(median now)
before=$(median before)
none=$(median none)
echo "job lives/s, median of $rounds rounds of $secs s (5 changes of a step each):"
echo "  step tracking now:           $now"
echo "  step tracking of 0009:       $before"
echo "  no step tracking (floor):    $none"
echo "ratio now/0009: $(echo "scale=2; $now / $before" | bc); now/floor: $(echo "scale=2; $now / $none" | bc)"
echo "the tracking's cost a job life: now $(echo "scale=3; 1000 / $now - 1000 / $none" | bc) ms, 0009 $(echo "scale=3; 1000 / $before - 1000 / $none" | bc) ms"
