#!/bin/sh
# Benchmark: concurrency-slot claims against plain inserts on the same
# cluster (fsync on).  The jobs table holds 100,000 finished jobs; each of
# 4 claimers (pgbench clients, one tenant each, a limit of 1) runs slot
# cycles: in one transaction the previous job ends (freeing the slot) and
# the statements of mi's claim take the next -- app.mi_claim_slots, the
# budget lock, the update to processing.  The baseline is a plain one-row INSERT by 4
# clients.  Both run as prepared statements, as mi runs them.  Prints
# both rates and the ratio (goal >= 0.5).
#
# usage: sh test/bench/claim.sh [seconds] [finished-jobs]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/test/lib/pg.sh"
secs=${1:-20}
finished=${2:-100000}
clients=4
bin=${MI_BIN_DIR:-$top/bin}

tmp=$(mktemp -d /tmp/mi-bench-claim.XXXXXX)
chmod 755 "$tmp"
cleanup() {
	pg_stop "$tmp/pg"
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pg_start "$tmp/pg" "$port"
base="postgresql://postgres@127.0.0.1:$port"
"$PGBIN/psql" -q -X "$base/postgres" -c "CREATE DATABASE bench" >/dev/null
export DATABASE_URL="$base/bench"
MI_MIGRATIONS_DIR=$top/migrations "$bin/mi-migrate" -q >/dev/null
psql() {
	"$PGBIN/psql" -q -X -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"
}

# 100,000 finished jobs over 100 tenants and 8 providers, and for each
# claimer a queue of pending jobs it waits for (more than it can claim).
pending=$((secs * 2000))
psql <<SQL
INSERT INTO app.generation_jobs (tenant_id, run_id, run_step_id,
    provider_id, provider_job_id, media_type, status, poll_interval_ms,
    timeout_ms, input_params, result_uri, cost_usd, cost_source,
    started_at, completed_at, created_at)
SELECT 'org_' || (i % 100), gen_random_uuid(), gen_random_uuid(),
    (ARRAY['meshy','suno','nano-banana','nano-banana-video','fal',
     'elevenlabs-sfx','blockade-skybox','local'])[1 + i % 8], 'p' || i,
    'image', (ARRAY['completed','failed','timed_out'])[1 + i % 3], 2000,
    60000, '{}', 'https://x/' || i, 0.04, 'estimate',
    now() - interval '1 day', now() - interval '1 day',
    now() - interval '1 day' + i * interval '1 ms'
FROM generate_series(1, $finished) i;
INSERT INTO app.generation_jobs (tenant_id, run_id, run_step_id,
    provider_id, media_type, poll_interval_ms, timeout_ms, input_params,
    cost_usd, cost_source, lease_owner, lease_expires_at, created_at)
SELECT 'claimer_' || c, gen_random_uuid(), gen_random_uuid(), 'meshy',
    'model_3d', 10000, 600000, '{}', 0.2, 'estimate', 'owner_' || c,
    now() + interval '1 day', clock_timestamp()
FROM generate_series(0, $clients - 1) c, generate_series(1, $pending) i;
CREATE TABLE bench_insert (id bigserial PRIMARY KEY, tenant text,
    payload jsonb, created_at timestamptz NOT NULL DEFAULT now());
VACUUM ANALYZE;
SQL

# One slot cycle per transaction: the claimer's previous job ends (as
# mi-poll ends it, freeing the slot), then the statements of mi_jobs_claim
# (jobs.c) take the next, as mi sends them: app.mi_claim_slots, the
# budget lock, the update to processing returning the row.
cat >"$tmp/claim.sql" <<'SQL'
BEGIN;
UPDATE app.generation_jobs SET status = 'completed', result_uri = 'https://x', completed_at = now(), lease_owner = NULL, lease_expires_at = NULL, updated_at = now() WHERE tenant_id = 'claimer_' || :client_id::text AND provider_id = 'meshy' AND status = 'processing';
SELECT c.job_id AS jid, json_build_object('id', c.job_id, 'estimate', c.estimate) AS claimed FROM app.mi_claim_slots('claimer_' || :client_id::text, 'meshy', 1, 'owner_' || :client_id::text, 1) c \gset
SELECT b.id FROM app.tenant_budgets b WHERE b.tenant_id = 'claimer_' || :client_id::text AND (b.provider_id IS NULL OR b.provider_id = 'meshy') ORDER BY b.id FOR UPDATE;
WITH u AS (UPDATE app.generation_jobs j SET status = 'processing', started_at = clock_timestamp(), cost_source = 'estimate', lease_expires_at = now() + 30000 * interval '1 ms', updated_at = now() FROM unnest(ARRAY[:jid::uuid]) WITH ORDINALITY AS c(id, k) WHERE j.id = c.id AND j.lease_owner = 'owner_' || :client_id::text RETURNING to_jsonb(j) AS r, c.k) SELECT r FROM u ORDER BY k;
COMMIT;
SQL
cat >"$tmp/insert.sql" <<'SQL'
INSERT INTO bench_insert (tenant, payload) VALUES ('org_' || :client_id, '{"a":1}');
SQL

rate() {
	"$PGBIN/pgbench" -n -M prepared -c "$clients" -j 2 -T "$secs" \
	    -f "$1" "$DATABASE_URL" >"$tmp/out" 2>&1 || { head -30 "$tmp/out" >&2; exit 1; }
	awk '/^tps = /{printf "%d", $3}' "$tmp/out"
}
claims=$(rate "$tmp/claim.sql")
inserts=$(rate "$tmp/insert.sql")
left=$(psql -At -c "SELECT count(*) FROM app.generation_jobs WHERE status = 'pending'")
echo "finished jobs in the table: $finished (+ claimed during the run)"
echo "claims/s (one slot cycle each: end the previous job, claim the next): $claims"
echo "inserts/s (plain one-row INSERT): $inserts"
echo "ratio: $(echo "scale=2; $claims / $inserts" | bc) (goal >= 0.5)"
[ "$left" -gt 0 ] || echo "warning: the claimers ran out of pending jobs" >&2
