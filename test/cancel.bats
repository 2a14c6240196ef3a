#!/usr/bin/env bats
# Remote cancel: a job mi gives up on (its timeout) is cancelled at the
# provider, the answer and the cost the provider reports recorded;
# mi-cancel cancels open jobs by id, step, run or tenant, frees their
# slots, and wakes the worker that holds them.

load test_helper
load jobs_helper

setup_file() {
	# Jobs stay queued at the fake long enough to be cancelled there.
	jobs_setup_file --job-ms 30000
}

teardown_file() {
	fake_stop
}

# The fake's log lines of the job whose prompt is $1.
events() {
	local id
	id=$(job_sql provider_job_id "$1")
	jq -c --arg id "$id" 'select(.job_id == $id)' "$FAKE_LOG"
}

@test "a timed-out job at fal gets its cancel call; the cost it reports is recorded" {
	MI_FAL_TIMEOUT_MS=1200 run -1 pipeline <<<"$(req fal image 'cx fal [never]')"
	run -0 job_sql "status || ' ' || error_code" 'cx fal [never]'
	[ "$output" = "timed_out TIMEOUT" ]
	run -0 events 'cx fal [never]'
	jqok -s '[.[] | select(.method == "PUT" and (.path | endswith("/cancel")))]
	    | length == 1 and .[0].status == 202' "$output"
	run -0 job_sql "provider_state->'cancel'" 'cx fal [never]'
	jqok '.accepted == true and .cost_usd == 0' "$output"
	run -0 job_sql "(cost_usd = 0) || ' ' || cost_source" 'cx fal [never]'
	[ "$output" = "true provider" ]
	grep -q 'cancelled at fal: accepted' "$BATS_TEST_TMPDIR/poll.err"
}

@test "a timed-out job at Replicate gets its cancel call; the cost it reports is recorded" {
	MI_REPLICATE_TIMEOUT_MS=1100 run -1 pipeline \
	    <<<"$(req replicate video 'cx replicate [never]' '{"duration_sec":6}')"
	run -0 job_sql "status || ' ' || error_code" 'cx replicate [never]'
	[ "$output" = "timed_out TIMEOUT" ]
	run -0 events 'cx replicate [never]'
	# Cancel-After is the timeout and a margin (1.1 s + 10 s, rounded
	# up): mi cancels first.
	jqok -s '[.[] | select(.event == "create")][0].headers["cancel-after"] == "12s"' "$output"
	jqok -s '[.[] | select(.method == "POST" and (.path | endswith("/cancel")))]
	    | length == 1 and .[0].status == 200' "$output"
	run -0 job_sql "provider_state->'cancel'" 'cx replicate [never]'
	jqok '.accepted == true and .cost_usd == 0' "$output"
	run -0 job_sql "(cost_usd = 0) || ' ' || cost_source" 'cx replicate [never]'
	[ "$output" = "true provider" ]
	grep -q 'cancelled at replicate: accepted' "$BATS_TEST_TMPDIR/poll.err"
}

@test "a timed-out job at Meshy is deleted there" {
	MI_MESHY_TIMEOUT_MS=1200 run -1 pipeline \
	    <<<"$(req meshy model_3d 'cx meshy [never]' '{"refine":false}')"
	run -0 events 'cx meshy [never]'
	jqok -s '[.[] | select(.method == "DELETE")] | length == 1 and
	    .[0].status == 200' "$output"
	run -0 job_sql "provider_state->'cancel'->>'accepted'" 'cx meshy [never]'
	[ "$output" = true ]
}

@test "a timed-out skybox at Blockade is aborted there (DELETE)" {
	local num
	MI_BLOCKADE_SKYBOX_TIMEOUT_MS=1200 run -1 pipeline \
	    <<<"$(req blockade-skybox environment_map 'cx blockade [never]')"
	run -0 job_sql "status || ' ' || error_code" 'cx blockade [never]'
	[ "$output" = "timed_out TIMEOUT" ]
	num=$(job_sql provider_job_id 'cx blockade [never]')
	run -0 jq -c --arg p "/blockade/api/v1/imagine/requests/$num" \
	    'select(.method == "DELETE" and .path == $p)' "$FAKE_LOG"
	[ "${#lines[@]}" -eq 1 ]
	jqok '.status == 200' "${lines[0]}"
	run -0 job_sql "provider_state->'cancel'->>'accepted'" 'cx blockade [never]'
	[ "$output" = true ]
	# At Blockade the request is now aborted.
	run -0 curl -sf -H "x-api-key: $FAKE_KEY" \
	    "$FAKE_URL/blockade/api/v1/imagine/requests/$num"
	jqok '.request.status == "abort"' "$output"
}

@test "mi-cancel --run cancels the run's open jobs and frees their slots" {
	local run
	run=$(uuid)
	export MI_FAL_CONCURRENCY=1
	for i in 1 2 3; do
		RUN_ID=$run req fal image "cx run $i [never]"
	done | mi-submit -n >"$BATS_TEST_TMPDIR/jobs"
	run -0 sql "SELECT string_agg(status, ',' ORDER BY created_at)
	    FROM app.generation_jobs WHERE run_id = '$run'"
	[ "$output" = "processing,pending,pending" ]
	# A dry run changes nothing.
	run -0 --separate-stderr mi-cancel --dry-run --run "$run"
	[ "${#lines[@]}" -eq 3 ]
	jqok '.dry_run == true' "${lines[0]}"
	run -0 sql "SELECT count(*) FROM app.generation_jobs
	    WHERE run_id = '$run' AND status <> 'failed'"
	[ "$output" = 3 ]
	run -0 --separate-stderr mi-cancel --run "$run"
	[ "${#lines[@]}" -eq 3 ]
	jqok '.status == "failed" and .error_code == "CANCELLED" and
	    .error.code == "CANCELLED" and .cancel.accepted == true and
	    .cancel.cost_usd == 0' "${lines[0]}"
	jqok '.cancel == null and .lease_owner == null' "${lines[2]}"
	run -0 sql "SELECT string_agg(error_code, ',') FROM app.generation_jobs
	    WHERE run_id = '$run' AND status = 'failed'"
	[ "$output" = "CANCELLED,CANCELLED,CANCELLED" ]
	# The slot is free: a new job of the tenant starts at once.
	run -0 --separate-stderr mi-submit -n <<<"$(req fal image 'cx after [never]')"
	jqok '.status == "processing"' "$output"
	# Nothing open is left to cancel; running it again is harmless.
	run -0 --separate-stderr mi-cancel --run "$run"
	[ -z "$output" ]
	run -0 --separate-stderr mi-cancel --tenant org_a
	[ "${#lines[@]}" -ge 1 ]
	unset MI_FAL_CONCURRENCY
}

@test "mi-cancel of a job a worker holds: the worker writes it out at once" {
	local id
	mkfifo "$BATS_TEST_TMPDIR/in"
	mi-poll <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/out" \
	    2>"$BATS_TEST_TMPDIR/poll.err" 3>&- &
	pid=$!
	mi-submit <<<"$(req fal image 'cx held [never]')" >"$BATS_TEST_TMPDIR/in"
	id=$(job_sql id 'cx held [never]')
	for i in $(seq 1 300); do
		[ "$(job_sql "lease_owner LIKE 'mi-poll@%'" 'cx held [never]')" = t ] && break
		sleep 0.1
	done
	run -0 --separate-stderr mi-cancel "$id"
	jqok '.error_code == "CANCELLED"' "$output"
	run -0 timeout 10 tail --pid="$pid" -f /dev/null
	run -1 wait "$pid"
	run -0 cat "$BATS_TEST_TMPDIR/out"
	jqok ".id == \"$id\" and .error.code == \"CANCELLED\"" "$output"
}

@test "mi-cancel reads selectors from stdin; a bad one is an error record" {
	local step
	run -0 --separate-stderr mi-submit <<<"$(req fal image 'cx step [never]')"
	step=$(jq -r .run_step_id <<<"$output")
	run -1 --separate-stderr mi-cancel <<<"{\"run_step_id\":\"$step\"}
{\"run_id\":\"not-a-uuid\"}
{}"
	[ "${#lines[@]}" -eq 3 ]
	jqok '.error_code == "CANCELLED"' "${lines[0]}"
	jqok '.error.code == "VALIDATION_ERROR"' "${lines[1]}"
	jqok '.error.code == "VALIDATION_ERROR"' "${lines[2]}"
	[[ $stderr == *"mi-cancel: "*"not a UUID"* ]]
}

@test "mi-cancel: no database is 69, nothing named is an error record" {
	DATABASE_URL=postgresql://postgres@127.0.0.1:1/none run -69 --separate-stderr \
	    mi-cancel --run "$(uuid)"
	[[ $stderr == "mi-cancel: unable to connect to the database"* ]]
	run -1 --separate-stderr mi-cancel --run not-a-uuid
	jqok '.error.code == "VALIDATION_ERROR"' "$output"
}
