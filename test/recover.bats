#!/usr/bin/env bats
# mi-recover: takes over jobs whose owner is gone and drives each to its
# end as its state requires, never sends a create the provider accepted
# twice, times out what is overdue, fails what the provider forgot, runs
# safely twice at once, stops cleanly, and takes over within a lease.

load test_helper
load jobs_helper

setup_file() {
	jobs_setup_file
	export MI_LEASE_MS=$((1000 * MI_TEST_SLOW))	# a slow build needs longer leases
}

teardown_file() {
	fake_stop
}

# A test that failed half-way leaves no worker of its own running (it
# would hold bats' output open and work the next tests' jobs).
teardown() {
	local p
	for p in $(jobs -p); do
		kill "$p" 2>/dev/null || true
	done
}

# A job of prompt $1 whose owner died: its lease lapsed a second ago.
orphan() {
	sql "UPDATE app.generation_jobs SET lease_owner = 'mi-poll@gone:1:dead',
	    lease_expires_at = now() - interval '1 second'
	    WHERE request->>'prompt' = '$1'" >/dev/null
}

# lose_create PROMPT [SET...]: the job of PROMPT as a worker leaves it
# when it dies between sending the create and reading its answer (in
# processing, no provider id, the create's outcome unknown), extra SET
# clauses applied too, and orphaned.
lose_create() {
	local prompt=$1 more=
	shift
	[ $# -eq 0 ] || more=", $*"
	sql "UPDATE app.generation_jobs SET status = 'processing',
	    artifact_id = NULL, provider_job_id = NULL, submit_unknown = true$more
	    WHERE request->>'prompt' = '$prompt'" >/dev/null
	orphan "$prompt"
}

# The fake's creates for a prompt.
creates() {
	stat ".creates_by_prompt[\"$1\"] // 0"
}

@test "--help, --version, bad usage, no database" {
	run -0 mi-recover --help
	assert_line --index 0 --partial "usage: mi-recover"
	run -0 mi-recover --version
	assert_output "mi-recover 0.1.0"
	run -64 --separate-stderr mi-recover --bogus
	[[ $stderr == *"mi-recover: unknown option '--bogus'"* ]]
	run -64 --separate-stderr mi-recover --once --watch
	[[ $stderr == *"exclude each other"* ]]
	run -64 --separate-stderr mi-recover -f 0
	run -64 --separate-stderr mi-recover extra
	DATABASE_URL= run -78 --separate-stderr mi-recover --once
	DATABASE_URL="postgresql://nobody@127.0.0.1:1/none" \
	    run -69 --separate-stderr mi-recover --once
}

@test "nothing to recover: exit 0, no output" {
	run -0 --separate-stderr mi-recover --once
	assert_output ''
	[[ $stderr == *"took 0 jobs over"* ]]
}

@test "a queued job is submitted, polled, fetched and stored" {
	local id
	run -0 --separate-stderr mi-submit --no-wait <<<"$(req meshy model_3d 'q1' '{"refine":false}')"
	jqok '.status == "processing"' "$output"
	# Queued by hand: what mi-submit --no-wait leaves when no slot is free.
	id=$(jq -r .id <<<"$output")
	sql "UPDATE app.generation_jobs SET status = 'pending',
	    provider_job_id = NULL, submit_count = 0, lease_owner = NULL,
	    lease_expires_at = NULL WHERE id = '$id'"
	fake_reset
	run -0 --separate-stderr mi-recover --once
	[ "${#lines[@]}" -eq 1 ]
	jqok ".type == \"model_3d\" and .metadata.job_id == \"$id\"" "$output"
	[ -f "$(stored_path "$output")" ]
	run -0 sql "SELECT status || ' ' || (artifact_id IS NOT NULL) || ' ' ||
	    (lease_owner IS NULL) FROM app.generation_jobs WHERE id = '$id'"
	assert_output 'completed true true'
	[ "$(creates q1)" -eq 1 ]
	# A queued job had no owner: nothing was taken over.
	run -0 sql "SELECT jsonb_array_length(recovery) FROM app.generation_jobs
	    WHERE id = '$id'"
	assert_output 0
}

@test "a processing job whose owner died is polled where it is, not created again" {
	run -0 --separate-stderr mi-submit <<<"$(req meshy model_3d 'p1 [slow:600]' '{"refine":false}')"
	orphan 'p1 [slow:600]'
	run -0 --separate-stderr mi-recover --once
	jqok '.type == "model_3d"' "$output"
	[ "$(creates 'p1 [slow:600]')" -eq 1 ]
	run -0 job_sql "recovery->0->>'event' || ' ' || (recovery->0->>'from') ||
	    ' ' || (recovery->0->>'status')" 'p1 [slow:600]'
	assert_output 'taken over mi-poll@gone:1:dead processing'
}

@test "a poll's step to poll again at once is not written; a worker killed there leaves the step to the takeover" {
	local p='rh [resulthang:20000]' w t0
	run -0 --separate-stderr mi-submit <<<"$(req fal image "$p")"
	mi-poll <<<"$output" >/dev/null 2>&1 &
	w=$!
	# mi-poll read fal's status (done) and waits for the result document.
	t0=$(date +%s%3N)
	until [ "$(stat ".results_by_prompt[\"$p\"] // 0")" = 1 ]; do
		sleep 0.05
		[ $(($(date +%s%3N) - t0)) -lt $((10000 * MI_TEST_SLOW)) ]
	done
	run -0 job_sql "status || ' ' || (provider_state ? 'phase')::text ||
	    ' ' || lease_owner" "$p"
	[[ $output == "processing false mi-poll@"* ]]
	kill -9 $w
	orphan "$p"
	# The takeover polls the status again, then reads the result.
	run -0 --separate-stderr mi-recover --once
	jqok '.type == "image"' "$output"
	[ "$(creates "$p")" -eq 1 ]
	[ "$(stat ".results_by_prompt[\"$p\"]")" -eq 2 ]
	run -0 job_sql "status || ' ' || (provider_state->>'phase')" "$p"
	assert_output 'completed result'
}

@test "a follow-up create recorded but never sent is sent by the takeover, once; the preview is not taken for the refine" {
	local p='r1 [slow:100]' pid i
	run -0 --separate-stderr mi-submit <<<"$(req meshy model_3d "$p" '{"refine":true}')"
	pid=$(jq -r .provider_job_id <<<"$output")
	for i in $(seq 300); do
		curl -sS "$FAKE_URL/_fake/jobs" |
		    jq -e --arg id "$pid" 'any(.[]; .id == $id and .done)' >/dev/null && break
		sleep 0.1
	done
	# What an owner killed between the preview's success and the refine
	# leaves: the refine recorded with the state that asked for it, and
	# not marked as sent.
	sql "UPDATE app.generation_jobs SET provider_state = provider_state
	    || jsonb_build_object('stage', 'refine', 'preview_task_id', '$pid',
	       'followup', jsonb_build_object('method', 'POST',
	         'path', '/openapi/v2/text-to-3d', 'json', jsonb_build_object(
	         'mode', 'refine', 'preview_task_id', '$pid', 'enable_pbr', true,
	         'ai_model', 'latest', 'texture_prompt', '$p')))
	    WHERE request->>'prompt' = '$p'"
	orphan "$p"
	run -0 --separate-stderr mi-recover --once
	jqok '.type == "model_3d"' "$output"
	# The preview and the refine, each once; the result is the refine's.
	[ "$(creates "$p")" -eq 2 ]
	run -0 job_sql "provider_job_id <> '$pid' AND provider_state->'followup' = 'null'
	    AND submit_count = 2 AND NOT submit_unknown" "$p"
	assert_output t
	run -0 curl -sS "$FAKE_URL/_fake/jobs"
	jqok '[.[] | select(.prompt == "r1 [slow:100]") | .kind] | sort == ["text-to-3d-preview", "text-to-3d-refine"]' "$output"
}

@test "a completed job not yet stored is fetched and stored; a synchronous result is taken from the spool, which is then cleaned" {
	local a b
	run -0 --separate-stderr bash -c 'mi-submit | mi-poll' <<<"$(req fal image 'c1')"
	a=$(jq -r .id <<<"$output")
	run -0 --separate-stderr mi-submit <<<"$(req elevenlabs-sfx audio_sfx 'c2' '{"duration_sec":1}')"
	b=$(jq -r .id <<<"$output")
	jqok '.status == "completed" and (.result_uri | startswith("file://"))' "$output"
	orphan c1
	orphan c2
	# A stray spool file of a job already stored, and a partial one of
	# a job that is gone, are removed; the result still to store stays.
	touch "$ASSET_STORAGE_DIR/.spool/$a.raw"
	run -0 --separate-stderr mi-recover --once
	[ "${#lines[@]}" -eq 2 ]
	jqok -s "map(.metadata.job_id) | sort == ([\"$a\", \"$b\"] | sort)" "$output"
	run -0 sql "SELECT count(*) FROM app.generation_jobs
	    WHERE id IN ('$a', '$b') AND artifact_id IS NOT NULL"
	assert_output 2
	run -0 find "$ASSET_STORAGE_DIR/.spool" -type f
	assert_output ''
}

@test "a temporary file a killed writer left in the store is removed after an hour" {
	mkdir -p "$ASSET_STORAGE_DIR/org_a/.objects"
	touch -d '2 hours ago' "$ASSET_STORAGE_DIR/org_a/.objects/.tmp.old123"
	touch "$ASSET_STORAGE_DIR/org_a/.objects/.tmp.new456"
	run -0 --separate-stderr mi-recover --once
	[ ! -e "$ASSET_STORAGE_DIR/org_a/.objects/.tmp.old123" ]
	[ -e "$ASSET_STORAGE_DIR/org_a/.objects/.tmp.new456" ]
	rm "$ASSET_STORAGE_DIR/org_a/.objects/.tmp.new456"
}

@test "a job leased by a live worker is left alone" {
	run -0 --separate-stderr mi-submit <<<"$(req meshy model_3d 'l1 [slow:300]' '{"refine":false}')"
	sql "UPDATE app.generation_jobs SET lease_owner = 'mi-poll@alive:2:live',
	    lease_expires_at = now() + interval '1 hour'
	    WHERE request->>'prompt' = 'l1 [slow:300]'"
	run -0 --separate-stderr mi-recover --once
	assert_output ''
	run -0 job_sql "status || ' ' || lease_owner" 'l1 [slow:300]'
	assert_output 'processing mi-poll@alive:2:live'
	sql "UPDATE app.generation_jobs SET status = 'failed',
	    lease_owner = NULL WHERE request->>'prompt' = 'l1 [slow:300]'"
}

@test "a provider that no longer knows the job fails it with a clear error" {
	run -0 --separate-stderr mi-submit <<<"$(req meshy model_3d 'f1' '{"refine":false}')"
	sql "UPDATE app.generation_jobs SET provider_job_id = '$(uuid)'
	    WHERE request->>'prompt' = 'f1'"
	orphan f1
	run -0 --separate-stderr mi-recover --once
	jqok '.status == "failed" and .error.code == "PROVIDER_ERROR" and
	    (.error.message | test("404.*Task not found"))' "$output"
}

@test "a job past its timeout at recovery is timed out, not polled again" {
	local polls
	run -0 --separate-stderr mi-submit <<<"$(req meshy model_3d 't1 [never]' '{"refine":false}')"
	sql "UPDATE app.generation_jobs SET started_at = now() - interval '1 hour'
	    WHERE request->>'prompt' = 't1 [never]'"
	orphan 't1 [never]'
	polls=$(grep -c '"event":"poll"' "$FAKE_LOG")
	run -0 --separate-stderr mi-recover --once
	jqok '.status == "timed_out" and .error.code == "TIMEOUT"' "$output"
	[ "$(grep -c '"event":"poll"' "$FAKE_LOG")" -eq "$polls" ]
}

@test "a lost create past its timeout is timed out, not sent again" {
	run -0 --separate-stderr mi-submit <<<"$(req fal image 't2')"
	sql "UPDATE app.generation_jobs SET provider_job_id = NULL,
	    submit_unknown = true, started_at = now() - interval '1 hour'
	    WHERE request->>'prompt' = 't2'"
	orphan t2
	run -0 --separate-stderr mi-recover --once
	jqok '.status == "timed_out" and (.error.message | test("unknown"))' "$output"
	[ "$(creates t2)" -eq 1 ]
	run -0 job_sql "recovery->-1->>'event'" t2
	assert_output 'timed out'
}

@test "a lost create at a provider that cannot be asked is sent again once, and a second loss fails the job" {
	run -0 --separate-stderr mi-submit <<<"$(req elevenlabs-sfx audio_sfx 'u1')"
	# The answer is lost with the process: nothing in the spool either.
	rm -f "$ASSET_STORAGE_DIR/.spool/$(jq -r .id <<<"$output")".*
	# The create's answer never came: ElevenLabs keeps no list of
	# sound generations.
	lose_create u1
	run -0 --separate-stderr mi-recover --once
	jqok '.type == "audio_sfx"' "$output"
	[ "$(creates u1)" -eq 2 ]
	run -0 job_sql "submit_count || ' ' || (recovery @> '[{\"event\": \"create re-sent\"}]')" u1
	assert_output '2 true'
	# Lost again after the second create: not sent a third time.
	lose_create u1
	run -0 --separate-stderr mi-recover --once
	jqok '.status == "failed" and (.error.message | test("not sent a third time"))' "$output"
	[ "$(creates u1)" -eq 2 ]
}

@test "an operator's MI_<ID>_LOST_CREATE=hold keeps a lost create from being sent again" {
	run -0 --separate-stderr mi-submit <<<"$(req elevenlabs-sfx audio_sfx 'u3')"
	# The answer is lost with the process: nothing in the spool either.
	rm -f "$ASSET_STORAGE_DIR/.spool/$(jq -r .id <<<"$output")".*
	lose_create u3
	# A setting that is neither is named, and the job is left alone.
	MI_ELEVENLABS_SFX_LOST_CREATE=sometimes run -75 --separate-stderr mi-recover --once
	[[ "$stderr" == *"MI_elevenlabs-sfx_LOST_CREATE: 'sometimes' is neither resend nor hold"* ]]
	[ "$(creates u3)" -eq 1 ]
	MI_ELEVENLABS_SFX_LOST_CREATE=hold run -0 --separate-stderr mi-recover --once
	jqok '.status == "failed" and (.error.message | test("held for an operator"))' "$output"
	[ "$(creates u3)" -eq 1 ]
	run -0 job_sql "recovery::text" u3
	assert_output --partial "hold by the operator's setting, where the definition says resend"
}

@test "a lost fal submit is found in fal's request list by model and input, and polled, not sent again" {
	run -0 --separate-stderr mi-submit <<<"$(req fal image 'u2' '{"width": 640}')"
	run -0 job_sql "provider_job_id" u2
	rid=$output
	[ -n "$rid" ]
	lose_create u2 "provider_state = '{}'"
	run -0 --separate-stderr mi-recover --once
	jqok '.type == "image"' "$output"
	[ "$(creates u2)" -eq 1 ]
	run -0 job_sql "provider_job_id || ' ' || submit_count || ' ' || (recovery @> '[{\"event\": \"create found\"}]')" u2
	assert_output "$rid 1 true"
	# A list entry of another input is not taken: the job whose sent
	# input differs (here its width) is sent again, with the reason.
	lose_create u2 "provider_state = '{}', recovery = '[]'," \
	    "request = jsonb_set(request, '{params,width}', '700')"
	run -0 --separate-stderr mi-recover --once
	jqok '.type == "image"' "$output"
	[ "$(creates u2)" -eq 2 ]
	run -0 job_sql "recovery::text" u2
	assert_output --partial "fal: the request list did not settle the create"
}

@test "a lost Blockade skybox create is found in its request history and driven on, not sent again" {
	run -0 --separate-stderr mi-submit <<<"$(req blockade-skybox environment_map 'u4')"
	run -0 job_sql "provider_job_id" u4
	rid=$output
	[ -n "$rid" ]
	lose_create u4 "provider_state = '{}'"
	run -0 --separate-stderr mi-recover --once
	jqok '.type == "environment_map"' "$output"
	# The skybox and its export, no second skybox: the task found is
	# the one the first create made.
	[ "$(creates u4)" -eq 2 ]
	run -0 job_sql "(recovery @> '[{\"event\": \"create found\", \"provider_job_id\": \"$rid\"}]')" u4
	assert_output "t"
}

@test "two runs at once share the work: each job is done once" {
	local i in=
	for i in $(seq 1 12); do
		in+=$(TENANT=tw req fal image "w$i [slow:200]")$'\n'
	done
	sql "INSERT INTO app.tenant_limits VALUES ('tw', '*', 12)"
	run -0 --separate-stderr mi-submit --no-wait <<<"$in"
	sql "UPDATE app.generation_jobs SET status = 'pending',
	    provider_job_id = NULL, submit_count = 0, lease_owner = NULL,
	    lease_expires_at = NULL WHERE tenant_id = 'tw'"
	fake_reset
	local a b
	mi-recover --once >"$BATS_TEST_TMPDIR/a" 2>/dev/null &
	a=$!
	mi-recover --once >"$BATS_TEST_TMPDIR/b" 2>/dev/null &
	b=$!
	wait $a
	wait $b
	run -0 cat "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
	[ "${#lines[@]}" -eq 12 ]
	jqok -s 'map(.metadata.job_id) | unique | length == 12' "$output"
	run -0 stat '.creates_by_prompt | [.[]] | (length == 12 and all(. == 1))'
	assert_output true
}

@test "--watch takes a killed worker's jobs over within a lease, and gives its own up at once on SIGTERM" {
	local w p t0 t1 owner
	mi-recover --watch >"$BATS_TEST_TMPDIR/watch" 2>"$BATS_TEST_TMPDIR/watch.err" &
	w=$!
	mi-submit <<<"$(req meshy model_3d 'k1 [never]' '{"refine":false}')" \
	    >"$BATS_TEST_TMPDIR/k1" 2>/dev/null
	mi-poll <"$BATS_TEST_TMPDIR/k1" >/dev/null 2>&1 &
	p=$!
	t0=$(date +%s%3N)
	until [[ $(job_sql lease_owner 'k1 [never]') == mi-poll@* ]]; do
		sleep 0.05
		[ $(($(date +%s%3N) - t0)) -lt 30000 ]
	done
	run -0 job_sql "lease_owner" 'k1 [never]'
	[[ $output == mi-poll@* ]]
	kill -9 $p
	t0=$(date +%s%3N)
	until [[ $(job_sql lease_owner 'k1 [never]') == mi-recover@* ]]; do
		sleep 0.05
		[ $(($(date +%s%3N) - t0)) -lt $((5000 * MI_TEST_SLOW)) ]
	done
	t1=$(date +%s%3N)
	echo "# takeover after kill -9: $((t1 - t0)) ms (lease ${MI_LEASE_MS} ms)" >&3
	[ $((t1 - t0)) -le $((2 * MI_LEASE_MS * MI_TEST_SLOW)) ]
	run -0 job_sql "recovery->-1->>'event'" 'k1 [never]'
	assert_output 'taken over'
	# SIGTERM: the lease is given up at once, the exit is clean.
	kill -TERM $w
	wait $w
	run -0 job_sql "coalesce(lease_owner, 'none') || ' ' || status" 'k1 [never]'
	assert_output 'none processing'
	# And the next worker takes it at once (no lease to wait for).
	owner=$(sql "SELECT owner FROM app.recovery_workers")
	[ -z "$owner" ]
	t0=$(date +%s%3N)
	mi-recover --watch >/dev/null 2>&1 &
	w=$!
	until [[ $(job_sql lease_owner 'k1 [never]') == mi-recover@* ]]; do
		sleep 0.05
		[ $(($(date +%s%3N) - t0)) -lt $((5000 * MI_TEST_SLOW)) ]
	done
	t1=$(date +%s%3N)
	kill -TERM $w
	wait $w
	[ $((t1 - t0)) -lt $((1000 * MI_TEST_SLOW)) ]
	sql "UPDATE app.generation_jobs SET status = 'failed', lease_owner = NULL
	    WHERE request->>'prompt' = 'k1 [never]'"
}

@test "while a worker runs, a job whose owner died keeps its slot until taken over" {
	sql "INSERT INTO app.tenant_limits VALUES ('th', '*', 1)"
	run -0 --separate-stderr mi-submit <<<"$(TENANT=th req meshy model_3d 'h1 [never]' '{"refine":false}')"
	orphan 'h1 [never]'
	# No worker: the lapsed lease frees the slot.
	run -0 --separate-stderr mi-submit --no-wait <<<"$(TENANT=th req meshy model_3d 'h2' '{"refine":false}')"
	jqok '.status == "processing"' "$output"
	sql "UPDATE app.generation_jobs SET status = 'failed', lease_owner = NULL
	    WHERE request->>'prompt' = 'h2'"
	# A live worker: the slot stays with the orphan until it is taken
	# over, however long ago its lease lapsed (here ten minutes, twenty
	# of the worker's leases); the newcomer waits.
	sql "INSERT INTO app.recovery_workers (owner, lease_ms, expires_at)
	    VALUES ('mi-recover@x:3:alive', 30000, now() + interval '1 minute')"
	sql "UPDATE app.generation_jobs SET
	    lease_expires_at = now() - interval '10 minutes',
	    updated_at = now() - interval '10 minutes'
	    WHERE request->>'prompt' = 'h1 [never]'"
	run -0 --separate-stderr mi-submit --no-wait <<<"$(TENANT=th req meshy model_3d 'h3' '{"refine":false}')"
	jqok '.status == "pending"' "$output"
	# A worker whose heartbeat is late (its row lapsed a second ago, less
	# than one of its leases) still runs: the newcomer waits.
	sql "UPDATE app.generation_jobs SET status = 'failed', lease_owner = NULL
	    WHERE request->>'prompt' = 'h3'"
	sql "UPDATE app.recovery_workers SET expires_at = now() - interval '1 second'"
	run -0 --separate-stderr mi-submit --no-wait <<<"$(TENANT=th req meshy model_3d 'h4' '{"refine":false}')"
	jqok '.status == "pending"' "$output"
	# Its row lapsed 50 s ago, longer than its lease but less than a
	# minute: a worker being started again, or a cron run due; it counts.
	sql "UPDATE app.generation_jobs SET status = 'failed', lease_owner = NULL
	    WHERE request->>'prompt' = 'h4'"
	sql "UPDATE app.recovery_workers SET expires_at = now() - interval '50 seconds'"
	run -0 --separate-stderr mi-submit --no-wait <<<"$(TENANT=th req meshy model_3d 'h4b' '{"refine":false}')"
	jqok '.status == "pending"' "$output"
	# Not seen for longer than a minute and its lease: gone, the slot is
	# free.
	sql "UPDATE app.generation_jobs SET status = 'failed', lease_owner = NULL
	    WHERE request->>'prompt' = 'h4b'"
	sql "UPDATE app.recovery_workers SET expires_at = now() - interval '61 seconds'"
	run -0 --separate-stderr mi-submit --no-wait <<<"$(TENANT=th req meshy model_3d 'h5' '{"refine":false}')"
	jqok '.status == "processing"' "$output"
	sql "DELETE FROM app.recovery_workers"
	sql "UPDATE app.generation_jobs SET status = 'failed', lease_owner = NULL
	    WHERE tenant_id = 'th'"
}
