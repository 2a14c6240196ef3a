#!/usr/bin/env bats
# Every stored result is probed and checked against its request: media
# facts in metadata.media (checked here against ffprobe and the Khronos
# glTF validator), named warnings for results that miss their request
# (the fake provider breaks each promise on a marker), strict requests
# falling back, and models over their triangle budget simplified with
# gltfpack, validated and rendered in headless Chromium.

load test_helper
load jobs_helper

setup_file() {
	jobs_setup_file
	export MI_NODE_MODULES="$BATS_TEST_DIRNAME/node_modules"
}

teardown_file() {
	fake_stop
	local pid
	pid=$(cat "$BATS_FILE_TMPDIR/web.pid" 2>/dev/null) || return 0
	kill -TERM "$pid" 2>/dev/null || true
}

# validate FILE: the glTF validator's report, reduced.
validate() {
	node -e '
const v = require(process.env.MI_NODE_MODULES + "/gltf-validator");
const fs = require("fs");
v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[1])),
    { maxIssues: 20 }).then((r) => console.log(JSON.stringify({
	errors: r.issues.numErrors, triangles: r.info.totalTriangleCount,
	materials: r.info.materialCount, extensions: r.info.extensionsUsed || [],
	messages: r.issues.messages.filter((m) => m.severity === 0) })));
' "$1"
}

@test "local results of every media type carry facts that agree with ffprobe and the glTF validator" {
	local art f
	run -0 pipeline <<<"$(req local video 'facts video' \
	    '{"duration_sec":4,"aspect_ratio":"16:9","resolution":"720p"}')"
	art=$output
	f=$(stored_path "$art")
	jqok '.metadata.media.kind == "video" and .metadata.media.format == "mp4"
	    and .metadata.warnings == null' "$art"
	ffprobe -v error -print_format json -show_streams -show_format "$f" \
	    >"$BATS_TEST_TMPDIR/ff.json"
	jq -e --argjson m "$(jq .metadata.media <<<"$art")" '
	    (.streams[] | select(.codec_type == "video")) as $v
	    | $m.width == $v.width and $m.height == $v.height and
	      $m.video_codec == $v.codec_name and
	      ($m.duration_sec - (.format.duration | tonumber) | fabs) < 0.01
	      and $m.fps == 30 and $m.has_audio == false' "$BATS_TEST_TMPDIR/ff.json"

	run -0 pipeline <<<"$(req local audio_bgm 'facts bgm' '{"duration_sec":30}')"
	art=$output
	f=$(stored_path "$art")
	ffprobe -v error -print_format json -show_streams -show_format "$f" \
	    >"$BATS_TEST_TMPDIR/ff.json"
	jq -e --argjson m "$(jq .metadata.media <<<"$art")" '
	    .streams[0] as $a
	    | $m.kind == "audio" and $m.sample_rate == ($a.sample_rate | tonumber)
	      and $m.channels == $a.channels and $m.codec == $a.codec_name and
	      ($m.duration_sec - (.format.duration | tonumber) | fabs) < 0.01' \
	    "$BATS_TEST_TMPDIR/ff.json"
	jqok '.metadata.warnings == null and
	    (.metadata.media.duration_sec - 30 | fabs) < 3' "$art"

	run -0 pipeline <<<"$(req local model_3d 'facts wheel' '{"max_triangles":20000}')"
	art=$output
	f=$(stored_path "$art")
	run -0 validate "$f"
	jq -e --argjson m "$(jq .metadata.media <<<"$art")" '
	    .errors == 0 and $m.triangles == .triangles and
	    $m.materials == .materials and $m.meshes == 1 and
	    $m.pbr == {"base_color": true, "metallic_roughness": true,
	               "normal": true, "occlusion": false, "emissive": false} and
	    ($m.textures | map([.width, .height]) | unique) == [[1024, 1024]] and
	    ($m.bbox.max[1] > $m.bbox.min[1])' <<<"$output"
	jqok '.metadata.warnings == null and .metadata.simplified_from == null' "$art"

	run -0 pipeline <<<"$(req local image 'facts image' '{"width":640,"height":512}')"
	jqok '.metadata.media == {"kind":"image","format":"png","width":640,
	    "height":512,"channels":3} and .metadata.warnings == null' "$output"
	f=$(stored_path "$output")
	[ "$(python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(24); print("%dx%d" % struct.unpack(">II", b[16:24]))' "$f")" = 640x512 ]

	run -0 pipeline <<<"$(req local environment_map 'facts sky' '{"width":512}')"
	jqok '.metadata.media.kind == "environment_map" and
	    .metadata.media.width == 512 and .metadata.media.height == 256' "$output"
	head -c 200 "$(stored_path "$output")" | grep -aq -- '-Y 256 +X 512'

	run -0 pipeline <<<"$(req local audio_sfx 'facts click' '{"duration_sec":1,"sfx_type":"click"}')"
	jqok '.metadata.media.sample_rate == 44100 and .metadata.media.channels == 1
	    and (.metadata.media.duration_sec - 1 | fabs) < 0.5' "$output"
}

@test "results that miss their request are stored with named warnings" {
	local art
	# Gemini 2.5's flash image model makes 1K whatever is asked.
	MI_NANO_BANANA_MODEL=gemini-2.5-flash-image run -0 pipeline \
	    <<<"$(req nano-banana image 'warn big' '{"width":4096,"height":4096}')"
	art=$output
	jqok '.metadata.media.width == 1024 and .metadata.media.height == 1024 and
	    [.metadata.warnings[].code] == ["SIZE_MISMATCH"] and
	    (.metadata.warnings[0].message | test("4096x4096.*1024x1024"))' "$art"
	grep -q 'SIZE_MISMATCH: asked for 4096x4096, got 1024x1024' \
	    "$BATS_TEST_TMPDIR/fetch.err"
	[ "$(sql "SELECT metadata->'warnings'->0->>'code' FROM app.artifacts
	    WHERE id = '$(jq -r .id <<<"$art")'")" = SIZE_MISMATCH ]

	# A track 40 % short.
	run -0 pipeline <<<"$(req elevenlabs-sfx audio_sfx 'warn short [short]' '{"duration_sec":5}')"
	jqok '(.metadata.media.duration_sec - 3 | fabs) < 0.1 and
	    [.metadata.warnings[].code] == ["DURATION_MISMATCH"]' "$output"
	# The same provider keeping its promise: no warning.
	run -0 pipeline <<<"$(req elevenlabs-sfx audio_sfx 'warn right' '{"duration_sec":5}')"
	jqok '(.metadata.media.duration_sec - 5 | fabs) < 0.1 and
	    .metadata.warnings == null' "$output"

	# A video without the asked aspect (the fake's clip is 4:3).
	run -0 pipeline <<<"$(req fal video 'warn aspect' '{"duration_sec":5,"aspect_ratio":"16:9"}')"
	jqok '.metadata.media.width == 320 and .metadata.media.height == 240 and
	    ([.metadata.warnings[].code] | index("ASPECT_MISMATCH")) != null' "$output"
}

@test "the step's debug output gets the warnings; a strict step keeps the refused result's" {
	local step
	step=$(uuid)
	MI_NANO_BANANA_MODEL=gemini-2.5-flash-image run -0 pipeline \
	    <<<"$(req nano-banana image 'debug big' \
	    '{"width":2048,"height":2048}' "{\"run_step_id\":\"$step\"}")"
	jqok '[.metadata.warnings[].code] == ["SIZE_MISMATCH"]' "$output"
	[ "$(sql "SELECT debug->'warnings'->0->>'code' FROM app.run_steps
	    WHERE id = '$step'")" = SIZE_MISMATCH ]
	# Always on stderr too, the debug output of the programs.
	grep -q "SIZE_MISMATCH" "$BATS_TEST_TMPDIR/fetch.err"
	step=$(uuid)
	run -0 pipeline <<<"$(req elevenlabs-sfx audio_sfx 'debug strict [short]' \
	    '{"duration_sec":4}' "{\"fallback\":[\"local\"],\"strict\":true,
	    \"run_step_id\":\"$step\"}")"
	jqok '.metadata.provider_id == "local"' "$output"
	[ "$(sql "SELECT debug->'rejected'->0->'warnings'->0->>'code'
	    FROM app.run_steps WHERE id = '$step'")" = DURATION_MISMATCH ]
	[ "$(sql "SELECT coalesce(debug->'warnings', '[]'::jsonb)
	    FROM app.run_steps WHERE id = '$step'")" = "[]" ]
}

@test "strict: a result that misses its request is a PROVIDER_ERROR and the next provider makes it" {
	local art
	run -0 pipeline <<<"$(req elevenlabs-sfx audio_sfx 'strict short [short]' \
	    '{"duration_sec":4}' '{"fallback":["local"],"strict":true}')"
	art=$output
	jqok '.metadata.provider_id == "local" and .metadata.warnings == null and
	    (.metadata.media.duration_sec - 4 | fabs) < 0.5' "$art"
	[ "$(job_sql "status || ' ' || coalesce(error_code, '-')" 'strict short [short]')" = "completed -" ]
	[ "$(sql "SELECT status || ' ' || error_code FROM app.generation_jobs
	    WHERE request->>'prompt' = 'strict short [short]' AND
	    provider_id = 'elevenlabs-sfx'")" = "failed PROVIDER_ERROR" ]
	sql "SELECT error_message FROM app.generation_jobs
	    WHERE request->>'prompt' = 'strict short [short]' AND
	    provider_id = 'elevenlabs-sfx'" | grep -q DURATION_MISMATCH
	grep -q 'strict: the result misses its request' "$BATS_TEST_TMPDIR/fetch.err"

	# No provider left: an error record, exit 1, nothing linked.
	run -1 pipeline <<<"$(req elevenlabs-sfx audio_sfx 'strict alone [short]' \
	    '{"duration_sec":4}' '{"strict":true}')"
	jqok '.error.code == "PROVIDER_ERROR" and
	    (.error.message | test("DURATION_MISMATCH")) and .status == "failed"' "$output"
	[ "$(job_sql "artifact_id IS NULL" 'strict alone [short]')" = t ]
}

@test "a 300k-triangle model is simplified to its budget; the original is kept as its own artifact" {
	local art orig f
	run -0 pipeline <<<"$(req meshy model_3d 'heavy [heavy]' \
	    '{"max_triangles":20000}')"
	art=$output
	jqok '.metadata.media.triangles <= 20000 and
	    .metadata.media.triangles > 10000 and
	    .metadata.simplified_from.triangles == 300000 and
	    .metadata.simplification.tool == "gltfpack" and
	    [.metadata.warnings[].code] == ["PBR_MISSING"] and
	    .metadata.media.materials == 1 and
	    .metadata.media.pbr.base_color and
	    .metadata.media.pbr.metallic_roughness' "$art"
	f=$(stored_path "$art")
	run -0 validate "$f"
	jqok '.errors == 0 and .triangles <= 20000 and .materials == 1' "$output"
	python3 - "$f" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack_from("<I", b, 12)[0]
g = json.loads(b[20:20 + n])
p = g["meshes"][0]["primitives"][0]
assert "TEXCOORD_0" in p["attributes"], p
assert g["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]
EOF
	orig=$(sql "SELECT to_jsonb(a) FROM app.artifacts a
	    WHERE id = '$(jq -r .metadata.simplified_from.artifact_id <<<"$art")'")
	jqok '.metadata.media.triangles == 300000 and .metadata.fitted == true and
	    ([.metadata.warnings[].code] | sort) ==
	    ["PBR_MISSING", "TRIANGLES_OVER_BUDGET"]' "$orig"
	run -0 validate "$(stored_path "$orig")"
	jqok '.triangles == 300000' "$output"
	# The job is linked to the fitted model.
	[ "$(job_sql "artifact_id" 'heavy [heavy]')" = "$(jq -r .id <<<"$art")" ]
}

@test "params.compress: a meshopt-compressed model that Chromium renders with three.js's MeshoptDecoder" {
	local art f pw page
	run -0 pipeline <<<"$(req meshy model_3d 'heavy packed [heavy]' \
	    '{"max_triangles":30000,"compress":true,"pbr":false}')"
	art=$output
	jqok '.metadata.media.triangles <= 30000 and
	    (.metadata.media.extensions | index("EXT_meshopt_compression")) != null
	    and .metadata.warnings == null and
	    .metadata.simplification.compress == true and
	    .size_bytes < .metadata.simplified_from.size_bytes / 10' "$art"
	f=$(stored_path "$art")
	run -0 validate "$f"
	jqok '.errors == 0' "$output"
	cp "$f" "$BATS_TEST_DIRNAME/browser/.fitted-$$.glb"
	pw=$(free_port)
	python3 -m http.server "$pw" --bind 127.0.0.1 \
	    --directory "$BATS_TEST_DIRNAME" >/dev/null 2>&1 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/web.pid"
	for _ in $(seq 300); do
		curl -fs -o /dev/null "http://127.0.0.1:$pw/browser/meshopt.html" && break
		sleep 0.1
	done
	page="http://127.0.0.1:$pw/browser/meshopt.html?glb=.fitted-$$.glb"
	run -0 --separate-stderr node "$BATS_TEST_DIRNAME/browser/run.mjs" \
	    "$page" "$BATS_TEST_TMPDIR/fitted.png"
	rm -f "$BATS_TEST_DIRNAME/browser/.fitted-$$.glb"
	echo "$output"
	jq -e --argjson t "$(jq .metadata.media.triangles <<<"$art")" \
	    '.result.ok and .result.meshes == 1 and .result.uvs == 1 and
	    .result.triangles == $t and .result.materials == 1 and
	    (.result.extensions | index("EXT_meshopt_compression")) != null and
	    .errors == []' <<<"$output"
}

@test "mi-store probes local files and checks them against the record's request" {
	local gen="$BATS_TEST_TMPDIR/gen"
	mkdir -p "$gen"
	mi-generate -t image -p 'stored' -P width=512 -P height=512 -o "$gen/i.png" >/dev/null
	run -0 --separate-stderr mi-store <<<"$(jq -nc --arg p "$gen/i.png" \
	    --arg run "$RUN_ID" '{path: $p, tenant_id: "org_s", run_id: $run,
	    type: "texture", params: {width: 1024, height: 1024}}')"
	jqok '.metadata.media.width == 512 and
	    [.metadata.warnings[].code] == ["SIZE_MISMATCH"]' "$output"
	run -0 --separate-stderr mi-store --tenant org_s --run "$RUN_ID" \
	    --type texture "$gen/i.png"
	jqok '.metadata.media == {"kind":"image","format":"png","width":512,
	    "height":512,"channels":3}' "$output"
	# strict: an error record naming the mismatch.
	run -1 --separate-stderr mi-store <<<"$(jq -nc --arg p "$gen/i.png" \
	    --arg run "$RUN_ID" '{path: $p, tenant_id: "org_s", run_id: $run,
	    type: "texture", params: {width: 1024}, strict: true}')"
	jqok '.error.code == "VALIDATION_ERROR" and
	    (.error.message | test("SIZE_MISMATCH"))' "$output"
}

@test "probing never trusts a file: truncated and lying headers give facts with an error, not a crash" {
	local d="$BATS_TEST_TMPDIR/bad"
	mkdir -p "$d"
	# A GLB whose JSON chunk claims 2 GB.
	printf 'glTF\002\000\000\000\100\000\000\000\000\000\000\200JSON{}' >"$d/lie.glb"
	run -0 --separate-stderr mi-store --tenant org_s --run "$RUN_ID" \
	    --type model_3d "$d/lie.glb"
	jqok '.metadata.media.kind == "model" and
	    (.metadata.media.error | test("past the file"))' "$output"
	# A PNG cut inside its header.
	head -c 20 "$(ls "$ASSET_STORAGE_DIR"/org_s/"$RUN_ID"/texture/*.png | head -1)" >"$d/cut.png"
	run --separate-stderr mi-store --tenant org_s --run "$RUN_ID" \
	    --type texture "$d/cut.png"
	[ "$status" -le 1 ]
	if [ "$status" -eq 0 ]; then
		jqok '.metadata.media.error == "no PNG header"' "$output"
	fi
}

@test "audio and video are read in a child process: a cut or bogus file gives an error fact, the facts match ffprobe's" {
	local d="$BATS_TEST_TMPDIR/av"
	mkdir -p "$d"
	# A WAV whose header promises data that is not there.
	printf 'RIFF\044\000\000\000WAVEfmt \020\000\000\000\001\000\001\000\104\254\000\000\210\130\001\000\002\000\020\000data\000\000\000\100' >"$d/cut.wav"
	run -0 --separate-stderr mi-store --tenant org_s --run "$RUN_ID" \
	    --type audio_sfx "$d/cut.wav"
	jqok '.metadata.media.kind == "audio"' "$output"
	# Bytes that are no audio at all, named .mp3.
	head -c 4096 /dev/urandom >"$d/noise.mp3"
	run --separate-stderr mi-store --tenant org_s --run "$RUN_ID" \
	    --type audio_sfx "$d/noise.mp3"
	[ "$status" -le 1 ]
	# A real MP3 made by ffmpeg: the same duration, rate and channels as
	# ffprobe reads, and $MI_FFPROBE still runs the program instead.
	ffmpeg -v error -f lavfi -i sine=frequency=440:duration=1.5 -ac 2 \
	    -ar 22050 "$d/tone.mp3"
	run -0 --separate-stderr mi-store --tenant org_s --run "$RUN_ID" \
	    --type audio_sfx "$d/tone.mp3"
	local lib="$output"
	jqok '.metadata.media.sample_rate == 22050' "$lib"
	jqok '.metadata.media.channels == 2' "$lib"
	jqok '.metadata.media.codec == "mp3"' "$lib"
	local want
	want=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$d/tone.mp3")
	jqok "(.metadata.media.duration_sec - $want | fabs) < 0.002" "$lib"
	cp "$d/tone.mp3" "$d/tone2.mp3"
	printf 'x' >>"$d/tone2.mp3"
	MI_FFPROBE=ffprobe run -0 --separate-stderr mi-store --tenant org_s \
	    --run "$RUN_ID" --type audio_sfx "$d/tone2.mp3"
	jqok '.metadata.media.sample_rate == 22050' "$output"
	jqok '.metadata.media.codec == "mp3"' "$output"
}

@test "one libavformat worker serves file after file; a dead worker is replaced and none is left behind" {
	[ -z "${MI_FFPROBE:-}" ] || skip "MI_FFPROBE runs a program instead of the worker"
	local d="$BATS_TEST_TMPDIR/avw"
	mkdir -p "$d"
	local i
	for i in 1 2 3; do
		ffmpeg -v error -f lavfi -i "sine=frequency=${i}00:duration=0.$i" \
		    -ar 22050 "$d/t$i.mp3"
	done
	mkfifo "$d/in"
	mi-store <"$d/in" >"$d/out" 2>"$d/err" 3>&- &
	local store=$!
	exec 7>"$d/in"
	rec() {
		printf '{"path":"%s","tenant_id":"org_s","run_id":"%s","type":"audio_sfx"}\n' \
		    "$d/t$1.mp3" "$RUN_ID" >&7
		local k=0
		until [ "$(wc -l <"$d/out")" -ge "$2" ]; do
			k=$((k + 1))
			[ $k -lt 200 ] || return 1
			sleep 0.05
		done
	}
	rec 1 1
	local w1 w2 w3
	w1=$(pgrep -P "$store")
	[ -n "$w1" ]
	# The next file at once: the worker may still be dying when it is
	# sent, and a new worker then reads it.
	kill -KILL "$w1"
	rec 2 2
	w2=$(pgrep -P "$store")
	[ -n "$w2" ]
	[ "$w2" != "$w1" ]
	rec 3 3
	w3=$(pgrep -P "$store")
	[ "$w3" = "$w2" ]
	exec 7>&-
	wait "$store"
	run pgrep -P "$store"
	[ "$status" -eq 1 ]
	! kill -0 "$w3" 2>/dev/null
	local n
	n=$(jq -s '[.[] | select(.metadata.media.codec == "mp3")] | length' "$d/out")
	[ "$n" -eq 3 ]
	jq -e -s '.[1].metadata.media.duration_sec > 0.15' "$d/out"
}
