#!/usr/bin/env bats
# mi-route-audio: validation of sound-effect and music requests and routing
# from the routing table (share/routing.json, MI_ROUTING_FILE, --routing).

load test_helper

setup() {
	unset MI_ROUTING_FILE
}

sfx() {
	printf '{"tenant_id":"org_a","run_id":"%s","run_step_id":"%s","media_type":"audio_sfx","prompt":"p","params":{"duration_sec":%s,"sfx_type":"%s"}}\n' \
	    "$(uuid)" "$(uuid)" "$1" "$2"
}

bgm() {
	printf '{"tenant_id":"org_a","run_id":"%s","run_step_id":"%s","media_type":"audio_bgm","prompt":"p","params":{"duration_sec":%s,"genre":"%s","instrumental":%s}}\n' \
	    "$(uuid)" "$(uuid)" "$1" "$2" "${3:-true}"
}

@test "--help, --version and a bad option" {
	run -0 mi-route-audio --help
	assert_line --index 0 --partial 'usage: mi-route-audio'
	run -0 mi-route-audio --version
	assert_output 'mi-route-audio 0.1.0'
	run -64 --separate-stderr mi-route-audio --bogus
	[[ $stderr == *"mi-route-audio: unknown option '--bogus'"* ]]
	[ -z "$output" ]
	run -64 --separate-stderr mi-route-audio extra
	[[ $stderr == *"unexpected argument 'extra'"* ]]
}

@test "every SFX type goes to elevenlabs-sfx with local as fallback" {
	local t in=
	for t in click spin flip scratch match win lose countdown reveal confetti; do
		in+=$(sfx 1.5 "$t")$'\n'
	done
	run -0 --separate-stderr mi-route-audio <<<"$in"
	[ "${#lines[@]}" -eq 10 ]
	run -0 jq -s -e 'length == 10 and all(.provider_id == "elevenlabs-sfx"
	    and .fallback == ["local"] and .media_type == "audio_sfx"
	    and .params.duration_sec == 1.5 and (has("error") | not))
	    and (map(.params.sfx_type) == ["click","spin","flip","scratch",
	    "match","win","lose","countdown","reveal","confetti"])' <<<"$output"
}

@test "every genre goes to suno; instrumental reaches the output unchanged" {
	local g in=
	for g in electronic orchestral rock jazz ambient pop hip-hop; do
		in+=$(bgm 60 "$g" true)$'\n'
	done
	in+=$(bgm 60 jazz false)$'\n'
	run -0 --separate-stderr mi-route-audio <<<"$in"
	run -0 jq -s -e 'length == 8 and all(.provider_id == "suno"
	    and .fallback == ["local"] and .media_type == "audio_bgm")
	    and (map(.params.genre) == ["electronic","orchestral","rock",
	    "jazz","ambient","pop","hip-hop","jazz"])
	    and (map(.params.instrumental) == [true,true,true,true,true,true,
	    true,false])' <<<"$output"
}

@test "SFX durations: 0.5 and 5 pass, 0.49 and 5.01 are refused" {
	local in
	in=$(sfx 0.5 click; sfx 5 win; sfx 0.49 click; sfx 5.01 win)
	run -1 --separate-stderr mi-route-audio <<<"$in"
	[ "${#lines[@]}" -eq 4 ]
	run -0 jq -s -e '
	    (.[0] | .provider_id == "elevenlabs-sfx" and (has("error") | not)) and
	    (.[1] | .provider_id == "elevenlabs-sfx" and (has("error") | not)) and
	    (.[2] | .error.code == "VALIDATION_ERROR" and
	        (.error.message | test("0.49 is out of range.*0.5 to 5"))
	        and (has("provider_id") | not) and .params.duration_sec == 0.49) and
	    (.[3] | .error.code == "VALIDATION_ERROR" and .error.retryable == false and
	        (.error.message | test("5.01 is out of range")))' <<<"$output"
	[[ $stderr == *"mi-route-audio: warning: record 3: params.duration_sec 0.49"* ]]
}

@test "BGM durations: 30 and 120 pass, 29.9 and 120.1 are refused" {
	local in
	in=$(bgm 30 rock; bgm 120 pop; bgm 29.9 rock; bgm 120.1 pop)
	run -1 --separate-stderr mi-route-audio <<<"$in"
	run -0 jq -s -e '
	    (.[0] | .provider_id == "suno" and (has("error") | not)) and
	    (.[1] | .provider_id == "suno" and (has("error") | not)) and
	    (.[2] | .error.code == "VALIDATION_ERROR" and
	        (.error.message | test("29.9 is out of range.*30 to 120"))) and
	    (.[3] | .error.code == "VALIDATION_ERROR" and
	        (.error.message | test("120.1 is out of range")))' <<<"$output"
}

@test "an unknown SFX type or genre is an error naming the allowed ones" {
	run -1 --separate-stderr mi-route-audio <<<"$(sfx 1 boom; bgm 60 polka)"
	run -0 jq -s -e '
	    (.[0].error | .code == "VALIDATION_ERROR" and .message ==
	    "record 1: params.sfx_type '"'boom'"' is not one of click, spin, flip, scratch, match, win, lose, countdown, reveal, confetti") and
	    (.[1].error | .code == "VALIDATION_ERROR" and .message ==
	    "record 2: params.genre '"'polka'"' is not one of electronic, orchestral, rock, jazz, ambient, pop, hip-hop")' <<<"$output"
}

@test "missing or mistyped parameters are validation errors" {
	run -1 --separate-stderr mi-route-audio <<'EOF2'
{"media_type":"audio_sfx","params":{"sfx_type":"click"}}
{"media_type":"audio_sfx","params":{"duration_sec":"2","sfx_type":"click"}}
{"media_type":"audio_bgm","params":{"duration_sec":60}}
{"media_type":"audio_bgm","params":{"duration_sec":60,"genre":"pop","instrumental":"yes"}}
{"media_type":"audio_sfx","params":"short"}
{"media_type":"video","params":{"duration_sec":8}}
{"prompt":"no type at all"}
{"media_type":"audio_bgm","audio_type":"sfx"}
{"audio_type":"speech"}
EOF2
	run -0 jq -s -e 'length == 9 and all(.error.code == "VALIDATION_ERROR")
	    and (map(.error.message | sub("^record [0-9]+: "; "")) == [
	    "missing key '"'params.duration_sec'"' (audio_sfx: 0.5 to 5 seconds)",
	    "params.duration_sec is not a number",
	    "missing key '"'params.genre'"' (one of electronic, orchestral, rock, jazz, ambient, pop, hip-hop)",
	    "params.instrumental is not a boolean",
	    "params is not an object",
	    "media_type '"'video'"' is not an audio type (audio_sfx, audio_bgm)",
	    "missing key '"'media_type'"' (audio_sfx or audio_bgm) or '"'audio_type'"' (sfx or bgm)",
	    "media_type '"'audio_bgm'"' disagrees with audio_type '"'sfx'"'",
	    "audio_type '"'speech'"' is not one of sfx, bgm"])' <<<"$output"
}

@test "audio_type sfx/bgm and top-level parameters are accepted" {
	run -0 --separate-stderr mi-route-audio <<'EOF2'
{"audio_type":"sfx","duration_sec":2,"sfx_type":"spin","prompt":"wheel"}
{"audio_type":"bgm","prompt":"calm","params":{"duration_sec":90,"genre":"ambient"},"instrumental":true}
EOF2
	run -0 jq -s -e '
	    (.[0] | .media_type == "audio_sfx" and .provider_id == "elevenlabs-sfx"
	        and .params == {"duration_sec":2,"sfx_type":"spin"}
	        and (has("duration_sec") | not) and .prompt == "wheel") and
	    (.[1] | .media_type == "audio_bgm" and .provider_id == "suno"
	        and .params.instrumental == true and (has("instrumental") | not))' <<<"$output"
}

@test "a request naming its provider keeps it and its fallback" {
	run -0 --separate-stderr mi-route-audio <<'EOF2'
{"media_type":"audio_sfx","params":{"duration_sec":1,"sfx_type":"flip"},"provider_id":"local"}
{"media_type":"audio_bgm","params":{"duration_sec":60,"genre":"rock"},"provider_id":"suno","fallback":["udio","local"]}
{"media_type":"audio_bgm","prompt":"riff","params":{"duration_sec":60,"genre":"rock"},"fallback":[]}
EOF2
	run -0 jq -s -e '
	    (.[0] | .provider_id == "local" and .fallback == []) and
	    (.[1] | .provider_id == "suno" and .fallback == ["udio","local"]) and
	    (.[2] | .provider_id == "suno" and .fallback == [])' <<<"$output"
	run -1 --separate-stderr mi-route-audio <<'EOF2'
{"media_type":"audio_sfx","params":{"duration_sec":1,"sfx_type":"flip"},"provider_id":7}
{"media_type":"audio_sfx","params":{"duration_sec":1,"sfx_type":"flip"},"fallback":"local"}
EOF2
	run -0 jq -s -e 'map(.error.message) == [
	    "record 1: provider_id is not a provider id",
	    "record 2: fallback is not an array of provider ids"]' <<<"$output"
}

@test "swapping providers is an edit of the routing table" {
	local t=$BATS_TEST_TMPDIR/routing.json
	jq '.audio_sfx = {"provider_id":"stable-audio","fallback":["elevenlabs-sfx","local"]}
	    | .audio_bgm.provider_id = "udio"' "$MI_SHAREDIR/routing.json" >"$t"
	run -0 --separate-stderr mi-route-audio <<<"$(sfx 1 win; bgm 60 pop)"
	run -0 jq -s -e 'map(.provider_id) == ["elevenlabs-sfx","suno"]' <<<"$output"
	MI_ROUTING_FILE=$t run -0 --separate-stderr mi-route-audio <<<"$(sfx 1 win; bgm 60 pop)"
	run -0 jq -s -e '(.[0] | .provider_id == "stable-audio" and
	    .fallback == ["elevenlabs-sfx","local"]) and
	    (.[1] | .provider_id == "udio" and .fallback == ["local"])' <<<"$output"
	run -0 --separate-stderr mi-route-audio --routing "$t" <<<"$(bgm 60 pop)"
	run -0 jq -e '.provider_id == "udio"' <<<"$output"
}

@test "an unusable routing table is a configuration error (78)" {
	local t=$BATS_TEST_TMPDIR/bad.json
	MI_ROUTING_FILE=$BATS_TEST_TMPDIR/none.json run -78 --separate-stderr \
	    mi-route-audio <<<"$(sfx 1 win)"
	[[ $stderr == *"unable to load routing table"* ]]
	[ -z "$output" ]
	echo '{"audio_sfx":' >"$t"
	MI_ROUTING_FILE=$t run -78 --separate-stderr mi-route-audio </dev/null
	echo '{"audio_sfx":{"provider_id":"x"}}' >"$t"
	MI_ROUTING_FILE=$t run -78 --separate-stderr mi-route-audio </dev/null
	[[ $stderr == *"'audio_bgm' needs a provider_id"* ]]
	echo '{"audio_sfx":{"provider_id":"x","fallback":"local"},"audio_bgm":{"provider_id":"y"}}' >"$t"
	MI_ROUTING_FILE=$t run -78 --separate-stderr mi-route-audio </dev/null
	[[ $stderr == *"'audio_sfx' fallback is not an array"* ]]
}

@test "bad JSON in the stream becomes an error record and reading goes on" {
	local in
	in=$(sfx 1 click; echo '{"media_type": audio_sfx}'; echo '[1,2'; echo ']';
	    echo '{"error":{"code":"TIMEOUT","message":"earlier","retryable":true}}';
	    bgm 45 jazz)
	run -1 --separate-stderr mi-route-audio <<<"$in"
	run -0 jq -s -e 'length == 5 and
	    (.[0].provider_id == "elevenlabs-sfx") and
	    (.[1].error.code == "INVALID_JSON") and
	    (.[2].error.code == "VALIDATION_ERROR" and
	        (.[2].error.message | endswith("not an object"))) and
	    (.[3] == {"error":{"code":"TIMEOUT","message":"earlier","retryable":true}}) and
	    (.[4].provider_id == "suno")' <<<"$output"
	[[ $stderr == *"mi-route-audio: warning: record 2"* ]]
}

@test "output pipes back into mi-route-audio unchanged" {
	run -0 --separate-stderr mi-route-audio <<<"$(sfx 2 reveal; bgm 60 electronic)"
	local once=$output
	run -0 --separate-stderr mi-route-audio <<<"$once"
	[ "$output" = "$once" ]
}
