#!/usr/bin/env bats
# Webhooks: the fake provider sends really signed deliveries (fal's
# ED25519 with a JWKS it serves) to mi-hook; a verified one completes the
# job through its worker with no poll in between; every kind of bad
# delivery is refused with one answer and changes nothing; polling stays
# the backstop.

load test_helper
load jobs_helper

setup_file() {
	jobs_setup_file --job-ms 1500
	export HOOK_PORT=$(free_port)
	export MI_WEBHOOK_URL=http://127.0.0.1:$HOOK_PORT
	export MI_FAL_WEBHOOK_JWKS=$FAKE_URL/_fake/jwks.json
	# The fake's Standard Webhooks secret (test/fake/webhooks.py).
	export MI_NANO_BANANA_VIDEO_WEBHOOK_SECRET=whsec_$(printf %s \
	    fake-webhook-secret-0123456789ab | base64)
	export MI_REPLICATE_WEBHOOK_SECRET=$MI_NANO_BANANA_VIDEO_WEBHOOK_SECRET
	export MI_SUNO_WEBHOOK_SECRET=fake-hmac-key-0123456789
	# Polls every 50 ms without webhooks; with them, a slow backstop.
	export MI_WEBHOOK_BACKSTOP_MS=30000
	mi-hook -v -l "127.0.0.1:$HOOK_PORT" 2>"$BATS_FILE_TMPDIR/hook.err" 3>&- &
	export HOOK_PID=$!
	for i in $(seq 1 300); do
		curl -sf "$MI_WEBHOOK_URL/healthz" >/dev/null && break
		sleep 0.1
	done
}

teardown() {
	# A second receiver a test started, even when the test failed.
	if [ -f "$BATS_TEST_TMPDIR/hook2.pid" ]; then
		kill "$(cat "$BATS_TEST_TMPDIR/hook2.pid")" 2>/dev/null || true
	fi
}

teardown_file() {
	kill "$HOOK_PID" 2>/dev/null || true
	wait "$HOOK_PID" 2>/dev/null || true
	fake_stop
}

# The fake's log lines of the job whose prompt is $1.
events() {
	local id
	id=$(job_sql provider_job_id "$1")
	jq -c --arg id "$id" 'select(.job_id == $id)' "$FAKE_LOG"
}

# deliver JOB MODE [URL]: the receiver's status for a delivery the fake
# sends now.
deliver() {
	curl -sS -X POST "$FAKE_URL/_fake/deliver" -d "$(jq -nc --arg j "$1" \
	    --arg m "$2" --arg u "${3:-}" \
	    '{job: $j, mode: $m} + (if $u == "" then {} else {url: $u} end)')" |
	    jq -r .status
}

metric() {
	curl -s "$MI_WEBHOOK_URL/metrics" | awk -v k="$1" '$1 == k {print $2}'
}

@test "a verified delivery completes the job at once, with no poll in between" {
	run -0 pipeline <<<"$(req fal image 'hook fast')"
	jqok '.metadata.provider_id == "fal" and .metadata.mime_type == "image/png"' "$output"
	run -0 events 'hook fast'
	# The create asked for the webhook; polls before it, none after.
	jqok -s '[.[] | select(.event == "create")][0].query.fal_webhook |
	    startswith(env.MI_WEBHOOK_URL + "/hooks/fal?job=")' "$output"
	jqok -s '[.[] | select(.event == "webhook")] | length == 1 and
	    .[0].status == 200' "$output"
	jqok -s '(map(.event) | index("webhook")) as $w |
	    [.[$w:][] | select(.event == "poll")] == []' "$output"
	# From the delivery to the completed job.
	run -0 sql "SELECT (extract(epoch FROM j.completed_at - d.received_at)
	    * 1000)::int FROM app.webhook_deliveries d
	    JOIN app.generation_jobs j ON j.id = d.job_id
	    WHERE j.request->>'prompt' = 'hook fast'"
	echo "webhook to completed job: $output ms" >&3
	[ "$output" -ge 0 ]
	[ "$output" -lt "${HOOKS_MAX_MS:-1000}" ]
	run -0 job_sql "status || ' ' || (artifact_id IS NOT NULL)" 'hook fast'
	[ "$output" = "completed true" ]
}

@test "Replicate: the prediction in a Standard Webhooks delivery completes the job, with no poll in between" {
	local id
	run -0 pipeline <<<"$(req replicate video 'hook replicate' '{"duration_sec":6}')"
	jqok '.metadata.provider_id == "replicate" and .metadata.mime_type == "video/mp4"' "$output"
	run -0 events 'hook replicate'
	# The create named the URL and asked for the completed event only.
	jqok -s '[.[] | select(.event == "create")][0].body |
	    (.webhook | startswith(env.MI_WEBHOOK_URL + "/hooks/replicate?job=")) and
	    .webhook_events_filter == ["completed"]' "$output"
	jqok -s '[.[] | select(.event == "webhook")] | length == 1 and
	    .[0].status == 200' "$output"
	# No poll at all: not when mi-poll took the job over, not after.
	jqok -s '[.[] | select(.event == "poll")] == []' "$output"
	# Read from the delivery itself (not a hint to poll).
	run -0 sql "SELECT d.outcome->>'status', d.webhook_id LIKE 'msg_%'
	    FROM app.webhook_deliveries d JOIN app.generation_jobs j ON j.id = d.job_id
	    WHERE j.request->>'prompt' = 'hook replicate'"
	[ "$output" = "completed|t" ]
	run -0 job_sql "status || ' ' || (artifact_id IS NOT NULL)" 'hook replicate'
	[ "$output" = "completed true" ]
	# A tampered copy is refused.
	id=$(job_sql provider_job_id 'hook replicate')
	run -0 deliver "$id" bad_signature
	[ "$output" = 401 ]
}

@test "a delivery recorded before any worker held the job is applied when one takes it over" {
	local n
	mi-submit <<<"$(req replicate video 'hook early' '{"duration_sec":6}')" \
	    >"$BATS_TEST_TMPDIR/early.job" 2>/dev/null
	# The fake delivers after 1.5 s; no worker listens yet.
	for i in $(seq 1 300); do
		n=$(sql "SELECT count(*) FROM app.webhook_deliveries d
		    JOIN app.generation_jobs j ON j.id = d.job_id
		    WHERE j.request->>'prompt' = 'hook early'")
		[ "$n" = 1 ] && break
		sleep 0.1
	done
	[ "$n" = 1 ]
	# A guard against a hang only: no poll is what shows the delivery applied.
	run -0 timeout 120 sh -c "mi-poll <'$BATS_TEST_TMPDIR/early.job' 2>'$BATS_TEST_TMPDIR/early.err' | mi-fetch 2>/dev/null"
	jqok '.metadata.provider_id == "replicate"' "$output"
	run -0 events 'hook early'
	jqok -s '[.[] | select(.event == "poll")] == []' "$output"
}

@test "bad signature, replay, stale timestamp, oversized body: refused alike, nothing changed" {
	local id before
	# A job that gets no delivery by itself, and stays open.
	mi-submit <<<"$(req fal image 'hook bad [nohook] [never]')" >"$BATS_TEST_TMPDIR/job"
	id=$(job_sql provider_job_id 'hook bad [nohook] [never]')
	before=$(job_sql "status || provider_state::text" 'hook bad [nohook] [never]')
	run -0 deliver "$id" bad_signature
	[ "$output" = 401 ]
	run -0 deliver "$id" stale
	[ "$output" = 401 ]
	run -0 deliver "$id" oversize
	[ "$output" = 413 ]
	run -0 job_sql "status || provider_state::text" 'hook bad [nohook] [never]'
	[ "$output" = "$before" ]
	run -0 sql "SELECT count(*) FROM app.webhook_deliveries d
	    JOIN app.generation_jobs j ON j.id = d.job_id
	    WHERE j.request->>'prompt' = 'hook bad [nohook] [never]'"
	[ "$output" = 0 ]
	# A good one is taken once; the same bytes again are a replay.
	run -0 deliver "$id" ok
	[ "$output" = 200 ]
	run -0 deliver "$id" again
	[ "$output" = 401 ]
	run -0 sql "SELECT count(*) FROM app.webhook_deliveries d
	    JOIN app.generation_jobs j ON j.id = d.job_id
	    WHERE j.request->>'prompt' = 'hook bad [nohook] [never]'"
	[ "$output" = 1 ]
	[ "$(metric 'mi_hook_webhooks_total{result="signature"}')" -ge 1 ]
	[ "$(metric 'mi_hook_webhooks_total{result="stale"}')" -ge 1 ]
	[ "$(metric 'mi_hook_webhooks_total{result="replay"}')" -ge 1 ]
	[ "$(metric 'mi_hook_webhooks_total{result="too_large"}')" -ge 1 ]
}

@test "unknown job and another tenant's job: the same answer as a bad signature" {
	local id job url
	mi-submit <<<"$(req fal image 'hook foreign [nohook] [never]')" >/dev/null
	id=$(job_sql provider_job_id 'hook foreign [nohook] [never]')
	job=$(job_sql id 'hook foreign [nohook] [never]')
	before=$(job_sql "status || provider_state::text" 'hook foreign [nohook] [never]')
	run -0 deliver "$id" ok "$MI_WEBHOOK_URL/hooks/fal?job=$job&tenant=org_other"
	[ "$output" = 401 ]
	run -0 deliver "$id" ok "$MI_WEBHOOK_URL/hooks/fal?job=$(uuid)&tenant=org_a"
	[ "$output" = 401 ]
	# A job mi never had: the fake knows it, mi does not.
	sql "UPDATE app.generation_jobs SET provider_job_id = 'gone'
	    WHERE id = '$job'"
	run -0 deliver "$id" ok
	[ "$output" = 401 ]
	sql "UPDATE app.generation_jobs SET provider_job_id = '$id'
	    WHERE id = '$job'"
	run -0 job_sql "status || provider_state::text" 'hook foreign [nohook] [never]'
	[ "$output" = "$before" ]
	[ "$(metric 'mi_hook_webhooks_total{result="tenant"}')" -ge 1 ]
	[ "$(metric 'mi_hook_webhooks_total{result="unknown_job"}')" -ge 2 ]
	[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' \
	    "$MI_WEBHOOK_URL/hooks/no-such-provider")" = 401 ]
}

@test "Standard Webhooks (Veo): a verified thin delivery makes the worker poll at once" {
	local op t0 t1 i
	# Neither the interval nor the deadline brings a poll meanwhile.
	export MI_NANO_BANANA_VIDEO_POLL_INTERVAL_MS=600000 \
	    MI_NANO_BANANA_VIDEO_TIMEOUT_MS=600000
	mi-submit <<<"$(req nano-banana-video video 'hook veo' '{"duration_sec":4}')" \
	    >"$BATS_TEST_TMPDIR/veo.job" 2>/dev/null
	op=$(job_sql provider_job_id 'hook veo')
	op=${op##*/}
	mi-poll <"$BATS_TEST_TMPDIR/veo.job" >"$BATS_TEST_TMPDIR/veo.out" \
	    2>"$BATS_TEST_TMPDIR/veo.err" 3>&- &
	pid=$!
	# Until mi-poll holds the job and the fake has finished it (1.5 s).
	for i in $(seq 600); do
		[ "$(job_sql "lease_owner LIKE 'mi-poll@%'" 'hook veo')" = t ] &&
		    [ "$(curl -sS "$FAKE_URL/_fake/jobs" | jq --arg o "$op" \
		    'any(.[]; (.id == $o or (.id | endswith("/" + $o))) and
		    .done)')" = true ] && break
		sleep 0.1
	done
	run -0 job_sql "lease_owner LIKE 'mi-poll@%'" 'hook veo'
	assert_output t
	run -0 deliver "$op" bad_signature "$MI_WEBHOOK_URL/hooks/nano-banana-video"
	[ "$output" = 401 ]
	run -0 deliver "$op" stale "$MI_WEBHOOK_URL/hooks/nano-banana-video"
	[ "$output" = 401 ]
	run -0 deliver "$op" ok "$MI_WEBHOOK_URL/hooks/nano-banana-video"
	[ "$output" = 200 ]
	t0=$(date +%s)
	run -0 timeout 10 tail --pid="$pid" -f /dev/null
	t1=$(date +%s)
	run -0 cat "$BATS_TEST_TMPDIR/veo.out"
	jqok '.status == "completed"' "$output"
	# Well before the next poll the interval (or the deadline) would make.
	[ $((t1 - t0)) -lt 10 ]
	run -0 sql "SELECT outcome IS NULL, applied_at IS NOT NULL
	    FROM app.webhook_deliveries WHERE provider_id = 'nano-banana-video'"
	[ "$output" = "t|t" ]
	unset MI_NANO_BANANA_VIDEO_POLL_INTERVAL_MS MI_NANO_BANANA_VIDEO_TIMEOUT_MS
}

# finish JOB: the fake ends the job now (it was made with [never]).
finish() {
	curl -sS -X POST "$FAKE_URL/_fake/finish" -d "$(jq -nc --arg j "$1" '{job: $j}')" |
	    jq -e .finished >/dev/null
}

# polls_of JOB: how many polls of the job the fake has logged.
polls_of() {
	jq -s --arg j "$1" '[.[] | select(.job_id == $j and .event == "poll")] |
	    length' "$FAKE_LOG"
}

@test "hmac (Suno) and unsigned (Meshy) deliveries are hints: the worker polls at once" {
	local suno meshy bar t0 t1 i
	# Neither the interval nor the deadline brings a poll meanwhile, and
	# the jobs run until the test ends them (however slow the machine).
	export MI_SUNO_POLL_INTERVAL_MS=600000 MI_MESHY_POLL_INTERVAL_MS=600000 \
	    MI_SUNO_TIMEOUT_MS=600000 MI_MESHY_TIMEOUT_MS=600000
	{
		req suno audio_bgm 'hook suno [never]' '{"duration_sec":30}'
		req meshy model_3d 'hook meshy [never]' '{"refine":false}'
		req meshy model_3d 'hook barrier [never]' '{"refine":false}'
	} | mi-submit >"$BATS_TEST_TMPDIR/hint.jobs" 2>/dev/null
	suno=$(job_sql provider_job_id 'hook suno [never]')
	meshy=$(job_sql provider_job_id 'hook meshy [never]')
	bar=$(job_sql provider_job_id 'hook barrier [never]')
	# The callback URL went with Suno's create.
	run -0 jq -c --arg id "$suno" 'select(.job_id == $id and .event == "create")' "$FAKE_LOG"
	jqok '.body.callBackUrl | startswith(env.MI_WEBHOOK_URL + "/hooks/suno?job=")' "$output"
	mi-poll <"$BATS_TEST_TMPDIR/hint.jobs" >"$BATS_TEST_TMPDIR/hint.out" \
	    2>"$BATS_TEST_TMPDIR/hint.err" 3>&- &
	pid=$!
	# Until mi-poll holds the three jobs and has made the poll a takeover
	# makes (the Meshy jobs: their webhooks are not asked for per job).
	for i in $(seq 600); do
		[ "$(sql "SELECT count(*) FROM app.generation_jobs
		    WHERE lease_owner LIKE 'mi-poll@%' AND status = 'processing'
		    AND request->>'prompt' LIKE 'hook % [never]'")" = 3 ] &&
		    [ "$(polls_of "$meshy")" = 1 ] && [ "$(polls_of "$bar")" = 1 ] &&
		    break
		sleep 0.1
	done
	run -0 job_sql "lease_owner LIKE 'mi-poll@%'" 'hook barrier [never]'
	assert_output t
	[ "$(polls_of "$meshy")" = 1 ]
	[ "$(polls_of "$bar")" = 1 ]
	[ "$(polls_of "$suno")" = 0 ]
	# Progress notes are taken (200) but make no poll.
	run -0 deliver "$suno" progress "$MI_WEBHOOK_URL/hooks/suno"
	[ "$output" = 200 ]
	run -0 deliver "$meshy" progress "$MI_WEBHOOK_URL/hooks/meshy"
	[ "$output" = 200 ]
	# A hint for the third job, sent after them, is the barrier: once the
	# worker has polled it and completed it, it has seen everything that
	# the progress notes could have woken it for.
	finish "$bar"
	run -0 deliver "$bar" ok "$MI_WEBHOOK_URL/hooks/meshy"
	[ "$output" = 200 ]
	for i in $(seq 600); do
		[ "$(job_sql status 'hook barrier [never]')" = completed ] && break
		sleep 0.1
	done
	run -0 job_sql status 'hook barrier [never]'
	assert_output completed
	[ "$(polls_of "$suno")" = 0 ]
	[ "$(polls_of "$meshy")" = 1 ]
	run -0 deliver "$suno" bad_signature "$MI_WEBHOOK_URL/hooks/suno"
	[ "$output" = 401 ]
	finish "$suno"
	finish "$meshy"
	run -0 deliver "$suno" ok "$MI_WEBHOOK_URL/hooks/suno"
	[ "$output" = 200 ]
	run -0 deliver "$meshy" ok "$MI_WEBHOOK_URL/hooks/meshy"
	[ "$output" = 200 ]
	t0=$(date +%s)
	run -0 timeout 10 tail --pid="$pid" -f /dev/null
	t1=$(date +%s)
	[ $((t1 - t0)) -lt 10 ]
	run -0 jq -s -c 'map(.status)' "$BATS_TEST_TMPDIR/hint.out"
	[ "$output" = '["completed","completed","completed"]' ]
	[ "$(metric 'mi_hook_webhooks_total{result="hint"}')" -ge 3 ]
	[ "$(metric 'mi_hook_webhooks_total{result="progress"}')" -ge 2 ]
	unset MI_SUNO_POLL_INTERVAL_MS MI_MESHY_POLL_INTERVAL_MS \
	    MI_SUNO_TIMEOUT_MS MI_MESHY_TIMEOUT_MS
}

@test "a delivery that never comes: the backstop poll completes the job" {
	MI_WEBHOOK_BACKSTOP_MS=2500 run -0 pipeline <<<"$(req fal image 'hook none [nohook]')"
	jqok '.metadata.provider_id == "fal"' "$output"
	run -0 events 'hook none [nohook]'
	jqok -s '[.[] | select(.event == "webhook")] == []' "$output"
	run -0 job_sql status 'hook none [nohook]'
	[ "$output" = completed ]
	grep -q 'no webhook from fal' "$BATS_TEST_TMPDIR/poll.err"
}

@test "a delivery for a job mi already finished is ignored" {
	local id done
	run -0 pipeline <<<"$(req fal image 'hook late')"
	id=$(job_sql provider_job_id 'hook late')
	done=$(job_sql "status || completed_at::text || artifact_id::text" 'hook late')
	run -0 deliver "$id" ok
	[ "$output" = 200 ]
	run -0 job_sql "status || completed_at::text || artifact_id::text" 'hook late'
	[ "$output" = "$done" ]
	[ "$(metric 'mi_hook_webhooks_total{result="ignored"}')" -ge 1 ]
}

@test "a burst of deliveries is recorded in shared transactions, and every worker is woken" {
	local port url ids i n=12 t0 t1
	for i in $(seq 1 $n); do
		req replicate video "hook burst $i [nohook]" '{"duration_sec":6}'
	done | mi-submit >"$BATS_TEST_TMPDIR/burst.jobs" 2>/dev/null
	t0=$(date +%s)
	mi-poll <"$BATS_TEST_TMPDIR/burst.jobs" >"$BATS_TEST_TMPDIR/burst.out" \
	    2>"$BATS_TEST_TMPDIR/burst.err" 3>&- &
	pid=$!
	# A receiver that lets a batch wait for more (deliveries that come
	# together share a transaction anyway; the wait makes it certain).
	port=$(free_port)
	url=http://127.0.0.1:$port
	mi-hook -w 500 -l "127.0.0.1:$port" 2>"$BATS_TEST_TMPDIR/hook2.err" 3>&- &
	hook2=$!
	echo "$hook2" >"$BATS_TEST_TMPDIR/hook2.pid"
	for i in $(seq 1 300); do
		curl -sf "$url/healthz" >/dev/null && break
		sleep 0.1
	done
	# The predictions end at the fake (1.5 s); then all at once.
	sleep 2
	for i in $(seq 1 $n); do
		deliver "$(job_sql provider_job_id "hook burst $i [nohook]")" ok \
		    "$url/hooks/replicate" >"$BATS_TEST_TMPDIR/st.$i" &
	done
	wait $(jobs -p | grep -v -e "^$pid\$" -e "^$hook2\$") 2>/dev/null || true
	run -0 cat "$BATS_TEST_TMPDIR"/st.*
	[ "$(grep -c '^200$' <<<"$output")" -eq $n ]
	run -0 timeout 20 tail --pid="$pid" -f /dev/null
	t1=$(date +%s)
	# Woken by the deliveries, not by the 30 s backstop.
	[ $((t1 - t0)) -lt 20 ]
	run -0 jq -s -c 'map(.status) | unique' "$BATS_TEST_TMPDIR/burst.out"
	[ "$output" = '["completed"]' ]
	run -0 curl -s "$url/metrics"
	tx=$(awk '$1 == "mi_hook_transactions_total" {print $2}' <<<"$output")
	looked=$(awk '$1 == "mi_hook_transaction_deliveries_total" {print $2}' <<<"$output")
	echo "$n deliveries in $tx transactions" >&3
	[ "$looked" -eq $n ]
	[ "$tx" -ge 1 ]
	[ "$tx" -lt $n ]
	kill "$hook2"
	wait "$hook2" || true
}

@test "metrics: deliveries, latency to the stored artifact, polls saved" {
	sleep 0.5
	run -0 curl -s "$MI_WEBHOOK_URL/metrics"
	[[ $output == *"mi_hook_webhooks_received_total "* ]]
	[ "$(metric mi_hook_webhook_to_stored_seconds_count)" -ge 1 ]
	[ "$(metric 'mi_hook_webhooks_total{result="accepted"}')" -ge 2 ]
	[[ $output == *"mi_hook_polls_saved_total "* ]]
}

@test "mi-hook: no database is 69, a bad address 78" {
	DATABASE_URL=postgresql://postgres@127.0.0.1:1/none run -69 --separate-stderr \
	    mi-hook -l 127.0.0.1:0
	[[ $stderr == "mi-hook: unable to connect to the database"* ]]
	run -78 --separate-stderr mi-hook -l nonsense
	[[ $stderr == "mi-hook: bad listen address 'nonsense'"* ]]
}
