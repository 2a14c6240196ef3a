#!/usr/bin/env bats
# Faults between mi and its providers and its database: the fault proxy
# (test/fake/faultproxy.py) in front of the fake provider resets, cuts
# short or fails single requests; a PostgreSQL cluster of this file's own
# is restarted and stopped under running pipelines.  What the fake
# counted is the truth: no step is created twice without a recorded
# decision.

load test_helper
load jobs_helper
. "$BATS_TEST_DIRNAME/lib/pg.sh"

proxy_start() {
	local out=$BATS_FILE_TMPDIR/proxy.out i
	python3 "$BATS_TEST_DIRNAME/fake/faultproxy.py" --upstream "$FAKE_URL" \
	    --log "$BATS_FILE_TMPDIR/proxy.log" "$@" >"$out" \
	    2>"$out.err" 3>&- &
	export PROXY_PID=$!
	for i in $(seq 1 300); do
		if grep -q '^ready ' "$out" 2>/dev/null; then
			export PROXY_URL="http://127.0.0.1:$(awk '/^ready /{print $2; exit}' "$out")"
			return 0
		fi
		sleep 0.1
	done
	cat "$out.err" >&2
	return 1
}

# plan KIND FAULT MATCH [COUNT]: the next COUNT requests of KIND whose body
# holds MATCH get FAULT.
plan() {
	curl -sS -X POST "$PROXY_URL/_faultproxy/plan" -d "$(jq -nc \
	    --arg k "$1" --arg f "$2" --arg m "$3" --argjson n "${4:-1}" \
	    '{kind: $k, fault: $f, match: $m, count: $n}')" >/dev/null
}

# creates PROMPT: creates the fake accepted for that prompt.
creates() {
	fake_stats | tee "$BATS_TEST_TMPDIR/stats" |
	    jq --arg p "$1" '.creates_by_prompt[$p] // 0'
}

setup_file() {
	# Two Replicate predictions a page, so that a lookup turns pages.
	jobs_setup_file --replicate-page-size 2
	own_pg_start
	proxy_start --hang-ms 8000
	# Every provider behind the proxy.
	export MI_MESHY_BASE_URL=$PROXY_URL/meshy \
	    MI_NANO_BANANA_VIDEO_BASE_URL=$PROXY_URL/gemini \
	    MI_ELEVENLABS_SFX_BASE_URL=$PROXY_URL/elevenlabs \
	    MI_LEASE_MS=$((3000 * MI_TEST_SLOW))
}

teardown_file() {
	[ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null
	fake_stop
	if [ -n "${OWN_PG:-}" ]; then
		pg_stop "$OWN_PG"
	fi
}

@test "a create whose kept-alive connection is reset after it was read is sent once and found by a lookup" {
	# One slot: the second create goes out after the first answered,
	# when curl could have reused that first connection.
	export MI_MESHY_CONCURRENCY=1
	p1="reset one $(uuid)" p2="reset two $(uuid) [slow:100]"
	plan create reset "$p2"
	{
		req meshy model_3d "$p1" '{"refine":false}'
		req meshy model_3d "$p2" '{"refine":false}'
	} | pipeline >"$BATS_TEST_TMPDIR/out" || true
	assert_equal "$(creates "$p2")" 1
	[ "$(job_sql "submit_unknown" "$p2")" = t ]
	run -0 mi-recover --once
	assert_equal "$(creates "$p2")" 1
	[ "$(job_sql "status" "$p2")" = completed ]
	[ "$(job_sql "artifact_id IS NOT NULL" "$p2")" = t ]
	[ "$(job_sql "recovery @> '[{\"event\": \"create found\"}]'" "$p2")" = t ]
	[ "$(job_sql "submit_count" "$p2")" -eq 1 ]
	assert_equal "$(creates "$p1")" 1
}

@test "a create whose answer was cut short is found at the provider, not sent again" {
	p="truncated $(uuid) [slow:100]"
	plan create truncate "$p"
	req meshy model_3d "$p" '{"refine":false}' | pipeline || true
	pipeline_err
	assert_equal "$(creates "$p")" 1
	run -0 mi-recover --once
	assert_equal "$(creates "$p")" 1
	[ "$(job_sql "status" "$p")" = completed ]
	[ "$(job_sql "recovery @> '[{\"event\": \"create found\"}]'" "$p")" = t ]
	# The step's debug output tells the same story.
	run -0 sql "SELECT s.debug->'attempts'->0->'recovery' @> '[{\"event\": \"create found\"}]'
	    FROM app.run_steps s JOIN app.generation_jobs j ON j.run_step_id = s.id
	    WHERE j.request->>'prompt' = '$p'"
	assert_output t
}

@test "a lost refine is found too; the task list is read, not the create sent again" {
	p="refine lost $(uuid) [slow:100]"
	plan create truncate "texture_prompt\":\"$p"
	req meshy model_3d "$p" '{"refine":true}' | pipeline || true
	run -0 mi-recover --once
	# The preview and the refine, each once.
	assert_equal "$(creates "$p")" 2
	[ "$(job_sql "status" "$p")" = completed ]
	[ "$(job_sql "recovery @> '[{\"event\": \"create found\"}]'" "$p")" = t ]
}

@test "a refine refused for now (500) is tried again as the refine, not as a second preview" {
	p="refine refused $(uuid) [slow:100]"
	plan create 500 "texture_prompt\":\"$p"
	run -0 --separate-stderr pipeline < <(req meshy model_3d "$p" '{"refine":true}')
	jqok '.uri' "$output"
	assert_equal "$(creates "$p")" 2
	run -0 curl -sS "$FAKE_URL/_fake/jobs"
	assert_equal "$(jq -c --arg p "$p" '[.[] | select(.prompt == $p) | .kind] | sort' <<<"$output")" '["text-to-3d-preview","text-to-3d-refine"]'
	# The proxy's 500 answered one refine; the next one was made.
	[ "$(job_sql "submit_count" "$p")" -eq 3 ]
}

@test "a lost Replicate create is found in the prediction list, pages back, and not sent again; a refused one is sent again once" {
	export MI_REPLICATE_BASE_URL=$PROXY_URL/replicate
	p="replicate lost $(uuid)"
	plan create truncate "$p"
	req replicate image "$p" | pipeline || true
	assert_equal "$(creates "$p")" 1
	[ "$(job_sql "submit_unknown" "$p")" = t ]
	# Newer predictions put the lost one pages back in the list.
	for i in 1 2 3 4; do
		req replicate image "replicate newer $i $(uuid)"
	done | pipeline >/dev/null
	run -0 --separate-stderr mi-recover --once
	assert_equal "$(creates "$p")" 1
	[ "$(job_sql "status" "$p")" = completed ]
	[ "$(job_sql "artifact_id IS NOT NULL" "$p")" = t ]
	[ "$(job_sql "submit_count" "$p")" -eq 1 ]
	run -0 job_sql "jsonb_path_query_first(recovery, '\$[*] ? (@.event == \"create found\").provider_job_id') = to_jsonb(provider_job_id)" "$p"
	assert_output t
	# The list was read with Replicate's cursor, past the first page.
	run -0 jq -sc '[.[] | select(.provider == "replicate" and .event == "list")]
	    | (length > 1) and any(.query.cursor != null)' "$FAKE_LOG"
	assert_output true
	# A create refused (500) whose answer was lost: no prediction of its
	# input to the list's end, so it is sent again, and made once.
	q="replicate refused $(uuid) [500x2]"
	plan create truncate "$q"
	req replicate image "$q" | pipeline || true
	[ "$(job_sql "submit_unknown" "$q")" = t ]
	assert_equal "$(creates "$q")" 0
	run -0 --separate-stderr mi-recover --once
	assert_equal "$(creates "$q")" 1
	[ "$(job_sql "status" "$q")" = completed ]
	[ "$(job_sql "recovery @> '[{\"event\": \"create absent\"}]'" "$q")" = t ]
}

@test "hold: a lost create the provider cannot be asked about is left to an operator, with the reason" {
	p="held video $(uuid)"
	plan create truncate "$p"
	req nano-banana-video video "$p" '{"duration_sec":8}' | pipeline || true
	assert_equal "$(creates "$p")" 1
	run -0 --separate-stderr mi-recover --once
	assert_equal "$(creates "$p")" 1
	[ "$(job_sql "status" "$p")" = failed ]
	[ "$(job_sql "error_code" "$p")" = PROVIDER_UNAVAILABLE ]
	run job_sql "error_message" "$p"
	assert_output --partial "held for an operator"
	assert_output --partial "veo: operations cannot be found"
	[ "$(job_sql "recovery @> '[{\"event\": \"create held\"}]'" "$p")" = t ]
	[ "$(job_sql "jsonb_path_query_first(recovery, '\$[*] ? (@.event == \"create held\").reason') IS NOT NULL" "$p")" = t ]
}

@test "resend: a lost synchronous create is sent again once, and the reason recorded" {
	p="resent sfx $(uuid)"
	plan create truncate "$p"
	req elevenlabs-sfx audio_sfx "$p" '{"duration_sec":1}' | pipeline || true
	run -0 --separate-stderr mi-recover --once
	# The first create reached the provider; the second brought the sound.
	assert_equal "$(creates "$p")" 2
	[ "$(job_sql "status" "$p")" = completed ]
	run job_sql "jsonb_path_query_first(recovery, '\$[*] ? (@.event == \"create re-sent\").reason')" "$p"
	assert_output --partial "elevenlabs: synchronous"
}

@test "a 5xx with an HTML body is tried again, never a permanent failure" {
	p="html 500 $(uuid)"
	plan create 500 "$p"
	run -0 --separate-stderr pipeline < <(req elevenlabs-sfx audio_sfx "$p" '{"duration_sec":1}')
	jqok '.uri' "$output"
	[ "$(job_sql "status" "$p")" = completed ]
	# The proxy answered the 500 itself: one create reached the fake.
	[ "$(fake_stats | jq '.creates_accepted["elevenlabs"]')" -ge 1 ]
	[ "$(job_sql "submit_count" "$p")" -eq 2 ]
	p2="html poll 500 $(uuid) [slow:300]"
	plan poll 500 '' 2
	run -0 --separate-stderr pipeline < <(req meshy model_3d "$p2" '{"refine":false}')
	jqok '.uri' "$output"
	assert_equal "$(creates "$p2")" 1
}

# A cluster of this file's own, to restart and stop (started once, in
# setup_file); own_pg points a test at it.
own_pg_start() {
	export OWN_PG=${MI_TEST_TMP:-$BATS_FILE_TMPDIR}/faults-pg-$$
	export OWN_PORT=$(free_port)
	PG_FSYNC=off pg_start "$OWN_PG" "$OWN_PORT"
	$PSQL -q -X "postgresql://postgres@127.0.0.1:$OWN_PORT/postgres" \
	    -c "CREATE DATABASE faults" >/dev/null
	DATABASE_URL="postgresql://postgres@127.0.0.1:$OWN_PORT/faults" \
	    mi-migrate -q >/dev/null
}

own_pg() {
	export DATABASE_URL="postgresql://postgres@127.0.0.1:$OWN_PORT/faults"
}

pgctl() {
	as_pg "$PGBIN/pg_ctl" -D "$OWN_PG/data" -l "$OWN_PG/server.log" -w \
	    -t 60 -o "-p $OWN_PORT -k $OWN_PG/sock -c listen_addresses=127.0.0.1 -c fsync=off" "$@" >/dev/null
}

# outage N ACTION...: N jobs each of a synchronous (ElevenLabs) and an
# asynchronous (Meshy) provider in two pipelines; once they are under
# way, ACTION runs; then every job must end final and stored, each
# created exactly once.
outage() {
	local n=$1 tag=$(uuid) i
	shift
	export MI_ELEVENLABS_SFX_CONCURRENCY=4 MI_MESHY_CONCURRENCY=4
	# Durations in a cycle of 16, so that a larger run (FAULTS_OUTAGE_JOBS)
	# takes minutes, not an hour.
	for i in $(seq "$n"); do
		req elevenlabs-sfx audio_sfx "outage $tag sfx $i [slow:$((200 + (i % 16) * 150))]" '{"duration_sec":1}'
	done >"$BATS_TEST_TMPDIR/sfx"
	for i in $(seq "$n"); do
		req meshy model_3d "outage $tag 3d $i [slow:$((500 + (i % 16) * 200))]" '{"refine":false}'
	done >"$BATS_TEST_TMPDIR/3d"
	fake_reset
	pipeline <"$BATS_TEST_TMPDIR/sfx" >"$BATS_TEST_TMPDIR/sfx.out" 2>&1 &
	p1=$!
	( mi-submit 2>"$BATS_TEST_TMPDIR/s2.err" | mi-poll 2>"$BATS_TEST_TMPDIR/p2.err" |
	    mi-fetch 2>"$BATS_TEST_TMPDIR/f2.err" ) <"$BATS_TEST_TMPDIR/3d" >"$BATS_TEST_TMPDIR/3d.out" &
	p2=$!
	# The outage comes once both pipelines are connected (a program that
	# starts while the server is down exits 69 at once, by design), with
	# their work under way.
	for i in $(seq 300); do
		[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE
		    application_name IN ('mi-submit', 'mi-poll', 'mi-fetch')")" -ge 6 ] && break
		sleep 0.1
	done
	sleep 0.5
	"$@"
	wait "$p1" || true
	wait "$p2" || true
	# Whatever a pipeline could not finish, a recovery pass does.
	mi-recover --once >/dev/null 2>"$BATS_TEST_TMPDIR/recover.err" || true
	tail -n 5 "$BATS_TEST_TMPDIR"/*.err | cut -c1-300
	sql "SELECT status, count(*) FROM app.generation_jobs WHERE request->>'prompt' LIKE 'outage $tag %' GROUP BY 1"
	[ "$(sql "SELECT count(*) FROM app.generation_jobs WHERE request->>'prompt' LIKE 'outage $tag %'")" -eq $((2 * n)) ]
	[ "$(sql "SELECT count(*) FROM app.generation_jobs WHERE request->>'prompt' LIKE 'outage $tag %' AND status = 'completed' AND artifact_id IS NOT NULL")" -eq $((2 * n)) ]
	echo "# $n + $n jobs: creates elevenlabs $(fake_stats | jq '.creates_accepted.elevenlabs'), meshy $(fake_stats | jq '.creates_accepted.meshy')" >&3
	[ "$(fake_stats | jq '.creates_accepted.elevenlabs')" -eq "$n" ]
	[ "$(fake_stats | jq '.creates_accepted.meshy')" -eq "$n" ]
	[ "$(sql "SELECT count(*) FROM app.generation_jobs WHERE request->>'prompt' LIKE 'outage $tag %' AND submit_count <> 1")" -eq 0 ]
	# The cause is named, never an empty message.
	! grep -h 'database: *$' "$BATS_TEST_TMPDIR"/*.err "$BATS_TEST_TMPDIR"/*.out
}

@test "PostgreSQL restarted under running pipelines: every job final and stored, each created once" {
	own_pg
	export MI_ELEVENLABS_SFX_BASE_URL=$FAKE_URL/elevenlabs MI_MESHY_BASE_URL=$FAKE_URL/meshy
	# FAULTS_OUTAGE_JOBS (default 8 of each provider) for a larger run.
	outage "${FAULTS_OUTAGE_JOBS:-8}" pgctl restart -m fast
	run cat "$BATS_TEST_TMPDIR"/*.err
	assert_output --partial "connected to the database again"
}

@test "PostgreSQL stopped for seconds under running pipelines: nothing lost, nothing paid twice" {
	own_pg
	export MI_ELEVENLABS_SFX_BASE_URL=$FAKE_URL/elevenlabs MI_MESHY_BASE_URL=$FAKE_URL/meshy
	stop_for() { pgctl stop -m fast; sleep "$1"; pgctl start; }
	# FAULTS_STOP_S (default 6) seconds down.
	outage "${FAULTS_OUTAGE_JOBS:-8}" stop_for "${FAULTS_STOP_S:-6}"
}

@test "what a record reports survives a crash of the server right after it: the barrier before the record flushes the WAL" {
	own_pg
	export MI_ELEVENLABS_SFX_BASE_URL=$FAKE_URL/elevenlabs MI_ELEVENLABS_SFX_CONCURRENCY=100
	local tag=$(uuid) i rc=0
	for i in $(seq 10); do
		req elevenlabs-sfx audio_sfx "crash $tag $i" '{"duration_sec":1}'
	done >"$BATS_TEST_TMPDIR/in"
	# The WAL writer then flushes the commits that do not wait for it
	# (group commit's) seconds later: a record out before that reports
	# only what the barrier before it made durable.
	sql "ALTER SYSTEM SET wal_writer_delay = '10s'" >/dev/null
	sql "SELECT pg_reload_conf()" >/dev/null
	MI_GROUP_COMMIT=1 mi-submit <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" || rc=$?
	# mi-fetch's rows commit durably with their transaction, its records
	# need no barrier after it.
	MI_GROUP_COMMIT=1 mi-fetch <"$BATS_TEST_TMPDIR/out" >"$BATS_TEST_TMPDIR/stored" 2>>"$BATS_TEST_TMPDIR/err" || rc=$?
	pgctl stop -m immediate
	pgctl start
	sql "ALTER SYSTEM RESET wal_writer_delay" >/dev/null
	sql "SELECT pg_reload_conf()" >/dev/null
	[ "$rc" -eq 0 ]
	[ "$(jq -s 'map(select(.status == "completed")) | length' "$BATS_TEST_TMPDIR/out")" -eq 10 ]
	[ "$(grep -c '"content_hash"' "$BATS_TEST_TMPDIR/stored")" -eq 10 ]
	run -0 sql "SELECT count(*), count(a.id) FROM app.generation_jobs j
	    LEFT JOIN app.artifacts a ON a.id = j.artifact_id
	    WHERE j.request->>'prompt' LIKE 'crash $tag %' AND j.status = 'completed'"
	assert_output "10|10"
}

@test "a database that does not come back: exit 75 naming the cause, after MI_DB_RETRY_MS" {
	own_pg
	export MI_DB_RETRY_MS=1500 MI_ELEVENLABS_SFX_BASE_URL=$FAKE_URL/elevenlabs
	p="no db $(uuid) [slow:8000]"
	req elevenlabs-sfx audio_sfx "$p" '{"duration_sec":1}' >"$BATS_TEST_TMPDIR/r"
	mi-submit <"$BATS_TEST_TMPDIR/r" >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	# Until the create is at the provider (8 s there): mi-submit holds
	# its connection and its job.
	for i in $(seq 300); do
		[ "$(fake_stats | jq --arg p "$p" '.creates_by_prompt[$p] // 0')" -ge 1 ] && break
		sleep 0.1
	done
	[ "$(fake_stats | jq --arg p "$p" '.creates_by_prompt[$p] // 0')" -ge 1 ]
	pgctl stop -m fast
	rc=0
	wait "$pid" || rc=$?
	pgctl start
	echo "rc $rc" >&2
	[ "$rc" -eq 75 ]
	run cat "$BATS_TEST_TMPDIR/err"
	assert_output --partial "terminating connection due to administrator command"
	assert_output --partial "no connection again within 1.5 s"
	refute_output --regexp 'database: *$'
}

@test "a stalled download is aborted and tried again; the lease is renewed meanwhile" {
	export MI_FETCH_STALL_S=1
	p="stalled $(uuid) [slow:100]"
	plan download hang ''
	run -0 --separate-stderr pipeline < <(req meshy model_3d "$p" '{"refine":false}')
	jqok '.uri' "$output"
	[ "$(curl -sS "$PROXY_URL/_faultproxy/stats" | jq '.faults.download.hang')" -ge 1 ]
	[ "$(fake_stats | jq '.downloads.meshy')" -ge 2 ]
}

@test "SIGTERM stops mi-fetch within a second, in the middle of a download; the job is released" {
	p="term $(uuid) [slow:100]"
	req meshy model_3d "$p" '{"refine":false}' | mi-submit 2>/dev/null |
	    mi-poll 2>/dev/null >"$BATS_TEST_TMPDIR/jobs"
	# Counters from zero: the hang counted below is this mi-fetch's (the
	# test before also hung a download; a slow mi-fetch not yet started
	# would get the SIGTERM before its handler).
	curl -sS -X POST "$PROXY_URL/_faultproxy/reset" >/dev/null
	plan download hang '' 5
	export MI_FETCH_STALL_S=30
	mi-fetch <"$BATS_TEST_TMPDIR/jobs" >/dev/null 2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	for i in $(seq 300); do
		[ "$(curl -sS "$PROXY_URL/_faultproxy/stats" | jq '.faults.download.hang // 0')" -ge 1 ] && break
		sleep 0.1
	done
	sleep 0.3
	t0=$(date +%s%3N)
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	t=$(($(date +%s%3N) - t0))
	echo "# mi-fetch stopped $t ms after SIGTERM" >&3
	echo "rc $rc" >&2
	[ "$rc" -eq 75 ]
	[ "$t" -lt $((3000 * MI_TEST_SLOW)) ]
	[ "$(job_sql "lease_owner IS NULL" "$p")" = t ]
	run cat "$BATS_TEST_TMPDIR/err"
	assert_output --partial "stopped by signal 15"
	curl -sS -X POST "$PROXY_URL/_faultproxy/reset" >/dev/null
}

@test "a full disk: the recovery pass stops at the first refusal instead of downloading every result again" {
	cc -shared -fPIC -o "$BATS_FILE_TMPDIR/failwrite.so" \
	    "$BATS_TEST_DIRNAME/lib/failwrite.c" -ldl
	local tag=$(uuid) i
	for i in 1 2 3 4 5; do
		req meshy model_3d "full $tag $i" '{"refine":false}'
	done | mi-submit 2>/dev/null | mi-poll 2>/dev/null >/dev/null
	[ "$(sql "SELECT count(*) FROM app.generation_jobs WHERE request->>'prompt' LIKE 'full $tag %' AND status = 'completed' AND artifact_id IS NULL")" -eq 5 ]
	sql "UPDATE app.generation_jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE request->>'prompt' LIKE 'full $tag %'"
	before=$(fake_stats | jq '.downloads.meshy // 0')
	MI_FAULT_COUNT=1000000 LD_PRELOAD="$BATS_FILE_TMPDIR/failwrite.so" \
	    MI_FETCH_BACKOFF_MS=10 run -75 --separate-stderr mi-recover --once -f 1
	[[ $stderr == *"the store is full"* ]]
	after=$(fake_stats | jq '.downloads.meshy // 0')
	echo "# downloads while full: $((after - before)) for 5 jobs" >&3
	[ $((after - before)) -le 2 ]
	[ "$(sql "SELECT count(*) FROM app.generation_jobs WHERE request->>'prompt' LIKE 'full $tag %' AND status = 'completed' AND artifact_id IS NULL")" -eq 5 ]
	# Room again: the next pass stores them all.
	run -0 --separate-stderr mi-recover --once
	[ "$(sql "SELECT count(*) FROM app.generation_jobs WHERE request->>'prompt' LIKE 'full $tag %' AND artifact_id IS NOT NULL")" -eq 5 ]
}
