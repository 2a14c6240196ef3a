#!/usr/bin/env bats
# mi-submit, mi-poll, mi-fetch: options, exit codes, records, validation
# before anything is spent, leases and hand-over between the programs,
# the local provider end to end.

load test_helper
load jobs_helper

setup_file() {
	jobs_setup_file
}

teardown_file() {
	fake_stop
}

@test "--help, --version and bad usage of the three programs" {
	local p
	for p in mi-submit mi-poll mi-fetch; do
		run -0 $p --help
		assert_line --index 0 --partial "usage: $p"
		run -0 $p --version
		assert_output "$p 0.1.0"
		run -64 --separate-stderr $p --bogus
		[[ $stderr == *"$p: unknown option '--bogus'"* ]]
		[ -z "$output" ]
		run -64 --separate-stderr $p extra
		[[ $stderr == *"unexpected argument 'extra'"* ]]
	done
}

@test "the local provider makes every media type, end to end" {
	local in
	in=$(req local image "a red wheel" '{"width":512,"height":512}')
	in+=$'\n'$(req local texture "moss" '{"width":512,"height":512}')
	in+=$'\n'$(req local audio_sfx "a click" '{"sfx_type":"click","duration_sec":0.5}')
	in+=$'\n'$(req local audio_bgm "calm" '{"genre":"ambient","duration_sec":30}')
	in+=$'\n'$(req local model_3d "a coin" '{"max_triangles":2000}')
	in+=$'\n'$(req local environment_map "a sky" '{"width":256}')
	in+=$'\n'$(req local video "a spinning wheel" '{"duration_sec":4,"resolution":"480p"}')
	run -0 pipeline <<<"$in"
	[ "${#lines[@]}" -eq 7 ]
	jqok -s 'map(.uri | capture("/(?<t>[a-z_0-9]+)/[0-9a-f]{64}\\.(?<e>[a-z0-9]+)$")
	    | "\(.t).\(.e)") | sort == ["audio_bgm.wav", "audio_sfx.wav",
	    "environment_map.hdr", "image.png", "model_3d.glb", "texture.png",
	    "video.mp4"]' "$output"
	jqok -s 'all(.metadata.provider_id == "local" and
	    .metadata.cost_usd == 0 and (.metadata.job_id | length) == 36)' \
	    "$output"
	# Each job is completed and linked to its artifact; no spool file
	# is left behind.
	run -0 sql "SELECT count(*) FROM app.generation_jobs
	    WHERE provider_id = 'local' AND status = 'completed'
	      AND artifact_id IS NOT NULL AND lease_owner IS NULL"
	assert_output 7
	run -0 find "$ASSET_STORAGE_DIR/.spool" -type f
	assert_output ''
}

@test "a result in the spool is stored as it is: the stored file is the spool file's own inode, readable by all, and the spool keeps no name for it" {
	local rec uri ino art path
	req local image "kept as it is" '{"width":512,"height":512}' |
	    mi-submit 2>"$BATS_TEST_TMPDIR/submit.err" |
	    mi-poll -q >"$BATS_TEST_TMPDIR/rec" 2>"$BATS_TEST_TMPDIR/poll.err" ||
	    { cat "$BATS_TEST_TMPDIR"/*.err; false; }
	rec=$(cat "$BATS_TEST_TMPDIR/rec")
	uri=$(jq -r .result_uri <<<"$rec")
	[[ $uri == file://"$ASSET_STORAGE_DIR"/.spool/* ]]
	ino=$(command stat -c %i "${uri#file://}")
	art=$(mi-fetch <<<"$rec" 2>/dev/null)
	path=$(stored_path "$art")
	[ -f "$path" ]
	[ "$(command stat -c %i "$path")" = "$ino" ]
	[ "$(command stat -c %a "$path")" = 644 ]
	[ ! -e "${uri#file://}" ]
	# The bytes are the ones hashed.
	[ "$(sha256sum <"$path" | cut -c1-64)" = "$(jq -r .content_hash <<<"$art")" ]
}

@test "results stored together share their directories' fsyncs and one transaction for their rows" {
	local i root run
	root=$(realpath "$ASSET_STORAGE_DIR")
	run=$(cat /proc/sys/kernel/random/uuid)
	cc -shared -fPIC -o "$BATS_TEST_TMPDIR/failwrite.so" \
	    "$BATS_TEST_DIRNAME/lib/failwrite.c" -ldl
	for i in 1 2 3 4 5 6; do
		RUN_ID=$run req local image "together $i" '{"width":512,"height":512}'
	done | mi-submit 2>"$BATS_TEST_TMPDIR/submit.err" |
	    mi-poll -q >"$BATS_TEST_TMPDIR/recs" 2>"$BATS_TEST_TMPDIR/poll.err" ||
	    { cat "$BATS_TEST_TMPDIR"/*.err; false; }
	[ "$(wc -l <"$BATS_TEST_TMPDIR/recs")" -eq 6 ]
	MI_FSYNC_LOG="$BATS_TEST_TMPDIR/fsyncs" \
	    LD_PRELOAD="$BATS_TEST_TMPDIR/failwrite.so" \
	    run -0 --separate-stderr mi-fetch -j 8 <"$BATS_TEST_TMPDIR/recs"
	[ "${#lines[@]}" -eq 6 ]
	jqok -s 'all(.content_hash | length == 64)' "$output"
	# Six files linked into one run directory: it was fsynced once for
	# them all (twice if they came in two turns), not once a file ...
	run -0 grep -cx "$root/org_a/$run/image" "$BATS_TEST_TMPDIR/fsyncs"
	[ "$output" -le 2 ]
	run -0 grep -cx "$root/org_a/.objects" "$BATS_TEST_TMPDIR/fsyncs"
	[ "$output" -le 2 ]
	# ... and their rows were written by as many transactions (now() is
	# the transaction's start).
	run -0 sql "SELECT count(DISTINCT created_at) FROM app.artifacts
	    WHERE run_id = '$run'"
	[ "$output" -le 2 ]
	run -0 sql "SELECT count(*) FROM app.generation_jobs j
	    JOIN app.artifacts a ON a.id = j.artifact_id WHERE j.run_id = '$run'"
	assert_output 6
}

@test "a directory fsync that fails for results stored together fails each of them, writes none of their rows, and a run again stores them" {
	local i run
	run=$(cat /proc/sys/kernel/random/uuid)
	cc -shared -fPIC -o "$BATS_TEST_TMPDIR/failwrite.so" \
	    "$BATS_TEST_DIRNAME/lib/failwrite.c" -ldl
	for i in 1 2 3; do
		RUN_ID=$run req local image "unsynced $i" '{"width":512,"height":512}'
	done | mi-submit 2>"$BATS_TEST_TMPDIR/submit.err" |
	    mi-poll -q >"$BATS_TEST_TMPDIR/recs" 2>"$BATS_TEST_TMPDIR/poll.err" ||
	    { cat "$BATS_TEST_TMPDIR"/*.err; false; }
	MI_FAULT_DIR_COUNT=1000 MI_FAULT_ERRNO=5 \
	    LD_PRELOAD="$BATS_TEST_TMPDIR/failwrite.so" \
	    run -1 --separate-stderr mi-fetch -j 8 <"$BATS_TEST_TMPDIR/recs"
	[ "${#lines[@]}" -eq 3 ]
	jqok -s 'all(.error.code == "STORAGE_ERROR" and .error.retryable and
	    (.error.message | test("fsync directory .*Input/output error")))' "$output"
	run -0 sql "SELECT count(*) FROM app.artifacts WHERE run_id = '$run'"
	assert_output 0
	# The jobs were released, not failed: the same records store them.
	run -0 sql "SELECT count(*) FROM app.generation_jobs WHERE run_id = '$run'
	    AND status = 'completed' AND artifact_id IS NULL AND lease_owner IS NULL"
	assert_output 3
	run -0 --separate-stderr mi-fetch -j 8 <"$BATS_TEST_TMPDIR/recs"
	jqok -s 'length == 3 and all(.content_hash | length == 64)' "$output"
}

@test "requests read together are admitted in one transaction (MI_ADMIT_BATCH=1: each in its own), in arrival order" {
	local b n run pid i
	for b in 64 1; do
		run=$(uuid)
		for i in 1 2 3 4 5 6; do
			RUN_ID=$run req elevenlabs-sfx audio_sfx "batch $b $i [slow:4000]" '{"duration_sec":1}'
		done >"$BATS_TEST_TMPDIR/in.$b"
		# One slot: the first job holds it, the other five wait, their
		# rows untouched since they were written.
		MI_ADMIT_BATCH=$b MI_ELEVENLABS_SFX_CONCURRENCY=1 \
		    mi-submit -v <"$BATS_TEST_TMPDIR/in.$b" >/dev/null \
		    2>"$BATS_TEST_TMPDIR/err.$b" &
		pid=$!
		for i in $(seq 50); do
			n=$(sql "SELECT count(*) FROM app.generation_jobs
			    WHERE run_id = '$run' AND status = 'pending'")
			[ "$n" -eq 5 ] && break
			sleep 0.1
		done
		[ "$n" -eq 5 ]
		# A lease runs from now(), the start of the transaction that
		# wrote the row (each request's savepoint has an xmin of its own).
		n=$(sql "SELECT count(DISTINCT lease_expires_at) FROM app.generation_jobs
		    WHERE run_id = '$run' AND status = 'pending'")
		if [ "$b" -eq 64 ]; then
			[ "$n" -eq 1 ] || { cat "$BATS_TEST_TMPDIR/err.$b"; false; }
		else
			[ "$n" -eq 5 ]
		fi
		# The first request has the slot; the rest wait in their order.
		run -0 sql "SELECT string_agg(request->>'prompt', ',' ORDER BY created_at, id)
		    FROM app.generation_jobs WHERE run_id = '$run'"
		assert_output "$(for i in 1 2 3 4 5 6; do printf '%s' "${i:+,}batch $b $i [slow:4000]"; done | cut -c2-)"
		run -0 sql "SELECT request->>'prompt' FROM app.generation_jobs
		    WHERE run_id = '$run' AND status = 'processing'"
		assert_output "batch $b 1 [slow:4000]"
		kill -TERM "$pid"
		wait "$pid" || true
	done
}

@test "a batch of requests lost to a deadlock is undone and admitted again one by one: one job a step, every record out" {
	local run i d=$BATS_TEST_TMPDIR
	run=$(uuid)
	for i in 1 2; do
		RUN_ID=$run req elevenlabs-sfx audio_sfx "deadlock sfx $i" '{"duration_sec":1}'
		RUN_ID=$run req fal image "deadlock fal $i"
	done >"$d/in"
	# Another session holds the fal group's lock, waits until mi-submit
	# (holding the sound effects' lock, the first group in its order)
	# waits for it, then asks for the sound effects' lock: a deadlock,
	# which PostgreSQL breaks in mi-submit's session, the first to wait.
	$PSQL -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" >"$d/locker.out" 2>&1 <<-'SQL' &
		BEGIN;
		SELECT pg_advisory_xact_lock(hashtextextended('org_a/fal', 0));
		DO $$ BEGIN
		  WHILE NOT EXISTS (SELECT 1 FROM pg_locks
		      WHERE locktype = 'advisory' AND NOT granted) LOOP
		    PERFORM pg_sleep(0.02);
		  END LOOP;
		END $$;
		SELECT pg_sleep(0.2);
		SELECT pg_advisory_xact_lock(hashtextextended('org_a/elevenlabs-sfx', 0));
		SELECT pg_sleep(0.5);
		COMMIT;
	SQL
	locker=$!
	run -0 --separate-stderr mi-submit -v <"$d/in"
	wait "$locker"
	[ "${#lines[@]}" -eq 4 ]
	jqok -s 'all(has("error") | not)' "$output"
	[[ $stderr == *"4 requests admitted together were undone"* ]]
	[[ $stderr == *"deadlock"* ]]
	# Nothing of the lost batch stayed, nothing was made twice.
	run -0 sql "SELECT count(*), count(DISTINCT run_step_id)
	    FROM app.generation_jobs WHERE run_id = '$run'"
	assert_output "4|4"
	run -0 sql "SELECT count(*) FROM app.run_steps WHERE run_id = '$run'"
	assert_output 4
}

@test "a batch's steps are made, locked and read together and its jobs written in one statement, in the order they came; one step twice goes a savepoint at a time" {
	local run i d=$BATS_TEST_TMPDIR
	run=$(uuid)
	for i in 1 2 3; do
		RUN_ID=$run req elevenlabs-sfx audio_sfx "together sfx $i" '{"duration_sec":1}' "{\"step_id\":\"sfx$i\"}"
		RUN_ID=$run req fal image "together fal $i" '{}' "{\"step_id\":\"fal$i\"}"
	done >"$d/in"
	run -0 --separate-stderr mi-submit -v <"$d/in"
	[ "${#lines[@]}" -eq 6 ]
	jqok -s 'all(has("error") | not)' "$output"
	[[ $stderr == *"6 requests admitted together: their steps in 3 statements, their 6 jobs in one"* ]]
	[[ $stderr != *"savepoint of its own"* ]]
	# First come, first served within each group: created_at follows
	# the input even though the rows were written in one statement.
	run -0 sql "SELECT string_agg(request->>'prompt', ',' ORDER BY created_at)
	    FROM app.generation_jobs WHERE run_id = '$run' AND provider_id = 'fal'"
	assert_output "together fal 1,together fal 2,together fal 3"
	run -0 sql "SELECT count(*), count(DISTINCT run_step_id),
	    count(*) FILTER (WHERE s.status = 'running')
	    FROM app.generation_jobs j JOIN app.run_steps s ON s.id = j.run_step_id
	    WHERE j.run_id = '$run'"
	assert_output "6|6|6"
	# The same step twice in one batch, and a step of another run by its
	# run_step_id: each request as it would be alone.
	local other
	other=$(sql "SELECT run_step_id FROM app.generation_jobs
	    WHERE run_id = '$run' AND request->>'prompt' = 'together sfx 1'")
	{
		RUN_ID=$run req elevenlabs-sfx audio_sfx "twice" '{"duration_sec":1}' '{"step_id":"twice"}'
		RUN_ID=$run req elevenlabs-sfx audio_sfx "twice" '{"duration_sec":1}' '{"step_id":"twice"}'
		RUN_ID=$run req elevenlabs-sfx audio_sfx "once" '{"duration_sec":1}' '{"step_id":"once"}'
	} >"$d/in2"
	run -0 --separate-stderr mi-submit -v <"$d/in2"
	[ "${#lines[@]}" -eq 3 ]
	[[ $stderr == *"savepoint of its own: two of them are one step"* ]]
	run -0 sql "SELECT count(*) FROM app.generation_jobs
	    WHERE run_id = '$run' AND request->>'prompt' = 'twice'"
	assert_output 1
	RUN_ID=$(uuid) req elevenlabs-sfx audio_sfx "elsewhere" '{"duration_sec":1}' "{\"run_step_id\":\"$other\"}" >"$d/in3"
	RUN_ID=$run req elevenlabs-sfx audio_sfx "beside" '{"duration_sec":1}' '{"step_id":"beside"}' >>"$d/in3"
	# exit 1: a request failed (mi(7))
	run -1 --separate-stderr mi-submit -v <"$d/in3"
	[ "${#lines[@]}" -eq 2 ]
	[[ $stderr == *"savepoint of its own: run_step_id $other is a step of run $run"* ]]
	jqok -s '.[0].error.code == "VALIDATION_ERROR"' "$output"
	jqok -s '.[1] | has("error") | not' "$output"
	run -0 sql "SELECT count(*) FROM app.runs WHERE id = '$(jq -r .run_id "$d/in3" | head -1)'"
	assert_output 0
}

@test "mi-submit claims only what it can start soon: with one create at a time, the third job is claimed after the first's create came back" {
	local i
	for i in 1 2 3 4; do
		req elevenlabs-sfx audio_sfx "room $i [slow:400]" '{"duration_sec":1}'
	done >"$BATS_TEST_TMPDIR/room.in"
	MI_POLL_PARALLEL=1 MI_ELEVENLABS_SFX_CONCURRENCY=100 \
	    run -0 --separate-stderr mi-submit <"$BATS_TEST_TMPDIR/room.in"
	[ "${#lines[@]}" -eq 4 ]
	# A claimed job's deadline runs from its claim (started_at): claimed
	# all at once, the last would wait for every create before its own.
	run -0 sql "SELECT (SELECT started_at FROM app.generation_jobs
	      WHERE request->>'prompt' = 'room 3 [slow:400]') >=
	    (SELECT completed_at FROM app.generation_jobs
	      WHERE request->>'prompt' = 'room 1 [slow:400]')"
	assert_output t
}

@test "groups take turns at the runner's room: a tenant's sound effects are created between its images, not after the last one" {
	local i run d=$BATS_TEST_TMPDIR
	run=$(uuid)
	# A tenant of its own: no slot held by the jobs other tests left.
	export TENANT="org_turns_$(uuid | cut -c1-8)" MI_FAL_CONCURRENCY=100 \
	    MI_ELEVENLABS_SFX_CONCURRENCY=100
	for i in 1 2 3 4; do
		RUN_ID=$run req elevenlabs-sfx audio_sfx "turn sfx $i [slow:150]" '{"duration_sec":1}' "{\"step_id\":\"sfx$i\"}"
	done >"$d/in"
	for i in 1 2 3 4; do
		RUN_ID=$run req fal image "turn fal $i [slow:150]" '{}' "{\"step_id\":\"fal$i\"}"
	done >>"$d/in"
	MI_POLL_PARALLEL=1 run -0 --separate-stderr mi-submit <"$d/in"
	[ "${#lines[@]}" -eq 8 ]
	run -0 sql "SELECT count(*) FILTER (WHERE submit_count = 1)
	    FROM app.generation_jobs WHERE run_id = '$run'"
	assert_output 8
	# Neither group waits for the other's last job.
	run -0 sql "SELECT (SELECT min(started_at) FROM app.generation_jobs
	      WHERE run_id = '$run' AND provider_id = 'elevenlabs-sfx') <
	    (SELECT max(started_at) FROM app.generation_jobs
	      WHERE run_id = '$run' AND provider_id = 'fal'),
	    (SELECT min(started_at) FROM app.generation_jobs
	      WHERE run_id = '$run' AND provider_id = 'fal') <
	    (SELECT max(started_at) FROM app.generation_jobs
	      WHERE run_id = '$run' AND provider_id = 'elevenlabs-sfx')"
	assert_output "t|t"
}

@test "mi-poll goes on polling while the program after it reads nothing: its job is seen done when the provider is done, though the records before it wait" {
	local i t0
	req fal image "stalled reader fal [slow:1500]" >"$BATS_TEST_TMPDIR/stall.in"
	for i in $(seq 1 80); do
		req elevenlabs-sfx audio_sfx "stalled reader $i" '{"duration_sec":1}'
	done >>"$BATS_TEST_TMPDIR/stall.in"
	mi-submit <"$BATS_TEST_TMPDIR/stall.in" >"$BATS_TEST_TMPDIR/stall.jobs" 2>/dev/null
	# The fal job comes first, then 80 records (twice what a pipe holds)
	# that nothing reads for 6 s.
	t0=$(sql "SELECT now()")
	mi-poll -q <"$BATS_TEST_TMPDIR/stall.jobs" 2>"$BATS_TEST_TMPDIR/stall.err" |
	    { sleep 6; cat; } >"$BATS_TEST_TMPDIR/stall.out"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/stall.out")" -eq 81 ]
	# Done at the provider 1.5 s after its create: blocked on the pipe,
	# the worker saw it only once the reader woke (after 6 s).
	run -0 job_sql "status || ' ' ||
	    (completed_at < '$t0'::timestamptz + interval '4 s')" \
	    "stalled reader fal [slow:1500]"
	assert_output "completed true"
}

@test "mi-submit writes the job row before calling the provider, then processing with the provider's id" {
	run -0 --separate-stderr mi-submit <<<"$(req meshy model_3d 'a wheel' '{"refine":false}')"
	jqok '.status == "processing" and .provider_id == "meshy" and
	    (.provider_job_id | length) > 0 and .submit_count == 1 and
	    .submit_unknown == false and .cost_usd == 0.4 and
	    .cost_source == "estimate" and .poll_interval_ms == 50' "$output"
	[[ $stderr == *"meshy model_3d, estimated cost \$0.4000"* ]]
	run -0 --separate-stderr mi-poll <<<"$output"
	jqok '.status == "completed" and .progress == 100 and
	    .attempts >= 1 and (.result_uri | startswith("http")) and
	    (.result_expires_at | length) > 0 and .cost_source == "provider"' \
	    "$output"
}

@test "validation errors come before anything is spent: no row, no create" {
	local before in
	before=$(stat '.attempts_by_prompt | length')
	in=$(req nano-banana-video video "v1" '{"duration_sec":10}')
	in+=$'\n'$(req nano-banana-video video "v2" '{"resolution":"480p"}')
	in+=$'\n'$(req nano-banana-video video "v3" '{"aspect_ratio":"1:1"}')
	in+=$'\n'$(req meshy model_3d "m1" '{"max_triangles":60000}')
	in+=$'\n'$(req elevenlabs-sfx audio_sfx "s1" '{"duration_sec":31}')
	in+=$'\n'$(req suno audio_bgm "" '{"duration_sec":60}')
	in+=$'\n'$(req meshy video "m2")
	in+=$'\n'$(req no-such-provider image "x")
	in+=$'\n'$(jq -c 'del(.tenant_id)' <<<"$(req local image x)")
	in+=$'\n'$(jq -c '.run_id = "not-a-uuid"' <<<"$(req local image x)")
	run -1 --separate-stderr mi-submit <<<"$in"
	[ "${#lines[@]}" -eq 10 ]
	jqok -s 'all(.error.code == "VALIDATION_ERROR" and
	    .error.retryable == false)' "$output"
	run -0 jq -s -r '.[].error.message' <<<"$output"
	assert_line --index 0 --partial "duration_sec must be 4, 6 or 8"
	assert_line --index 1 --partial "resolution must be one of 720p, 1080p"
	assert_line --index 2 --partial "aspect_ratio must be one of 16:9, 9:16"
	assert_line --index 3 --partial "max_triangles must be a whole number from 100 to 50000"
	assert_line --index 4 --partial "duration_sec must be a number from 0.5 to 30"
	assert_line --index 5 --partial "a prompt is required"
	assert_line --index 6 --partial "provider 'meshy' does not make video"
	assert_line --index 7 --partial "unknown provider 'no-such-provider'"
	assert_line --index 8 --partial "missing key 'tenant_id'"
	assert_line --index 9 --partial "UUID"
	run -0 job_count v1
	assert_output 0
	[ "$(stat '.attempts_by_prompt | length')" = "$before" ]
}

@test "bad JSON and error records: reported or passed through, never dropped" {
	run -1 --separate-stderr mi-submit <<<'{"tenant_id":
{"error":{"code":"X","message":"m","retryable":false},"a":1}'
	[ "${#lines[@]}" -eq 2 ]
	jqok -s '.[0].error.code == "INVALID_JSON" and
	    .[1] == {"error":{"code":"X","message":"m","retryable":false},"a":1}' \
	    "$output"
	run -1 --separate-stderr mi-poll <<<'[1]
{"error":{"code":"X","message":"m","retryable":false}}'
	jqok -s '.[0].error.code == "VALIDATION_ERROR" and
	    .[1].error.code == "X"' "$output"
	[[ $stderr != *"X: m"* ]]
	run -1 --separate-stderr mi-fetch <<<'{"id":"x"}
{"error":{"code":"X","message":"m","retryable":false}}'
	jqok -s '.[0].error.code == "VALIDATION_ERROR" and
	    .[1].error.code == "X"' "$output"
}

@test "a missing key is a CONFIG_ERROR naming the variable, exit 78, no row" {
	MESHY_API_KEY= run -78 --separate-stderr mi-submit <<<"$(req meshy model_3d 'keyless')"
	jqok '.error.code == "CONFIG_ERROR" and
	    (.error.message | contains("MESHY_API_KEY is not set"))' "$output"
	run -0 job_count keyless
	assert_output 0
}

@test "a wrong key is a CONFIG_ERROR naming the variable, not the key" {
	MESHY_API_KEY=wrong-key-987 run -78 --separate-stderr \
	    mi-submit <<<"$(req meshy model_3d 'wrong key')"
	jqok '.status == "failed" and .error.code == "CONFIG_ERROR"
	    and (.error.message | contains("MESHY_API_KEY"))' "$output"
	[[ $output != *wrong-key-987* && $stderr != *wrong-key-987* ]]
	run -0 job_sql "error_code || ' ' || cost_usd" 'wrong key'
	assert_output 'CONFIG_ERROR 0.0000'
}

@test "no database: exit 69" {
	DATABASE_URL=postgresql://postgres@127.0.0.1:1/none run -69 \
	    --separate-stderr mi-submit <<<"$(req local image x)"
	[[ $stderr == *"unable to connect to the database"* ]]
	DATABASE_URL=postgresql://postgres@127.0.0.1:1/none run -69 mi-poll </dev/null
	DATABASE_URL=postgresql://postgres@127.0.0.1:1/none run -69 mi-fetch </dev/null
	DATABASE_URL= run -78 mi-submit </dev/null
}

@test "mi-poll takes jobs over only from the owner named in the record" {
	local job other
	run -0 --separate-stderr mi-submit <<<"$(req meshy model_3d 'held' '{"refine":false}' )"
	job=$output
	# Another live worker holds the lease: the record is given back.
	sql "UPDATE app.generation_jobs SET lease_owner = 'someone-else',
	    lease_expires_at = now() + interval '1 minute'
	    WHERE id = '$(jq -r .id <<<"$job")'"
	run -1 --separate-stderr mi-poll <<<"$job"
	jqok '.error.code == "TIMEOUT" and .error.retryable and
	    (.error.message | contains("held by someone-else"))' "$output"
	# Its lease expires: the job is free to take.
	sql "UPDATE app.generation_jobs SET lease_expires_at = now()
	    WHERE id = '$(jq -r .id <<<"$job")'"
	run -0 --separate-stderr mi-poll <<<"$job"
	jqok '.status == "completed"' "$output"
	# A record of a job that is final meanwhile comes out as it is now.
	run -0 --separate-stderr mi-poll <<<"$job"
	jqok '.status == "completed"' "$output"
	other=$(jq -c '.id = "00000000-0000-4000-8000-000000000000"' <<<"$job")
	run -1 --separate-stderr mi-poll <<<"$other"
	jqok '.error.code == "NOT_FOUND"' "$output"
}

@test "mi-fetch is idempotent: a stored job gives its artifact again" {
	local job art
	run -0 --separate-stderr mi-submit <<<"$(req local image 'twice' '{"width":512,"height":512}')"
	job=$output
	run -0 --separate-stderr mi-fetch <<<"$job"
	art=$output
	run -0 --separate-stderr mi-fetch <<<"$job"
	jqok ".id == $(jq .id <<<"$art") and .deduplicated" "$output"
	run -1 --separate-stderr mi-fetch <<<"$(jq -c '.status = "processing"' <<<"$job")"
	jqok '.error.code == "VALIDATION_ERROR"' "$output"
}

@test "mi-fetch downloads several results at once, at most -j; records come out in input order, a failed one in its place" {
	local tag i at_once
	tag=$(uuid)
	# Each download waits before its answer: one at a time never has two
	# under way.  The first job's is the slowest.
	for i in 1 2 3 4; do
		req meshy model_3d "at once $tag $i [dlslow:$((i == 1 ? 2500 : 1200))]" \
		    '{"refine":false}'
	done | mi-submit 2>/dev/null | mi-poll 2>/dev/null >"$BATS_TEST_TMPDIR/polled"
	{
		jq -c 'select(.request.prompt | contains("2500"))' "$BATS_TEST_TMPDIR/polled"
		jq -c 'select(.request.prompt | contains("2500") | not)' "$BATS_TEST_TMPDIR/polled"
	} >"$BATS_TEST_TMPDIR/jobs"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/jobs")" -eq 4 ]
	: >"$FAKE_LOG"
	run -0 --separate-stderr mi-fetch -j 4 <"$BATS_TEST_TMPDIR/jobs"
	[ "${#lines[@]}" -eq 4 ]
	[ "$(jq -r .metadata.job_id <<<"$output")" = "$(jq -r .id "$BATS_TEST_TMPDIR/jobs")" ]
	at_once=$(jq -s '[.[] | select(.event == "download") | .at_once] | max' "$FAKE_LOG")
	echo "# -j 4: $at_once of 4 downloads under way at once" >&3
	[ "$at_once" -ge 3 ]
	run -0 sql "SELECT count(*) FROM app.generation_jobs
	    WHERE request->>'prompt' LIKE 'at once $tag %'
	      AND artifact_id IS NOT NULL AND lease_owner IS NULL"
	assert_output 4

	# At most -j at once; a result that can't be used fails its own job
	# and comes out in its own place.
	for i in 1 2 3; do
		req meshy model_3d "bounded $tag $i [dlslow:800]$([ $i = 2 ] && echo ' [html]')" \
		    '{"refine":false}'
	done | mi-submit 2>/dev/null | mi-poll 2>/dev/null >"$BATS_TEST_TMPDIR/jobs2"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/jobs2")" -eq 3 ]
	: >"$FAKE_LOG"
	MI_FETCH_JOBS=2 run -1 --separate-stderr mi-fetch <"$BATS_TEST_TMPDIR/jobs2"
	[ "${#lines[@]}" -eq 3 ]
	jqok -s '. as $a | [range(3)] | all(. as $i | $a[$i] as $j |
	    $a[$i + 3] as $o | if ($j.request.prompt | contains("[html]"))
	    then $o.error.code == "PROVIDER_ERROR" and $o.id == $j.id
	    else $o.metadata.job_id == $j.id and ($o.uri | length) > 0 end)' \
	    "$(cat "$BATS_TEST_TMPDIR/jobs2"; echo "$output")"
	at_once=$(jq -s '[.[] | select(.event == "download") | .at_once] | max' "$FAKE_LOG")
	echo "# -j 2: $at_once of 3 downloads under way at once" >&3
	[ "$at_once" -eq 2 ]
	run -0 sql "SELECT status || ' ' || (artifact_id IS NOT NULL) FROM app.generation_jobs
	    WHERE request->>'prompt' LIKE 'bounded $tag %' ORDER BY request->>'prompt'"
	assert_output $'completed true\nfailed false\ncompleted true'
	run -64 --separate-stderr mi-fetch -j 0 </dev/null
	[[ $stderr == *"-j takes 1 to 64"* ]]
}

@test "mi-fetch writes each record while its input stays open: probing a result never waits for more input" {
	local job pid i got
	run -0 --separate-stderr mi-submit <<<"$(req local audio_sfx 'input left open' '{"sfx_type":"click","duration_sec":0.5}')"
	job=$output
	mkfifo "$BATS_TEST_TMPDIR/in"
	mi-fetch <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/out" \
	    2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	exec 7>"$BATS_TEST_TMPDIR/in"
	echo "$job" >&7
	for i in $(seq 300); do
		[ -s "$BATS_TEST_TMPDIR/out" ] && break
		sleep 0.1
	done
	got=$(cat "$BATS_TEST_TMPDIR/out")
	exec 7>&-
	wait "$pid"
	jqok '.uri and .metadata.media.duration_sec > 0' "$got"
}

@test "SIGTERM releases the jobs in hand at once and exits 75" {
	local pid job rc i
	mkfifo "$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr mi-submit <<<"$(req meshy model_3d 'long [never]' '{"refine":false}')"
	job=$output
	mi-poll <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/out" \
	    2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	exec 7>"$BATS_TEST_TMPDIR/in"
	echo "$job" >&7
	for i in $(seq 300); do
		[ "$(job_sql "lease_owner LIKE 'mi-poll@%'" 'long [never]')" = t ] && break
		sleep 0.1
	done
	run -0 job_sql "lease_owner LIKE 'mi-poll@%'" 'long [never]'
	assert_output t
	kill -TERM $pid
	rc=0
	wait $pid || rc=$?
	exec 7>&-
	[ "$rc" -eq 75 ]
	grep -q 'stopped by signal 15; jobs in hand released' \
	    "$BATS_TEST_TMPDIR/err"
	run -0 job_sql "status || ' ' || (lease_owner IS NULL)" 'long [never]'
	assert_output 'processing true'
}

# polls_line FILE: "POLLS READ" from mi-poll -v's last words in FILE.
polls_line() {
	sed -n 's/^mi-poll: \([0-9]*\) polls, \([0-9]*\) answers read.*/\1 \2/p' "$1"
}

@test "an unchanged answer runs no definition and writes no row; the counters go with the lease renewal or the release" {
	local pid job i u0 u1 polls read
	export MI_LEASE_MS=60000
	mkfifo "$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr mi-submit <<<"$(req meshy model_3d 'still [never]' '{"refine":false}')"
	job=$output
	mi-poll -v <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/out" \
	    2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	exec 7>"$BATS_TEST_TMPDIR/in"
	echo "$job" >&7
	# The fake's progress stops at 45 for a job that never ends.
	for i in $(seq 300); do
		[ "$(job_sql "lease_owner LIKE 'mi-poll@%' AND progress = 45" 'still [never]')" = t ] && break
		sleep 0.1
	done
	run -0 job_sql "lease_owner LIKE 'mi-poll@%' AND progress = 45" 'still [never]'
	assert_output t
	u0=$(job_sql "updated_at || ' ' || attempts" 'still [never]')
	sleep 1
	u1=$(job_sql "updated_at || ' ' || attempts" 'still [never]')
	[ "$u0" = "$u1" ]
	kill -TERM $pid
	wait $pid || true
	exec 7>&-
	read -r polls read <<<"$(polls_line "$BATS_TEST_TMPDIR/err")"
	[ "$read" -le 5 ]
	[ "$polls" -gt $((read + 5)) ]
	# Released with every poll counted.
	run -0 job_sql "attempts || ' ' || (lease_owner IS NULL)" 'still [never]'
	assert_output "$polls true"
}

@test "suno: answers that differ only in freshly signed links are the same answer" {
	local job pid polls read p0 i
	run -0 --separate-stderr mi-submit <<<"$(req suno audio_bgm 'links [never]')"
	job=$output
	p0=$(fake_stats | jq .polls)
	mi-poll -v <<<"$job" >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	pid=$!
	# A job that never ends stays at TEXT_SUCCESS, each answer with links
	# signed afresh; ten polls of it, however slow the machine, then the
	# fake finishes it.
	for i in $(seq 600); do
		[ "$(fake_stats | jq ".polls - $p0")" -ge 10 ] && break
		sleep 0.1
	done
	[ "$(fake_stats | jq ".polls - $p0")" -ge 10 ]
	curl -sS -X POST "$FAKE_URL/_fake/finish" \
	    -d "$(jq -nc --arg j "$(jq -r .provider_job_id <<<"$job")" '{job: $j}')" |
	    jq -e .finished
	wait "$pid"
	jqok '.status == "completed" and
	    (.result_uri | test("/files/suno/.*\\.mp3\\?Expires="))' "$(cat "$BATS_TEST_TMPDIR/out")"
	read -r polls read <<<"$(polls_line "$BATS_TEST_TMPDIR/err")"
	# PENDING, TEXT_SUCCESS, SUCCESS: one read each, however many polls
	# each took.
	[ "$read" -le 4 ]
	[ "$polls" -ge 10 ]
	# The link taken is one the fake still serves.
	run -0 curl -sf -o /dev/null -w '%{http_code}' "$(jq -r .result_uri "$BATS_TEST_TMPDIR/out")"
	assert_output 200
}

@test "with group commit and without (MI_GROUP_COMMIT=0) every job is stored once, created once; batches share WAL writes either way" {
	local tag=$(uuid) i w0 w1 w2 w3 w4 group plain
	export MI_ELEVENLABS_SFX_CONCURRENCY=100
	flushes() { sql "SELECT wal_write FROM pg_stat_wal"; }
	for i in $(seq 30); do
		req elevenlabs-sfx audio_sfx "group $tag $i" '{"duration_sec":1}'
	done >"$BATS_TEST_TMPDIR/group"
	for i in $(seq 30); do
		req elevenlabs-sfx audio_sfx "plain $tag $i" '{"duration_sec":1}'
	done >"$BATS_TEST_TMPDIR/plain"
	fake_reset
	# mi-submit | mi-poll with and without; mi-fetch (no group commit)
	# afterwards, outside the count.
	w0=$(flushes)
	MI_GROUP_COMMIT=1 mi-submit <"$BATS_TEST_TMPDIR/group" 2>/dev/null |
	    MI_GROUP_COMMIT=1 mi-poll >"$BATS_TEST_TMPDIR/group.jobs" 2>/dev/null
	w1=$(flushes)
	mi-fetch <"$BATS_TEST_TMPDIR/group.jobs" >"$BATS_TEST_TMPDIR/group.out"
	w2=$(flushes)
	MI_GROUP_COMMIT=0 mi-submit <"$BATS_TEST_TMPDIR/plain" 2>/dev/null |
	    MI_GROUP_COMMIT=0 mi-poll >"$BATS_TEST_TMPDIR/plain.jobs" 2>/dev/null
	w3=$(flushes)
	MI_GROUP_COMMIT=0 mi-fetch <"$BATS_TEST_TMPDIR/plain.jobs" >"$BATS_TEST_TMPDIR/plain.out"
	w4=$(flushes)
	group=$((w1 - w0))
	plain=$((w3 - w2))
	echo "# WAL writes of mi-submit | mi-poll for 30 sound effects: $group with group commit, $plain without" >&3
	echo "# WAL writes of mi-fetch: $((w2 - w1)) with group commit, $((w4 - w3)) without" >&3
	# mi-fetch's four downloads at once end together only at full
	# speed (under valgrind they come one by one, nothing to group).
	# Their leases are taken in one statement and their rows written in
	# one transaction, so without group commit too they share WAL
	# writes (one a job or more before).  Group commit's barrier is a
	# flushed commit of its own each turn that lets records out: for a
	# run this small it writes no less than committing each batch does
	# (the crash test of faults.bats shows what it keeps).
	if [ "$MI_TEST_SLOW" -eq 1 ]; then
		[ $((w4 - w3)) -lt 30 ]
	fi
	[ "$(grep -c '"content_hash"' "$BATS_TEST_TMPDIR/group.out")" -eq 30 ]
	[ "$(sql "SELECT count(*) FROM app.generation_jobs WHERE request->>'prompt' LIKE 'group $tag %' AND status = 'completed' AND artifact_id IS NOT NULL AND submit_count = 1")" -eq 30 ]
	[ "$(fake_stats | jq '.creates_accepted.elevenlabs')" -eq 60 ]
	[ "$(grep -c '"content_hash"' "$BATS_TEST_TMPDIR/plain.out")" -eq 30 ]
	# mi-submit admits the requests read together in one transaction:
	# without group commit too its writes take fewer WAL writes than
	# there are jobs (46 when each request had its own).
	[ "$plain" -lt 30 ]
}
