#!/usr/bin/env bats
# Every fault of the fake provider server ends in the right state with a
# clear error: retried creates, refused creates, provider-side failures,
# jobs that never finish, expired, truncated, HTML and mistyped results,
# a create whose answer never comes, an answer hidden in HTTP 200.

load test_helper
load jobs_helper

setup_file() {
	jobs_setup_file
}

teardown_file() {
	fake_stop
}

# attempts PROMPT: create attempts the fake counted for the prompt.
attempts() {
	stat ".attempts_by_prompt[\"$1\"] // 0"
}

@test "429 with Retry-After, then success: the create is retried after the wait" {
	local t0 t1
	t0=$(date +%s%N)
	run -0 pipeline <<<"$(req meshy model_3d 'busy [429]' '{"refine":false}')"
	t1=$(date +%s%N)
	[ "$(attempts 'busy [429]')" -eq 2 ]
	# Retry-After: 1 is honoured (the backoff alone would be 50 ms).
	[ $(((t1 - t0) / 1000000)) -ge 1000 ]
	run -0 job_sql "status || ' ' || submit_count" 'busy [429]'
	assert_output 'completed 2'
}

@test "500 then 503, then success; Suno's 500 inside an HTTP 200 too" {
	run -0 pipeline <<<"$(req nano-banana-video video 'flaky [500x2]' '{"duration_sec":4}')"
	[ "$(attempts 'flaky [500x2]')" -eq 3 ]
	run -0 pipeline <<<"$(req suno audio_bgm 'flaky suno [500x2]')"
	[ "$(attempts 'flaky suno [500x2]')" -eq 3 ]
}

@test "a provider that stays down: failed after the retries, retryable, nothing charged" {
	run -1 pipeline <<<"$(req meshy model_3d 'down [500]')"
	jqok '.status == "failed" and .error.code == "PROVIDER_UNAVAILABLE" and
	    .error.retryable and (.error.message | contains("HTTP 503")) and
	    .cost_usd == 0 and .submit_count == 5' "$output"
	[ "$(attempts 'down [500]')" -eq 5 ]
}

@test "out of credits is final at once: Meshy 402, Suno's code 429 in HTTP 200" {
	run -1 pipeline <<<"$(req meshy model_3d 'poor [credits]')"
	jqok '.error.code == "PROVIDER_ERROR" and .error.retryable == false and
	    (.error.message | contains("402"))' "$output"
	[ "$(attempts 'poor [credits]')" -eq 1 ]
	run -1 pipeline <<<"$(req suno audio_bgm 'poor suno [credits]')"
	jqok '.error.code == "PROVIDER_ERROR" and
	    (.error.message | contains("out of credits"))' "$output"
	[ "$(attempts 'poor suno [credits]')" -eq 1 ]
}

@test "a job that fails at the provider: failed with the provider's words" {
	local in
	in=$(req meshy model_3d 'm [fail]')$'\n'$(req nano-banana-video video 'v [fail]' '{"duration_sec":4}')
	in+=$'\n'$(req suno audio_bgm 's [fail]')$'\n'$(req blockade-skybox environment_map 'b [fail]')
	in+=$'\n'$(req fal image 'f [fail]')$'\n'$(req blockade-skybox environment_map 'e [exportfail]')
	run -1 pipeline <<<"$in"
	[ "${#lines[@]}" -eq 6 ]
	jqok -s 'all(.status == "failed" and .error.code == "PROVIDER_ERROR")' \
	    "$output"
	run -0 jq -r '"\(.request.prompt): \(.error.message)"' <<<"$output"
	assert_line 'm [fail]: meshy: task failed: Internal server error.'
	assert_line --partial 'v [fail]: veo: Video generation failed'
	assert_line --partial 's [fail]: suno: GENERATE_AUDIO_FAILED'
	assert_line --partial 'b [fail]: blockade: skybox error'
	assert_line --partial 'f [fail]: fal: generation_failed'
	assert_line --partial 'e [exportfail]: blockade: export error'
	# Meshy refunds a failed task; Veo's estimate stays on the job.
	run -0 job_sql "cost_usd || ' ' || cost_source" 'm [fail]'
	assert_output '0.0000 provider'
	run -0 job_sql "cost_usd || ' ' || cost_source" 'v [fail]'
	assert_output '0.4000 estimate'
}

@test "content filters: Gemini IMAGE_SAFETY, Veo RAI, Suno sensitive words, fal policy" {
	local in
	in=$(req nano-banana image 'g [blocked]')$'\n'$(req nano-banana-video video 'v [blocked]' '{"duration_sec":4}')
	in+=$'\n'$(req suno audio_bgm 's [blocked]')$'\n'$(req fal image 'f [blocked]')
	run -1 pipeline <<<"$in"
	run -0 jq -r '.error.message' <<<"$output"
	assert_line --partial 'IMAGE_SAFETY'
	assert_line --partial 'veo filtered the video'
	assert_line --partial 'SENSITIVE_WORD_ERROR'
	assert_line --partial 'content_policy_violation'
}

@test "a job that never finishes times out at the provider's timeout" {
	# Long enough that the pipeline's start (the create, the hand-over to
	# mi-poll) leaves room for the polls counted below on a busy machine.
	local t=$((1500 * MI_TEST_SLOW)) within
	within=$(awk -v t="$t" 'BEGIN { printf "within %.1f s", t / 1000 }')
	MI_FAL_TIMEOUT_MS=$t MI_SUNO_TIMEOUT_MS=$t run -1 pipeline \
	    <<<"$(req fal image 'stuck [never]')"$'\n'"$(req suno audio_bgm 'stuck s [never]')"
	jqok -s 'all(.status == "timed_out" and .error.code == "TIMEOUT" and
	    .error.retryable and (.error.message | contains("'"$within"'")))' \
	    "$output"
	# It was polled at its interval meanwhile (50 ms: about 25 polls),
	# and its progress kept.
	run -0 job_sql "attempts > 5 AND progress > 0" 'stuck [never]'
	assert_output t
}

@test "a slow job reports progress while it runs" {
	run -0 pipeline <<<"$(req meshy model_3d 'slow [slow:800]' '{"refine":false}')"
	run -0 job_sql "attempts >= $((5 / MI_TEST_SLOW)) AND progress = 100" 'slow [slow:800]'
	assert_output t
}

@test "an expired result URL: tried again, then a fresh URL from the provider" {
	local in
	in=$(req meshy model_3d 'x1 [expired]' '{"refine":false}')$'\n'$(req suno audio_bgm 'x2 [expired]')
	in+=$'\n'$(req fal image 'x3 [expired]')$'\n'$(req nano-banana-video video 'x4 [expired]' '{"duration_sec":4}')
	run -0 pipeline <<<"$in"
	[ "${#lines[@]}" -eq 4 ]
	jqok -s 'all(has("content_hash"))' "$output"
	run -0 jq -c 'select(.event == "download" and .provider == "meshy")' \
	    "$FAKE_LOG"
	[ "${#lines[@]}" -ge 3 ]
	jqok '.status == 200' "${lines[-1]}"
	jqok '.status == 403' "${lines[-2]}"
}

@test "a truncated download: tried again, then PROVIDER_ERROR and the job failed" {
	run -0 pipeline <<<"$(req meshy model_3d 'cut once [truncated:1]' '{"refine":false}')"
	jqok 'has("content_hash")' "$output"
	run -1 pipeline <<<"$(req nano-banana-video video 'cut [truncated]' '{"duration_sec":4}')"
	jqok '.status == "failed" and .error.code == "PROVIDER_ERROR" and
	    (.error.message | contains("truncated"))' "$output"
	run -0 job_sql "status || ' ' || error_code || ' ' || (artifact_id IS NULL)" 'cut [truncated]'
	assert_output 'failed PROVIDER_ERROR true'
}

@test "an HTML error page or a wrong type instead of the result: PROVIDER_ERROR, nothing stored" {
	local before
	before=$(find "$ASSET_STORAGE_DIR" -type f | wc -l)
	run -1 pipeline <<<"$(req meshy model_3d 'page [html]' '{"refine":false}')"
	jqok '.error.code == "PROVIDER_ERROR" and
	    .error.message == "the result is an HTML page, not media"' "$output"
	run -1 pipeline <<<"$(req suno audio_bgm 'png [badtype]')"
	jqok '.error.code == "PROVIDER_ERROR" and
	    (.error.message | contains("content is image/png"))' "$output"
	run -1 pipeline <<<"$(req nano-banana image 'mp3 [badtype]')"
	jqok '.error.code == "PROVIDER_ERROR" and
	    (.error.message | contains("audio/mpeg"))' "$output"
	run -1 pipeline <<<"$(req elevenlabs-sfx audio_sfx 'sync page [html]')"
	jqok '.error.code == "PROVIDER_ERROR" and
	    (.error.message | contains("text/html"))' "$output"
	[ "$(find "$ASSET_STORAGE_DIR" -type f -not -path '*/.spool/*' | wc -l)" -le "$before" ]
	run -0 find "$ASSET_STORAGE_DIR" -name '.tmp*'
	assert_output ''
}

@test "a create whose answer never comes is not sent again: submit_unknown, for mi-recover" {
	MI_MESHY_TIMEOUT_MS=1000 run -1 --separate-stderr mi-submit \
	    <<<"$(req meshy model_3d 'lost [hang:3000]')"
	jqok '.status == "processing" and .submit_unknown and
	    .provider_job_id == null and .submit_count == 1 and
	    .lease_owner == null and .error.code == "TIMEOUT" and
	    .error.retryable and (.error.message | contains("not sent again"))' \
	    "$output"
	[ "$(attempts 'lost [hang:3000]')" -eq 1 ]
	[ "$(stat '.creates_by_prompt["lost [hang:3000]"]')" -eq 1 ]
	# mi-poll does not send it either.
	run -1 --separate-stderr mi-poll <<<"$(jq -c 'del(.error)' <<<"$output")"
	jqok '.error.code == "TIMEOUT"' "$output"
	[ "$(attempts 'lost [hang:3000]')" -eq 1 ]
}

@test "a synchronous answer cut short is not sent again blindly (mi-recover's policy decides); a refused key is CONFIG_ERROR for every provider" {
	run -1 pipeline <<<"$(req elevenlabs-sfx audio_sfx 'cut sync [truncated]')"
	jqok '.error.code == "TIMEOUT" and .submit_unknown and
	    (.error.message | contains("truncated"))' "$output"
	[ "$(attempts 'cut sync [truncated]')" -eq 1 ]
	local p in=
	for p in "meshy model_3d" "nano-banana image" "nano-banana-video video" \
	    "suno audio_bgm" "elevenlabs-sfx audio_sfx" \
	    "blockade-skybox environment_map" "fal image"; do
		in+=$(req ${p% *} ${p#* } "wrong key for ${p% *}")$'\n'
	done
	MESHY_API_KEY=x GEMINI_API_KEY=x SUNO_API_KEY=x ELEVENLABS_API_KEY=x \
	    BLOCKADE_API_KEY=x FAL_KEY=x run -78 --separate-stderr mi-submit <<<"$in"
	[ "${#lines[@]}" -eq 7 ]
	jqok -s 'all(.status == "failed" and .error.code == "CONFIG_ERROR" and
	    (.error.message | test("refused the key in [A-Z_]+")))' "$output"
}
