# What the generation-job tests share: the fake provider server, every
# shipped definition pointed at it through the MI_<ID>_* variables (short
# intervals and timeouts are data, not sleeps), keys, and requests.
#
#	load test_helper
#	load jobs_helper
#	setup_file() { jobs_setup_file [fake options]; }
#	teardown_file() { fake_stop; }

load fake/fake

PROVIDER_IDS="MESHY NANO_BANANA_VIDEO NANO_BANANA SUNO ELEVENLABS_SFX
BLOCKADE_SKYBOX FAL REPLICATE LOCAL"

# jobs_env: keys and overrides for every provider (the fake must run).
jobs_env() {
	local id
	export MESHY_API_KEY=$FAKE_KEY GEMINI_API_KEY=$FAKE_KEY \
	    SUNO_API_KEY=$FAKE_KEY ELEVENLABS_API_KEY=$FAKE_KEY \
	    BLOCKADE_API_KEY=$FAKE_KEY FAL_KEY=$FAKE_KEY \
	    REPLICATE_API_TOKEN=$FAKE_KEY
	export MI_MESHY_BASE_URL=$FAKE_URL/meshy \
	    MI_NANO_BANANA_VIDEO_BASE_URL=$FAKE_URL/gemini \
	    MI_NANO_BANANA_BASE_URL=$FAKE_URL/gemini \
	    MI_SUNO_BASE_URL=$FAKE_URL/suno \
	    MI_ELEVENLABS_SFX_BASE_URL=$FAKE_URL/elevenlabs \
	    MI_BLOCKADE_SKYBOX_BASE_URL=$FAKE_URL/blockade \
	    MI_FAL_BASE_URL=$FAKE_URL/fal MI_FAL_API_URL=$FAKE_URL/falapi \
	    MI_REPLICATE_BASE_URL=$FAKE_URL/replicate
	for id in $PROVIDER_IDS; do
		export "MI_${id}_POLL_INTERVAL_MS=50" "MI_${id}_TIMEOUT_MS=$((20000 * MI_TEST_SLOW))"
	done
	# Retries after 50 ms, not seconds; failures never cool a provider
	# down unless a test asks.
	export MI_FETCH_BACKOFF_MS=50 MI_SLOT_POLL_MS=300 MI_ALLOWED_FAILS=1000 \
	    MI_LOOKUP_SETTLE_MS=300
	unset MI_ROUTING_FILE MI_PROVIDERS_DIR
}

# jobs_setup_file [fake options]: database, store, fake, environment.
jobs_setup_file() {
	mi_setup_db
	mi_setup_store
	fake_start --job-ms 150 "$@"
	jobs_env
	export RUN_ID=$(uuid)
}

# req PROVIDER MEDIA PROMPT [PARAMS] [MORE]: a request record for tenant
# $TENANT (default org_a), without fallback unless MORE names one.
req() {
	jq -nc --arg p "$1" --arg m "$2" --arg t "$3" \
	    --argjson params "${4:-"{}"}" --argjson more "${5:-"{}"}" \
	    --arg run "$RUN_ID" --arg tenant "${TENANT:-org_a}" \
	    '{tenant_id: $tenant, run_id: $run, media_type: $m, prompt: $t,
	      params: $params, provider_id: $p, fallback: []} + $more'
}

# pipeline: mi-submit | mi-poll | mi-fetch, each program's stderr kept in
# $BATS_TEST_TMPDIR/{submit,poll,fetch}.err; the status is mi-fetch's.
pipeline() {
	mi-submit 2>"$BATS_TEST_TMPDIR/submit.err" |
	    mi-poll 2>"$BATS_TEST_TMPDIR/poll.err" |
	    mi-fetch 2>"$BATS_TEST_TMPDIR/fetch.err"
}

# The stderr of the last pipeline.
pipeline_err() {
	cat "$BATS_TEST_TMPDIR/submit.err" "$BATS_TEST_TMPDIR/poll.err" \
	    "$BATS_TEST_TMPDIR/fetch.err"
}

# job_sql 'expr' 'prompt': expr of the newest job whose prompt is prompt.
job_sql() {
	sql "SELECT $1 FROM app.generation_jobs
	    WHERE request->>'prompt' = '$2' ORDER BY created_at DESC LIMIT 1"
}

# job_count 'prompt': how many jobs have that prompt.
job_count() {
	sql "SELECT count(*) FROM app.generation_jobs
	    WHERE request->>'prompt' = '$1'"
}

# stat KEY: a field of the fake's statistics (jq path).
stat() {
	fake_stats | jq -c "$1"
}

# The path in the store of an artifact record.
stored_path() {
	jq -r '.uri' <<<"$1" | sed "s|^/api/assets|$ASSET_STORAGE_DIR|"
}

# jqok FILTER JSON...: jq -e FILTER holds on the JSON (slurped when -s is
# the first argument); prints both when it does not.  No JSON at all
# fails (jq -e alone says yes to an empty input).
jqok() {
	local slurp=
	if [ "$1" = -s ]; then
		slurp=-s
		shift
	fi
	if [ -z "$slurp" ] && [ -z "$(tr -d ' \t\n' <<<"$2")" ]; then
		echo "jq -e '$1': no JSON to check" >&2
		return 1
	fi
	if ! jq $slurp -e "$1" <<<"$2" >/dev/null; then
		echo "jq -e '$1' does not hold on:" >&2
		echo "$2" >&2
		return 1
	fi
}
