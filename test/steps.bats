#!/usr/bin/env bats
# Steps: a request names its run step; one live job chain per step however
# often and from wherever it is sent (creates counted by the fake itself);
# the step cache per tenant (hard-linked hits at no cost, cache off,
# run_only, expiry, never across tenants); app.run_steps and its debug
# output after success, fallback and failure; the last poll at the
# deadline.

load test_helper
load jobs_helper

setup_file() {
	jobs_setup_file
}

teardown_file() {
	fake_stop
}

# step STEP PROMPT [MORE]: a Meshy preview request of step STEP of
# workflow campaign.build in run ${RUN:-$RUN_ID}, plus the object MORE.
step() {
	jq -c --arg s "$1" --arg run "${RUN:-$RUN_ID}" \
	    --argjson more "${3:-"{}"}" '.step_id = $s | .run_id = $run |
	    .workflow_name = "campaign.build" | . + $more' \
	    <<<"$(req meshy model_3d "$2" '{"refine":false}')"
}

# jqv JSON FILTER [jq options]: jq -e FILTER holds on JSON.
jqv() {
	local json=$1 filter=$2
	shift 2
	if ! jq -e "$@" "$filter" <<<"$json" >/dev/null; then
		echo "jq -e '$filter' does not hold on:" >&2
		echo "$json" >&2
		return 1
	fi
}

# creates PROMPT: creates the fake accepted for that prompt.
creates() {
	fake_stats | jq --arg p "$1" '.creates_by_prompt[$p] // 0'
}

# run_step RUN STEP: the app.run_steps row as JSON.
run_step() {
	sql "SELECT to_jsonb(s) FROM app.run_steps s
	    WHERE run_id = '$1' AND step_id = '$2'"
}

# inode of an artifact record's file.
inode() {
	command stat -c %i "$(stored_path "$1")"
}

@test "the same request in two pipelines at once: one job, one create, the same artifact" {
	local r a b row
	r=$(step wheel 'twice at once [slow:600]')
	pipeline <<<"$r" >"$BATS_TEST_TMPDIR/a" &
	pipeline <<<"$r" >"$BATS_TEST_TMPDIR/b" &
	wait
	a=$(cat "$BATS_TEST_TMPDIR/a")
	b=$(cat "$BATS_TEST_TMPDIR/b")
	jqok '.cache_hit == false and (.id | length) == 36' "$a"
	[ "$(jq -r .id <<<"$a")" = "$(jq -r .id <<<"$b")" ]
	run -0 creates 'twice at once [slow:600]'
	assert_output 1
	run -0 job_count 'twice at once [slow:600]'
	assert_output 1
	row=$(run_step "$RUN_ID" wheel)
	jqv "$row" '.status == "completed" and .attempt == 1 and
	    .cache_hit == false and .output_artifact_ids == [$a.id] and
	    .workflow_name == "campaign.build" and .id == $a.run_step_id and
	    (.input_hash | test("^[0-9a-f]{64}$")) and .error == null and
	    .duration_ms >= 0 and .started_at != null and .ended_at != null' \
	    --argjson a "$a"
	jqv "$row" '.debug.provider == "meshy" and
	    .debug.model == "latest" and .debug.estimated_cost_usd == 0.4 and
	    .debug.reported_cost_usd == 0.4 and .debug.cost_usd == 0.4 and
	    .debug.cache.hit == false and .debug.cache.scope == "global" and
	    (.debug.cache.key | test("^[0-9a-f]{64}$")) and
	    (.debug.attempts | length) == 1 and
	    .debug.attempts[0].job_id == $a.job_id and
	    .debug.attempts[0].creates == 1 and
	    .debug.attempts[0].status == "completed" and
	    .debug.attempts[0].error == null' \
	    --argjson a "$a"
	# The artifact names its step and job.
	jqok '.run_step_id != null and .job_id != null and
	    .metadata.job_id == .job_id' "$a"
}

@test "a re-send after kill -9 of the first pipeline: the job is taken over, no second create" {
	local r d=$BATS_TEST_TMPDIR p1 p2 p3 i out
	export MI_LEASE_MS=$((1000 * MI_TEST_SLOW))
	r=$(step resend 'killed then re-sent [slow:1500]')
	mkfifo "$d/f1" "$d/f2"
	mi-submit <<<"$r" >"$d/f1" 2>/dev/null &
	p1=$!
	mi-poll <"$d/f1" >"$d/f2" 2>/dev/null &
	p2=$!
	mi-fetch <"$d/f2" >"$d/out1" 2>/dev/null &
	p3=$!
	for i in $(seq 1 300); do
		[ "$(job_sql 'provider_job_id IS NOT NULL' \
		    'killed then re-sent [slow:1500]')" = t ] && break
		sleep 0.1
	done
	kill -9 $p1 $p2 $p3 2>/dev/null || true
	wait $p1 $p2 $p3 || true
	[ ! -s "$d/out1" ]
	run -0 pipeline <<<"$r"
	out=$output
	jqok '.cache_hit == false and (.id | length) == 36' "$out"
	run -0 creates 'killed then re-sent [slow:1500]'
	assert_output 1
	run -0 job_count 'killed then re-sent [slow:1500]'
	assert_output 1
	grep -q 'answered with its job' "$d/submit.err"
	grep -q 'taken over' "$d/poll.err"
	run -0 run_step "$RUN_ID" resend
	jqok '.status == "completed" and .attempt == 1' "$output"
	# Sent once more after it is stored: the same artifact, still no
	# create.
	run -0 pipeline <<<"$r"
	[ "$(jq -r .id <<<"$output")" = "$(jq -r .id <<<"$out")" ]
	run -0 creates 'killed then re-sent [slow:1500]'
	assert_output 1
}

@test "the same inputs in a new run: served from the cache, the file linked, cost 0" {
	local r1 r2 a b run2=$(uuid)
	a=$(pipeline <<<"$(step cached 'cache me')")
	run -0 creates 'cache me'
	assert_output 1
	run -0 pipeline <<<"$(RUN=$run2 step cached 'cache me')"
	b=$output
	run -0 creates 'cache me'
	assert_output 1
	jqv "$b" '.cache_hit == true and .metadata.cost_usd == 0 and
	    .run_id != $a.run_id and .id != $a.id and
	    .content_hash == $a.content_hash and .job_id == $a.job_id and
	    .metadata.cache.source_artifact_id == $a.id and
	    .metadata.cache.saved_usd == 0.4' \
	    --argjson a "$a"
	[ "$(inode "$a")" = "$(inode "$b")" ]
	[ "$(stored_path "$a")" != "$(stored_path "$b")" ]
	run -0 sql "SELECT count(*) FROM app.generation_jobs
	    WHERE run_id = '$run2'"
	assert_output 0
	run -0 run_step "$run2" cached
	jqv "$output" '.status == "completed" and .cache_hit == true and
	    .output_artifact_ids == [$b.id] and .debug.cache.hit == true and
	    .debug.cost_usd == 0 and .debug.cache.saved_usd == 0.4' \
	    --argjson b "$b"
	# The run row was made by mi.
	run -0 sql "SELECT status || ' ' || tenant_id FROM app.runs
	    WHERE id = '$run2'"
	assert_output 'running org_a'
	# mi-cost --by step: the hit cost nothing and saved the first job's
	# cost; the first run's step paid it, with one create.
	run -0 mi-cost --by step -t org_a
	jqv "$output" 'map(select(.run_id == $r and
	    .step_id == "cached")) | length == 1 and .[0].cache_hits == 1 and
	    .[0].cache_saved_usd == 0.4 and .[0].cost_usd == 0 and
	    .[0].jobs == 0 and .[0].creates == 0' -s --arg r "$run2"
	jqv "$output" 'map(select(.run_id == $a.run_id and
	    .step_id == "cached")) | .[0].creates == 1 and .[0].jobs == 1 and
	    .[0].cost_usd == 0.4 and .[0].cache_hits == 0 and
	    .[0].workflow_name == "campaign.build"' -s --argjson a "$a"
	run -0 mi-cost --by step -t org_a -f table
	assert_line --index 0 --partial 'step_id'
	run -64 mi-cost --by step,tenant
}

@test "no cache hit: cache off, another tenant, run_only across runs, an expired entry" {
	local run2=$(uuid) run3=$(uuid) run4=$(uuid) run5=$(uuid) row
	pipeline <<<"$(step miss 'miss me')" >/dev/null
	run -0 creates 'miss me'
	assert_output 1
	# cache off: sent to the provider, and nothing written to the cache.
	run -0 pipeline <<<"$(RUN=$run2 step miss 'miss me' \
	    '{"cache":"off"}')"
	jqok '.cache_hit == false' "$output"
	run -0 creates 'miss me'
	assert_output 2
	# Another tenant with the same inputs.
	run -0 pipeline <<<"$(RUN=$run3 TENANT=org_b step miss 'miss me')"
	jqok '.cache_hit == false and .tenant_id == "org_b"' "$output"
	run -0 creates 'miss me'
	assert_output 3
	# run_only: a result of one run is not served to another.
	pipeline <<<"$(step only 'only mine' '{"cache":"run_only"}')" >/dev/null
	run -0 pipeline <<<"$(RUN=$run4 step only 'only mine' \
	    '{"cache":"run_only"}')"
	jqok '.cache_hit == false' "$output"
	run -0 creates 'only mine'
	assert_output 2
	run -0 sql "SELECT scope FROM app.step_cache WHERE step_id = 'only'"
	assert_output run_only
	# cache_ttl_sec: the entry expires.
	pipeline <<<"$(step ttl 'short lived' '{"cache_ttl_sec":1}')" >/dev/null
	run -0 sql "SELECT expires_at > created_at AND
	    expires_at <= created_at + interval '2 s' FROM app.step_cache
	    WHERE step_id = 'ttl'"
	assert_output t
	sleep 1.5
	run -0 pipeline <<<"$(RUN=$run5 step ttl 'short lived' \
	    '{"cache_ttl_sec":1}')"
	jqok '.cache_hit == false' "$output"
	run -0 creates 'short lived'
	assert_output 2
}

@test "a step named by run_step_id: its row, its job, answered again" {
	local id=$(uuid) r a
	r=$(jq -c --arg id "$id" 'del(.step_id) | .run_step_id = $id' \
	    <<<"$(step x 'by id')")
	# Twice in one stream: one job, two answers.
	run -0 pipeline <<<"$r"$'\n'"$r"
	[ "${#lines[@]}" -eq 2 ]
	[ "$(jq -r .id <<<"${lines[0]}")" = "$(jq -r .id <<<"${lines[1]}")" ]
	a=${lines[0]}
	run -0 creates 'by id'
	assert_output 1
	run -0 sql "SELECT step_id || ' ' || status FROM app.run_steps
	    WHERE id = '$id'"
	assert_output "$id completed"
	jqv "$a" '.run_step_id == $id' --arg id "$id"
	# The step's result stands when it is asked for with other inputs.
	run -0 --separate-stderr mi-submit <<<"$(jq -c '.prompt = "by id 2"' \
	    <<<"$r")"
	[ "$(jq -r .id <<<"$output")" = "$(jq -r .id <<<"$a")" ]
	[[ $stderr == *"was made from other inputs"* ]]
	run -0 creates 'by id 2'
	assert_output 0
	# The row is the one named: another run is refused.
	run -1 --separate-stderr mi-submit <<<"$(jq -c \
	    --arg r "$(uuid)" '.run_id = $r' <<<"$r")"
	jqok '.error.code == "VALIDATION_ERROR" and
	    (.error.message | contains("is a step of run"))' "$output"
	# A bad step_id is refused before anything is written.
	run -1 --separate-stderr mi-submit <<<"$(step 'no spaces' 'bad name')"
	jqok '.error.code == "VALIDATION_ERROR" and
	    (.error.message | contains("step_id"))' "$output"
	run -1 --separate-stderr mi-submit <<<"$(step y 'bad cache' \
	    '{"cache":"sometimes"}')"
	jqok '.error.code == "VALIDATION_ERROR"' "$output"
}

@test "run_steps after a fallback and after a failure; a failed step gets a new attempt" {
	local row r
	run -0 pipeline <<<"$(step fb 'fall [fail@meshy]' \
	    '{"fallback":["local"]}')"
	jqok '.metadata.provider_id == "local"' "$output"
	row=$(run_step "$RUN_ID" fb)
	jqok '.status == "completed" and .attempt == 1 and
	    .debug.provider == "local" and (.debug.attempts | length) == 2 and
	    .debug.attempts[0].provider_id == "meshy" and
	    .debug.attempts[0].status == "failed" and
	    .debug.attempts[0].error.code == "PROVIDER_ERROR" and
	    .debug.attempts[1].fallback_from == .debug.attempts[0].job_id and
	    .debug.attempts[1].status == "completed"' "$row"
	# No fallback: the step fails with the job's error.
	r=$(step broken 'broken [fail]')
	run -1 pipeline <<<"$r"
	row=$(run_step "$RUN_ID" broken)
	jqok '.status == "failed" and .attempt == 1 and
	    .error.code == "PROVIDER_ERROR" and .error.attempt == 1 and
	    (.error.message | length) > 0 and (.error.timestamp | length) > 0 and
	    (.error.details.job_id | length) == 36 and .ended_at != null and
	    .debug.attempts[0].error.code == "PROVIDER_ERROR"' "$row"
	# Sent again: a second attempt, with its own create.
	run -1 pipeline <<<"$r"
	run -0 creates 'broken [fail]'
	assert_output 2
	row=$(run_step "$RUN_ID" broken)
	jqok '.status == "failed" and .attempt == 2 and .error.attempt == 2 and
	    (.debug.attempts | map(.attempt)) == [1, 2]' "$row"
}

@test "a result ready at the deadline is taken (late), not timed out" {
	local out
	# The first poll is due after the deadline (and none goes early):
	# the only poll is the last look, and the job (1 s) is done by then
	# (1.5 s).
	export MI_POLL_BATCH_MS=0 MI_MESHY_POLL_INTERVAL_MS=60000
	MI_MESHY_TIMEOUT_MS=1500 run -0 \
	    pipeline <<<"$(step late 'just in time [slow:1000]')"
	out=$output
	jqok '.cache_hit == false and .metadata.provider_id == "meshy"' "$out"
	run -0 job_sql "status || ' ' || late" 'just in time [slow:1000]'
	assert_output 'completed true'
	grep -q 'found at the deadline (late)' "$BATS_TEST_TMPDIR/poll.err"
	run -0 run_step "$RUN_ID" late
	jqok '.status == "completed" and .debug.attempts[0].late == true' \
	    "$output"
	# Still not done at the deadline: timed out after that one poll.
	MI_MESHY_TIMEOUT_MS=500 run -1 \
	    pipeline <<<"$(step later 'too late [never]')"
	jqok '.error.code == "TIMEOUT"' "$output"
	run -0 run_step "$RUN_ID" later
	jqok '.status == "failed" and .error.code == "TIMEOUT"' "$output"
}

@test "the stored result's warnings are in the step's debug output" {
	local a
	run -0 pipeline <<<"$(jq -c '.step_id = "img" |
	    .workflow_name = "campaign.build"' <<<"$(req nano-banana image \
	    'warned' '{"width":2048,"height":1024}')")"
	a=$output
	jqok '.metadata.warnings | length > 0' "$a"
	run -0 run_step "$RUN_ID" img
	jqv "$output" '.status == "completed" and
	    .debug.warnings == $a.metadata.warnings' --argjson a "$a"
}

@test "a step's list of attempts is its jobs as they are, for one job, a fallback and a second attempt" {
	local r
	RUN=$(uuid)
	run -0 pipeline <<<"$(step one 'listed once')"
	run -0 pipeline <<<"$(step fell 'listed fall [fail@meshy]' \
	    '{"fallback":["local"]}')"
	r=$(step again 'listed again [fail]')
	run -1 pipeline <<<"$r"
	run -1 pipeline <<<"$r"
	# Rebuilt here from the jobs as they are now, the way 0009 built it
	# at every change: the same list and the same total.
	run -0 sql "SELECT s.step_id || ' ' || jsonb_array_length(s.debug->'attempts')
	      || ' ' || (s.debug->'attempts' = x.attempts
	                 AND s.debug->'cost_usd' = x.cost_usd)
	    FROM app.run_steps s, LATERAL (SELECT
	        to_jsonb(coalesce(sum(j.cost_usd), 0)) AS cost_usd,
	        jsonb_agg(jsonb_build_object('attempt', j.step_attempt,
	          'job_id', j.id, 'provider_id', j.provider_id,
	          'model', j.provider_model, 'status', j.status,
	          'estimated_cost_usd', j.estimate_usd, 'cost_usd', j.cost_usd,
	          'cost_source', j.cost_source, 'fallback_from', j.previous_job_id,
	          'creates', j.submit_count, 'late', j.late,
	          'error', CASE WHEN j.error_code IS NOT NULL THEN
	            jsonb_build_object('code', j.error_code,
	            'message', j.error_message) END,
	          'started_at', j.started_at, 'completed_at', j.completed_at,
	          'recovery', CASE WHEN jsonb_array_length(j.recovery) > 0
	            THEN j.recovery END)
	          ORDER BY j.created_at, j.id) AS attempts
	        FROM app.generation_jobs j WHERE j.run_step_id = s.id) x
	    WHERE s.run_id = '$RUN' ORDER BY s.step_id"
	assert_output "again 2 true
fell 2 true
one 1 true"
	# The one-job list came from the job's row: it is the job as stored.
	run -0 sql "SELECT debug->'attempts'->0->>'status' || ' ' ||
	    (debug->'attempts'->0->>'creates') FROM app.run_steps
	    WHERE run_id = '$RUN' AND step_id = 'one'"
	assert_output 'completed 1'
}
