#!/usr/bin/env bats
# Fallback: a primary that cannot do the job hands it to the next
# provider of the request's chain as a new job of the same run step; the
# final record names the job that produced the result, failed attempts
# keep their errors and costs; a provider that keeps failing cools down.

load test_helper
load jobs_helper

setup_file() {
	jobs_setup_file
}

teardown_file() {
	fake_stop
}

# chain PROMPT: the jobs of a run step, oldest first, as JSON lines.
chain() {
	sql "SELECT to_jsonb(j) FROM app.generation_jobs j
	    WHERE run_step_id = (SELECT run_step_id FROM app.generation_jobs
	    WHERE request->>'prompt' = '$1' LIMIT 1) ORDER BY created_at"
}

@test "primary down at submit: the secondary's result, the chain kept in the database" {
	local art
	run -0 pipeline <<<"$(req nano-banana-video video 'fb down [500@veo]' \
	    '{"duration_sec":4}' '{"fallback":["fal"]}')"
	art=$output
	jqok '.metadata.provider_id == "fal" and .metadata.mime_type ==
	    "video/mp4" and (.metadata.previous_job_id | length) == 36' "$art"
	run -0 chain 'fb down [500@veo]'
	[ "${#lines[@]}" -eq 2 ]
	jqok '.provider_id == "nano-banana-video" and .status == "failed" and
	    .error_code == "PROVIDER_UNAVAILABLE" and .cost_usd == 0 and
	    .fallback == ["fal"]' "${lines[0]}"
	jqok ".provider_id == \"fal\" and .status == \"completed\" and
	    .previous_job_id == $(jq .id <<<"${lines[0]}") and
	    .id == $(jq .metadata.job_id <<<"$art") and
	    .artifact_id == $(jq .id <<<"$art") and .fallback == []" \
	    "${lines[1]}"
	grep -q 'falling back to fal' "$BATS_TEST_TMPDIR/submit.err"
}

@test "primary fails after accepting the job: mi-poll falls back; the failed attempt keeps its cost" {
	run -0 pipeline <<<"$(req nano-banana-video video 'fb fail [fail@veo]' \
	    '{"duration_sec":8}' '{"fallback":["fal"]}')"
	jqok '.metadata.provider_id == "fal"' "$output"
	run -0 chain 'fb fail [fail@veo]'
	jqok '.status == "failed" and .error_code == "PROVIDER_ERROR" and
	    .cost_usd == 0.8 and .cost_source == "estimate" and
	    (.provider_job_id | length) > 0' "${lines[0]}"
	jqok '.status == "completed" and .provider_id == "fal"' "${lines[1]}"
	grep -q 'falling back to fal' "$BATS_TEST_TMPDIR/poll.err"
}

@test "primary times out: the secondary takes over" {
	MI_NANO_BANANA_VIDEO_TIMEOUT_MS=700 run -0 pipeline \
	    <<<"$(req nano-banana-video video 'fb slow [never@veo]' \
	    '{"duration_sec":4}' '{"fallback":["local"]}')"
	jqok '.metadata.provider_id == "local" and (.uri | endswith(".mp4"))' \
	    "$output"
	run -0 chain 'fb slow [never@veo]'
	jqok '.status == "timed_out" and .error_code == "TIMEOUT"' "${lines[0]}"
	jqok '.status == "completed" and .provider_id == "local"' "${lines[1]}"
}

@test "a validation error of the request is not fallen back from" {
	run -1 pipeline <<<"$(req nano-banana-video video 'fb invalid' \
	    '{"duration_sec":10}' '{"fallback":["local"]}')"
	jqok '.error.code == "VALIDATION_ERROR"' "$output"
	run -0 job_count 'fb invalid'
	assert_output 0
}

@test "a chain of three; a fallback that cannot take the request is skipped" {
	run -0 pipeline <<<"$(req nano-banana-video video 'fb three [500@veo] [500@fal]' \
	    '{"duration_sec":4}' '{"fallback":["meshy","fal","local"]}')"
	jqok '.metadata.provider_id == "local"' "$output"
	run -0 chain 'fb three [500@veo] [500@fal]'
	[ "${#lines[@]}" -eq 3 ]
	run -0 jq -r '"\(.provider_id) \(.status)"' <<<"$output"
	assert_output $'nano-banana-video failed\nfal failed\nlocal completed'
}

@test "when every provider fails the last failure comes out, with the whole chain's errors kept" {
	run -1 pipeline <<<"$(req fal image 'fb none [fail]' '{}' \
	    '{"fallback":["nano-banana"]}')"
	jqok '.status == "failed" and .provider_id == "nano-banana" and
	    .error.code == "PROVIDER_ERROR" and .previous_job_id != null' \
	    "$output"
	run -0 chain 'fb none [fail]'
	[ "${#lines[@]}" -eq 2 ]
	jqok -s 'all(.status == "failed" and .error_message != null)' "$output"
}

@test "a fallback without its key is skipped with a warning" {
	FAL_KEY= run -0 pipeline <<<"$(req nano-banana-video video 'fb nokey [500@veo]' \
	    '{"duration_sec":4}' '{"fallback":["fal","local"]}')"
	jqok '.metadata.provider_id == "local"' "$output"
	grep -q 'FAL_KEY is not set; trying the next provider' \
	    "$BATS_TEST_TMPDIR/submit.err"
}

@test "a provider that keeps failing cools down: requests go straight to the fallback" {
	local before
	export MI_ALLOWED_FAILS=1 MI_COOLDOWN_MS=60000
	run -0 pipeline <<<"$(req blockade-skybox environment_map 'cool 1 [500@blockade]' \
	    '{}' '{"fallback":["local"]}')"
	run -0 sql "SELECT count(*) FROM app.provider_health
	    WHERE provider_id = 'blockade-skybox' AND cooldown_until > now()"
	assert_output 0
	run -0 pipeline <<<"$(req blockade-skybox environment_map 'cool 2 [500@blockade]' \
	    '{}' '{"fallback":["local"]}')"
	run -0 sql "SELECT count(*) FROM app.provider_health
	    WHERE provider_id = 'blockade-skybox' AND cooldown_until > now()"
	assert_output 1
	grep -q "provider 'blockade-skybox' failed more than 1 times" \
	    "$BATS_TEST_TMPDIR/submit.err"
	# Cooling: a healthy request does not reach blockade at all.
	before=$(stat '.attempts_by_prompt | length')
	run -0 pipeline <<<"$(req blockade-skybox environment_map 'cool 3' \
	    '{}' '{"fallback":["local"]}')"
	jqok '.metadata.provider_id == "local"' "$output"
	[ "$(stat '.attempts_by_prompt | length')" = "$before" ]
	run -0 chain 'cool 3'
	[ "${#lines[@]}" -eq 1 ]
	grep -q "provider 'blockade-skybox' is cooling down" \
	    "$BATS_TEST_TMPDIR/submit.err"
	# With nowhere else to go, a cooling provider is still used.
	run -0 pipeline <<<"$(req blockade-skybox environment_map 'cool 4')"
	jqok '.metadata.provider_id == "blockade-skybox"' "$output"
}
