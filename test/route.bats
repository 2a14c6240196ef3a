#!/usr/bin/env bats
# mi-route: every media type routed by the routing table alone, providers
# whose definition refuses the request skipped without sending anything,
# a request that names its provider passed untouched, and a swap of
# providers that is an edit of the routing table, never of the requests.

load test_helper
load jobs_helper

setup_file() {
	jobs_setup_file
}

teardown_file() {
	fake_stop
}

setup() {
	unset MI_ROUTING_FILE
}

# r MEDIA PARAMS [MORE]: a request without provider_id.
r() {
	jq -nc --arg m "$1" --argjson params "${2:-"{}"}" \
	    --argjson more "${3:-"{}"}" --arg run "$RUN_ID" \
	    '{tenant_id: "org_r", run_id: $run, media_type: $m,
	      prompt: "route \($m) \($params | tostring)", params: $params} + $more'
}

all_seven() {
	r video '{"duration_sec":8,"aspect_ratio":"16:9"}'
	r audio_sfx '{"duration_sec":1.5,"sfx_type":"win"}'
	r audio_bgm '{"duration_sec":30,"genre":"pop"}'
	r model_3d '{"max_triangles":20000}'
	r image '{"width":1024,"height":1024}'
	r texture '{"width":1024,"height":1024,"seamless":true}'
	r environment_map '{"width":2048}'
}

@test "--help, --version and a bad option" {
	run -0 mi-route --help
	assert_line --index 0 --partial 'usage: mi-route [-av]'
	run -0 mi-route --version
	assert_output 'mi-route 0.1.0'
	run -64 --separate-stderr mi-route --bogus
	[[ $stderr == *"mi-route: unknown option '--bogus'"* ]]
	run -64 --separate-stderr mi-route extra
	[[ $stderr == *"unexpected argument 'extra'"* ]]
}

@test "every media type gets its provider and fallbacks from the shipped routing table" {
	run -0 --separate-stderr mi-route <<<"$(all_seven)"
	[ "${#lines[@]}" -eq 7 ]
	jqok -s 'map([.media_type, .provider_id, .fallback]) == [
	    ["video", "nano-banana-video", ["fal", "local"]],
	    ["audio_sfx", "elevenlabs-sfx", ["local"]],
	    ["audio_bgm", "suno", ["local"]],
	    ["model_3d", "meshy", ["local"]],
	    ["image", "nano-banana", ["fal", "local"]],
	    ["texture", "nano-banana", ["local"]],
	    ["environment_map", "blockade-skybox", ["local"]]]' "$output"
	[ -z "$stderr" ]
}

@test "every media type without provider_id, routed, made and stored against the fake" {
	local t=$BATS_TEST_TMPDIR/routing.json
	run -0 --separate-stderr mi-route <<<"$(all_seven)"
	run -0 pipeline <<<"$output"
	[ "${#lines[@]}" -eq 7 ]
	jqok -s 'map(select(.error)) == [] and
	    (map(.metadata.provider_id) | sort) == (["blockade-skybox",
	    "elevenlabs-sfx", "meshy", "nano-banana", "nano-banana",
	    "nano-banana-video", "suno"] | sort)' "$output"
	# Nothing was routed to a provider for a media type it does not make.
	jqok -s 'all(.metadata.media.kind != null)' "$output"
}

@test "a 12 s 1:1 video skips Veo (4, 6 or 8 s; 16:9 or 9:16) for the first provider that accepts it" {
	run -0 --separate-stderr mi-route -v <<<"$(r video \
	    '{"duration_sec":12,"aspect_ratio":"1:1"}' '{"fallback":["local"]}')"
	jqok '.provider_id == "local" and .fallback == []' "$output"
	[[ $stderr == *"skipping 'nano-banana-video': params.duration_sec must be"* ]]
	local routed=$output
	# Without its own fallback, the table's: fal is next and accepts.
	run -0 --separate-stderr mi-route <<<"$(r video \
	    '{"duration_sec":12,"aspect_ratio":"1:1"}')"
	jqok '.provider_id == "fal" and .fallback == ["local"]' "$output"
	# Skipped without spending: Veo was never called.
	fake_reset
	run -0 pipeline <<<"$routed"
	jqok '.metadata.provider_id == "local" and
	    (.metadata.media.duration_sec - 12 | fabs) < 0.5 and
	    .metadata.media.width == .metadata.media.height and
	    .metadata.warnings == null' "$output"
	[ "$(stat '.attempts_by_prompt | to_entries | map(select(.key | test("route video"))) | length')" = 0 ]
}

@test "a request that names its provider passes untouched" {
	local in
	in=$(r video '{"duration_sec":12}' '{"provider_id":"nano-banana-video","fallback":["local"]}')
	run -0 --separate-stderr mi-route <<<"$in"
	[ "$output" = "$in" ]
}

@test "no provider of the route accepts: a VALIDATION_ERROR naming each refusal" {
	run -1 --separate-stderr mi-route <<<"$(r video '{"duration_sec":30}' '{"fallback":["nano-banana-video"]}')"
	jqok '.error.code == "VALIDATION_ERROR" and
	    (.error.message | test("no provider of the video route accepts the request: nano-banana-video: params.duration_sec must be"))
	    and (has("provider_id") | not)' "$output"
	run -1 --separate-stderr mi-route <<<'{"media_type":"hologram"}
{"prompt":"x"}'
	jqok -s 'map(.error.code) == ["VALIDATION_ERROR", "VALIDATION_ERROR"] and
	    (.[0].error.message | test("hologram"))' "$output"
}

@test "a configuration swap changes providers without touching the requests" {
	local t=$BATS_TEST_TMPDIR/swap.json in
	in=$(all_seven)
	jq '.image = {"provider_id": "fal", "fallback": ["local"]}
	    | .model_3d = {"provider_id": "local", "fallback": []}
	    | .video.provider_id = "local" | .video.fallback = []
	    | .audio_bgm = {"provider_id": "fal", "fallback": ["suno"]}' \
	    "$MI_SHAREDIR/routing.json" >"$t"
	run -0 --separate-stderr mi-route <<<"$in"
	local before=$output
	MI_ROUTING_FILE=$t run -0 --separate-stderr mi-route <<<"$in"
	jqok -s 'map(.provider_id) == ["local", "elevenlabs-sfx", "fal",
	    "local", "fal", "nano-banana", "blockade-skybox"] and
	    .[2].fallback == ["suno"]' "$output"
	# Only provider_id and fallback differ.
	[ "$(jq -c 'del(.provider_id, .fallback)' <<<"$before")" = \
	    "$(jq -c 'del(.provider_id, .fallback)' <<<"$output")" ]
	run -0 --separate-stderr mi-route --routing "$t" <<<"$in"
	jqok -s '.[0].provider_id == "local"' "$output"
}

@test "a definition that is broken is skipped; an id without one is left to mi-submit" {
	local d=$BATS_TEST_TMPDIR/providers t=$BATS_TEST_TMPDIR/r.json
	cp -r "$MI_SHAREDIR/providers" "$d"
	echo 'def provider: {id: "broken", media_types: ["image"]}; def validate: [' \
	    >"$d/broken.jq"
	echo '{"audio_sfx":{"provider_id":"elevenlabs-sfx"},"audio_bgm":{"provider_id":"suno"},
	    "image":{"provider_id":"broken","fallback":["nobody","local"]}}' >"$t"
	MI_PROVIDERS_DIR=$d run -0 --separate-stderr mi-route -v --routing "$t" \
	    <<<"$(r image '{"width":1024,"height":1024}')"
	jqok '.provider_id == "nobody" and .fallback == ["local"]' "$output"
	[[ $stderr == *"skipping 'broken'"* ]]
	# The table has no route for video.
	MI_PROVIDERS_DIR=$d run -1 --separate-stderr mi-route --routing "$t" \
	    <<<"$(r video '{"duration_sec":8}')"
	jqok '.error.message | test("no route for video")' "$output"
	# An audio route is required.
	echo '{"image":{"provider_id":"local"}}' >"$t"
	run -78 --separate-stderr mi-route --routing "$t" </dev/null
	[[ $stderr == *"'audio_sfx' needs a provider_id"* ]]
}

@test "mi-route-audio is mi-route's audio mode, skipping refusing providers too" {
	local t=$BATS_TEST_TMPDIR/audio.json
	run -0 --separate-stderr mi-route --audio <<<"$(r audio_sfx '{"duration_sec":1,"sfx_type":"win"}')"
	jqok '.provider_id == "elevenlabs-sfx"' "$output"
	run -1 --separate-stderr mi-route --audio <<<"$(r video '{"duration_sec":8}')"
	jqok '.error.message | test("not an audio type")' "$output"
	echo '{"audio_sfx":{"provider_id":"suno","fallback":["elevenlabs-sfx","local"]},
	    "audio_bgm":{"provider_id":"suno"}}' >"$t"
	run -0 --separate-stderr mi-route-audio -v --routing "$t" \
	    <<<"$(r audio_sfx '{"duration_sec":1,"sfx_type":"win"}')"
	jqok '.provider_id == "elevenlabs-sfx" and .fallback == ["local"]' "$output"
	[[ $stderr == *"mi-route-audio: record 1: skipping 'suno': does not make audio_sfx"* ]]
}
