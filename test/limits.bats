#!/usr/bin/env bats
# Concurrency limits per tenant and provider, counted in PostgreSQL: they
# hold across processes, queue first come first served, free a slot when
# a job ends or its lease lapses, and one tenant's queue does not slow
# another tenant.

load test_helper
load jobs_helper

setup_file() {
	jobs_setup_file
}

teardown_file() {
	fake_stop
}

video() {
	TENANT=$1 req nano-banana-video video "$2" '{"duration_sec":4}'
}

@test "6 processes, 20 videos of one tenant: at most 2 at the provider, all done, started in arrival order; another tenant not slowed" {
	local i p t0 tb0 tb1 d=$BATS_TEST_TMPDIR
	for i in $(seq 0 19); do
		video ta "clip $i [slow:400] [tag:ta]" >>"$d/part$((i % 6))"
	done
	t0=$(date +%s%N)
	for p in 0 1 2 3 4 5; do
		(mi-submit <"$d/part$p" 2>/dev/null | mi-poll >"$d/out$p" 2>/dev/null) &
	done
	sleep 1
	tb0=$(date +%s%N)
	run -0 --separate-stderr bash -c 'mi-submit | mi-poll' \
	    <<<"$(video tb 'b clip [slow:400] [tag:tb]')"
	tb1=$(date +%s%N)
	jqok '.status == "completed"' "$output"
	wait
	# Tenant b waited for nobody: it started before the last of a's,
	# however fast the machine; at full speed its job took about one
	# job's time while tenant a's queue of 20 at 2 at a time takes 4 s
	# (under valgrind seven pipelines share the cores, and the time says
	# little).
	if [ "$MI_TEST_SLOW" -eq 1 ]; then
		[ $(((tb1 - tb0) / 1000000)) -lt 2500 ]
		[ $(((tb1 - t0) / 1000000)) -lt 4000 ]
	fi
	[ "$(sql "SELECT (SELECT started_at FROM app.generation_jobs
	    WHERE request->>'prompt' = 'b clip [slow:400] [tag:tb]') <
	    (SELECT max(started_at) FROM app.generation_jobs WHERE tenant_id = 'ta')")" = t ]
	run -0 cat "$d"/out*
	[ "${#lines[@]}" -eq 20 ]
	jqok -s 'all(.status == "completed")' "$output"
	run -0 stat '.max_concurrent_by_tag'
	jqok '.ta == 2 and .tb == 1' "$output"
	# The claims followed the order in which the jobs were written.
	run -0 sql "SELECT string_agg(id::text, ',' ORDER BY created_at)
	    = string_agg(id::text, ',' ORDER BY started_at)
	    FROM app.generation_jobs WHERE tenant_id = 'ta'"
	assert_output t
}

@test "app.tenant_limits overrides the provider's limit for one tenant" {
	local i in=
	sql "INSERT INTO app.tenant_limits (tenant_id, provider_id, concurrency)
	    VALUES ('tc', 'nano-banana-video', 1), ('tc2', '*', 3)"
	for i in 1 2 3 4; do
		in+=$(video tc "c$i [slow:200] [tag:tc]")$'\n'
		in+=$(video tc2 "d$i [slow:200] [tag:tc2]")$'\n'
		in+=$(video tc2 "e$i [slow:200] [tag:tc2]")$'\n'
	done
	run -0 --separate-stderr bash -c 'mi-submit | mi-poll' <<<"$in"
	[ "${#lines[@]}" -eq 12 ]
	run -0 stat '.max_concurrent_by_tag'
	jqok '.tc == 1 and .tc2 == 3' "$output"
}

@test "MI_<ID>_CONCURRENCY changes the provider's default limit" {
	local i in=
	for i in 1 2 3 4 5 6; do
		in+=$(TENANT=td req meshy model_3d "m$i [slow:200] [tag:td]" '{"refine":false}')$'\n'
	done
	MI_MESHY_CONCURRENCY=3 run -0 --separate-stderr bash -c 'mi-submit | mi-poll' <<<"$in"
	[ "${#lines[@]}" -eq 6 ]
	[ "$(stat '.max_concurrent_by_tag.td')" -eq 3 ]
}

@test "--no-wait leaves a job queued when no slot is free; a worker adopts it later" {
	local first second
	sql "INSERT INTO app.tenant_limits VALUES ('te', '*', 1)"
	run -0 --separate-stderr mi-submit <<<"$(video te 'first [slow:600]')"
	first=$output
	jqok '.status == "processing"' "$first"
	run -0 --separate-stderr mi-submit --no-wait <<<"$(video te 'second [slow:100]')"
	second=$output
	jqok '.status == "pending" and .lease_owner == null and
	    .provider_job_id == null' "$second"
	# mi-poll takes both: the second starts when the first is done.
	run -0 --separate-stderr mi-poll <<<"$first"$'\n'"$second"
	[ "${#lines[@]}" -eq 2 ]
	jqok -s 'all(.status == "completed")' "$output"
	run -0 sql "SELECT (SELECT started_at FROM app.generation_jobs
	    WHERE request->>'prompt' = 'second [slow:100]') >=
	    (SELECT completed_at FROM app.generation_jobs
	    WHERE request->>'prompt' = 'first [slow:600]')"
	assert_output t
}

@test "a slot is held while its lease is live and freed when it lapses" {
	local id
	sql "INSERT INTO app.tenant_limits VALUES ('tf', '*', 1)"
	id=$(uuid)
	sql "INSERT INTO app.generation_jobs (id, tenant_id, run_id, run_step_id,
	    provider_id, provider_job_id, media_type, status, poll_interval_ms,
	    timeout_ms, input_params, lease_owner, lease_expires_at)
	    VALUES ('$id', 'tf', '$RUN_ID', '$(uuid)', 'nano-banana-video',
	    'models/x/operations/gone', 'video', 'processing', 50, 1000, '{}',
	    'a-dead-worker', now() + interval '1 hour')"
	run -0 --separate-stderr mi-submit --no-wait <<<"$(video tf 'blocked')"
	jqok '.status == "pending"' "$output"
	sql "UPDATE app.generation_jobs SET lease_expires_at = now()
	    WHERE id = '$id'"
	run -0 --separate-stderr mi-submit --no-wait <<<"$(video tf 'free again')"
	jqok '.status == "processing"' "$output"
}

@test "a worker takes its job past another worker's older one when slots are plenty, and waits its turn when they are short" {
	local id
	id=$(uuid)
	# Another worker's job waits, older than the others, its lease live.
	sql "INSERT INTO app.generation_jobs (id, tenant_id, run_id, run_step_id,
	    provider_id, media_type, status, poll_interval_ms, timeout_ms,
	    input_params, lease_owner, lease_expires_at, created_at)
	    VALUES ('$id', 'th', '$RUN_ID', '$(uuid)', 'nano-banana-video',
	    'video', 'pending', 50, 1000, '{}', 'another-worker',
	    now() + interval '1 hour', now() - interval '1 minute')"
	# A thousand slots free: more than the claim's window, so every job
	# in it has one to spare.
	sql "INSERT INTO app.tenant_limits VALUES ('th', '*', 1000)"
	run -0 --separate-stderr timeout 10 mi-submit <<<"$(video th 'past it')"
	jqok '.status == "processing"' "$output"
	# The other worker's job still waits for its own worker.
	run -0 sql "SELECT status || ' ' || lease_owner FROM app.generation_jobs
	    WHERE id = '$id'"
	assert_output 'pending another-worker'
	# Three slots, one held: the limit is within reach, and the job
	# waits for the older one's turn.
	sql "UPDATE app.tenant_limits SET concurrency = 3 WHERE tenant_id = 'th'"
	run --separate-stderr timeout 3 mi-submit <<<"$(video th 'its turn')"
	[ "$status" -eq 124 ]
	run -0 sql "SELECT status FROM app.generation_jobs
	    WHERE request->>'prompt' = 'its turn'"
	assert_output pending
}

@test "a waiting mi-submit wakes when a slot frees in another process" {
	local t0 t1
	sql "INSERT INTO app.tenant_limits VALUES ('tg', '*', 1)"
	run -0 --separate-stderr mi-submit <<<"$(video tg 'holder [slow:300]')"
	holder=$output
	# The backstop poll is slow here: only the notification can wake it
	# in time.
	(MI_SLOT_POLL_MS=60000 mi-submit <<<"$(video tg 'waiter')" \
	    >"$BATS_TEST_TMPDIR/waiter" 2>/dev/null) &
	sleep 0.3
	[ ! -s "$BATS_TEST_TMPDIR/waiter" ]
	t0=$(date +%s%N)
	run -0 --separate-stderr mi-poll <<<"$holder"
	wait
	t1=$(date +%s%N)
	jqok '.status == "processing"' "$(cat "$BATS_TEST_TMPDIR/waiter")"
	# Woken by the notification, long before the 60 s backstop.
	[ $(((t1 - t0) / 1000000)) -lt $((3000 * MI_TEST_SLOW)) ]
}
