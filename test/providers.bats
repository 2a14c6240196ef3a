#!/usr/bin/env bats
# Every shipped provider definition end to end against the fake provider
# server: mi-submit | mi-poll | mi-fetch, the requests the provider saw,
# the rows, the stored file's type, the cost; and no key anywhere.

load test_helper
load jobs_helper

KEY=sk-live-7f3a9c1e5b20d4e8

setup_file() {
	jobs_setup_file --key "$KEY"
}

teardown_file() {
	fake_stop
}

teardown() {
	[ -z "${SRV:-}" ] || kill "$SRV" 2>/dev/null || true
}

# The log entries of the fake for a prompt (as given, markers included).
creates_for() {
	jq -c --arg p "$1" 'select(.event == "create" and
	    ((.body | tostring) | contains($p)))' "$FAKE_LOG"
}

# run_one PROVIDER MEDIA PROMPT [PARAMS]: the pipeline for one request;
# sets art (the artifact record) and file (its path in the store).
run_one() {
	run -0 pipeline <<<"$(req "$@")"
	[ "${#lines[@]}" -eq 1 ]
	art=$output
	file=$(stored_path "$art")
	[ -f "$file" ]
}

@test "meshy: text to 3D, preview then refine with PBR, GLB stored, credits as cost" {
	run_one meshy model_3d "a prize wheel" '{"max_triangles":20000}'
	jqok '.type == "model_3d" and (.uri | endswith(".glb")) and
	    .metadata.mime_type == "model/gltf-binary" and
	    .metadata.provider_id == "meshy" and .metadata.cost_usd == 0.6 and
	    .metadata.cost_source == "provider" and
	    (.metadata.provider.thumbnail_url | length) > 0' "$art"
	[ "$(head -c 4 "$file")" = glTF ]
	run -0 creates_for "a prize wheel"
	[ "${#lines[@]}" -eq 2 ]
	jqok '.body.mode == "preview" and .body.target_polycount == 20000 and
	    .path == "/meshy/openapi/v2/text-to-3d"' "${lines[0]}"
	jqok '.body.mode == "refine" and .body.enable_pbr == true and
	    (.body.preview_task_id | length) > 0' "${lines[1]}"
	run -0 job_sql "status || ' ' || cost_source || ' ' || (result_expires_at > now() + interval '2 days') || ' ' || (artifact_id = '$(jq -r .id <<<"$art")')" 'a prize wheel'
	assert_output 'completed provider true true'
}

@test "meshy: image to 3D from a stored reference image, sent as a data URI" {
	local ref
	ref=$(req local image "reference" '{"width":512,"height":512}' |
	    pipeline | jq -r .uri)
	[[ $ref == /api/assets/org_a/* ]]
	run_one meshy model_3d "" "{\"reference_image\":\"$ref\",\"pbr\":false}"
	run -0 jq -c 'select(.event == "create" and
	    .path == "/meshy/openapi/v1/image-to-3d")' "$FAKE_LOG"
	jqok '(.body.image_url | startswith("data:image/png;base64,iVBOR")) and
	    .body.enable_pbr == false and .body.should_texture == true' \
	    "${lines[-1]}"
	jqok '.metadata.provider.type == "image-to-3d"' "$art"
}

@test "a reference image of another tenant is refused" {
	local ref
	ref=$(TENANT=org_b req local image "theirs" '{"width":512,"height":512}' |
	    pipeline | jq -r .uri)
	[[ $ref == /api/assets/org_b/* ]]
	run -1 pipeline <<<"$(req meshy model_3d "" "{\"reference_image\":\"$ref\"}")"
	jqok '.error.code == "VALIDATION_ERROR" and
	    (.error.message | contains("not an asset of this tenant"))' "$output"
}

@test "nano-banana-video: Veo long-running operation, done absent while running, key sent for the download" {
	local before
	before=$(stat '.downloads_with_key.veo // 0')
	run_one nano-banana-video video "neon arcade wheel" \
	    '{"duration_sec":8,"resolution":"1080p","aspect_ratio":"9:16","loop":true,"negative_prompt":"text"}'
	jqok '.type == "video" and .metadata.mime_type == "video/mp4" and
	    .metadata.cost_usd == 0.96 and .metadata.cost_source == "estimate"
	    and .metadata.model == "veo-3.1-fast-generate-preview"' "$art"
	[ "$(dd if="$file" bs=1 skip=4 count=4 2>/dev/null)" = ftyp ]
	run -0 creates_for "neon arcade wheel"
	jqok '.body.parameters == {"aspectRatio":"9:16","durationSeconds":8,
	    "resolution":"1080p","negativePrompt":"text",
	    "personGeneration":"allow_adult"} and
	    (.body.instances[0].prompt | contains("Seamless loop")) and
	    (.path | endswith("veo-3.1-fast-generate-preview:predictLongRunning"))' \
	    "${lines[0]}"
	[ "$(stat '.downloads_with_key.veo')" -eq $((before + 1)) ]
}

@test "nano-banana-video: the key does not follow a redirect to another host" {
	run_one nano-banana-video video "redirected [redirect]" '{"duration_sec":4}'
	run -0 jq -c 'select(.event == "download" and (.path | startswith("/files/veo/")))' \
	    "$FAKE_LOG"
	jqok '.key_sent == false and .headers.host != null' "${lines[-1]}"
	[[ ${lines[-1]} != *"$KEY"* ]]
}

@test "nano-banana: a seamless texture from base64 in JSON, cost from the usage" {
	run_one nano-banana texture "mossy cobblestone" '{"width":1024,"height":576}'
	jqok '.type == "texture" and .metadata.mime_type == "image/png" and
	    .metadata.cost_source == "provider" and
	    (.metadata.cost_usd > 0.134 and .metadata.cost_usd < 0.135) and
	    .metadata.model == "gemini-3-pro-image" and
	    .metadata.provider.aspect_ratio == "16:9" and
	    .metadata.provider.image_size == "1K"' "$art"
	[ "$(file -b --mime-type "$file")" = image/png ]
	run -0 creates_for "mossy cobblestone"
	jqok '.body.generationConfig.imageConfig == {"aspectRatio": "16:9",
	    "imageSize": "1K"} and
	    (.body.contents[0].parts[-1].text | contains("Seamless tileable"))' \
	    "${lines[0]}"
	run -0 job_sql "status || ' ' || (result_uri LIKE 'file://%')" 'mossy cobblestone'
	assert_output 'completed true'
}

@test "suno: instrumental music through sunoapi.org, the first track kept" {
	run_one suno audio_bgm "upbeat arcade loop" \
	    '{"genre":"electronic","duration_sec":60,"instrumental":true}'
	jqok '.type == "audio_bgm" and .metadata.mime_type == "audio/mpeg" and
	    .metadata.cost_usd == 0.06 and
	    (.metadata.provider.clip_id | length) > 0' "$art"
	[ "$(file -b --mime-type "$file")" = audio/mpeg ]
	run -0 creates_for "upbeat arcade loop"
	jqok '.body.instrumental == true and .body.customMode == false and
	    (.body.prompt | contains("Genre: electronic")) and
	    (.body.prompt | contains("60 seconds"))' "${lines[0]}"
	# instrumental false reaches the provider as false.
	run_one suno audio_bgm "a song with words" '{"instrumental":false}'
	run -0 creates_for "a song with words"
	jqok '.body.instrumental == false' "${lines[0]}"
}

@test "elevenlabs-sfx: synchronous MP3 bytes, duration sent, request id kept" {
	run_one elevenlabs-sfx audio_sfx "wheel tick" '{"duration_sec":1.5,"sfx_type":"spin"}'
	jqok '.type == "audio_sfx" and .metadata.mime_type == "audio/mpeg" and
	    (.metadata.provider.request_id | length) > 0 and
	    .metadata.cost_usd == 0.009' "$art"
	[ "$(file -b --mime-type "$file")" = audio/mpeg ]
	run -0 creates_for "wheel tick"
	jqok '.body.duration_seconds == 1.5 and .query.output_format ==
	    "mp3_44100_128" and .headers.accept == "audio/mpeg"' "${lines[0]}"
}

@test "blockade-skybox: skybox, then an HDRI export as the environment map" {
	run_one blockade-skybox environment_map "misty alpine valley"
	jqok '.type == "environment_map" and (.uri | endswith(".hdr")) and
	    .metadata.mime_type == "image/vnd.radiance" and
	    .metadata.provider.type == "hdri-hdr"' "$art"
	[ "$(head -c 10 "$file")" = '#?RADIANCE' ]
	run -0 jq -c 'select(.event == "create" and .path == "/blockade/api/v1/skybox/export")' \
	    "$FAKE_LOG"
	jqok '.body.type_id == 4 and (.body.skybox_id | length) == 14' "${lines[-1]}"
	run_one blockade-skybox environment_map "desert at dusk" '{"format":"exr"}'
	jqok '(.uri | endswith(".exr"))' "$art"
}

@test "fal: generic queue, status then result, per media type" {
	run_one fal image "a gold coin" '{"width":768,"height":512}'
	jqok '.metadata.mime_type == "image/png" and
	    .metadata.provider.model == "fal-ai/flux/dev"' "$art"
	run_one fal video "a coin spinning"
	jqok '.metadata.mime_type == "video/mp4"' "$art"
	run -0 creates_for "a gold coin"
	jqok '.body.image_size == {"width":768,"height":512} and
	    .path == "/fal/fal-ai/flux/dev"' "${lines[0]}"
}

@test "nano-banana-video: Veo 3.1's first and last frame, reference images, 4k; what it refuses" {
	local ref a b
	ref=$(req local image "veo first" '{"width":512,"height":512}' | pipeline | jq -r .uri)
	a=$(req local image "veo last" '{"width":512,"height":512}' | pipeline | jq -r .uri)
	run_one nano-banana-video video "frames" "$(jq -nc --arg f "$ref" --arg l "$a" \
	    '{duration_sec: 8, resolution: "4k", reference_image: $f, last_frame: $l}')"
	jqok '.metadata.cost_usd == 2.4' "$art"
	run -0 creates_for '"frames'
	jqok '.body.instances[0].image.mimeType == "image/png" and
	    (.body.instances[0].lastFrame.bytesBase64Encoded | length) > 100 and
	    .body.parameters.resolution == "4k"' "${lines[0]}"
	b=$(req local image "veo style" '{"width":512,"height":512}' | pipeline | jq -r .uri)
	run_one nano-banana-video video "with references" "$(jq -nc --arg a "$a" --arg b "$b" \
	    '{duration_sec: 8, reference_images: [$a, $b]}')"
	run -0 creates_for "with references"
	jqok '(.body.instances[0].referenceImages | map(.referenceType)) ==
	    ["asset", "asset"] and .body.instances[0].image == null' "${lines[0]}"
	run -1 --separate-stderr mi-submit <<<"$(req nano-banana-video video 'refused' \
	    "$(jq -nc --arg a "$a" '{duration_sec: 6, aspect_ratio: "1:1",
	    reference_images: [$a, $a, $a, $a], last_frame: $a}')")"
	jqok '.error.code == "VALIDATION_ERROR" and
	    (.error.message | test("4, 6 or 8") | not) and
	    (.error.message | test("aspect_ratio")) and
	    (.error.message | test("at most 3")) and
	    (.error.message | test("last_frame needs params.reference_image"))' "$output"
	[ "$(job_count refused)" = 0 ]
}

@test "nano-banana: Nano Banana Pro makes the asked 4K; gemini-2.5-flash-image is asked for no size" {
	run_one nano-banana image "big coin" '{"width":4096,"height":4096}'
	jqok '.metadata.media.width == 4096 and .metadata.media.height == 4096 and
	    .metadata.warnings == null' "$art"
	run -0 creates_for "big coin"
	jqok '.body.generationConfig.imageConfig.imageSize == "4K"' "${lines[0]}"
	MI_NANO_BANANA_MODEL=gemini-2.5-flash-image run_one nano-banana image "legacy medal" \
	    '{"width":1024,"height":1024}'
	jqok '.metadata.cost_usd > 0.038 and .metadata.cost_usd < 0.04' "$art"
	run -0 creates_for "legacy medal"
	jqok '.body.generationConfig.imageConfig == {"aspectRatio": "1:1"} and
	    (.path | endswith("gemini-2.5-flash-image:generateContent"))' "${lines[0]}"
}

@test "elevenlabs-sfx: up to 30 s, loop sent; a track of the asked length" {
	run_one elevenlabs-sfx audio_sfx "ambient hum" '{"duration_sec":25,"loop":true}'
	jqok '(.metadata.media.duration_sec - 25 | fabs) < 0.2 and
	    .metadata.warnings == null and .metadata.cost_usd == 0.15' "$art"
	run -0 creates_for "ambient hum"
	jqok '.body.loop == true and .body.duration_seconds == 25 and
	    .body.model_id == "eleven_text_to_sound_v2"' "${lines[0]}"
	run -1 --separate-stderr mi-submit <<<"$(req elevenlabs-sfx audio_sfx 'too long' '{"duration_sec":31}')"
	jqok '.error.code == "VALIDATION_ERROR"' "$output"
}

@test "meshy: Meshy 6 geometry options, and multi-image to 3D from up to 4 views" {
	local a b
	run_one meshy model_3d "six options" '{"max_triangles":8000,"symmetry":"on","pose":"t-pose","lowpoly":false,"remove_lighting":true}'
	run -0 creates_for "six options"
	jqok '.body.ai_model == "latest" and .body.should_remesh == true and
	    .body.target_polycount == 8000 and .body.symmetry_mode == "on" and
	    .body.pose_mode == "t-pose" and .body.topology == "triangle"' "${lines[0]}"
	jqok '.body.mode == "refine" and .body.remove_lighting == true' "${lines[1]}"
	a=$(req local image "view front" '{"width":512,"height":512}' | pipeline | jq -r .uri)
	b=$(req local image "view side" '{"width":512,"height":512}' | pipeline | jq -r .uri)
	run_one meshy model_3d "" "$(jq -nc --arg a "$a" --arg b "$b" \
	    '{reference_images: [$a, $b], max_triangles: 10000}')"
	jqok '.metadata.provider.type == "multi-image-to-3d" and
	    .metadata.cost_usd == 0.6' "$art"
	run -0 jq -c 'select(.event == "create" and .path == "/meshy/openapi/v1/multi-image-to-3d")' "$FAKE_LOG"
	jqok '(.body.image_urls | length) == 2 and
	    (.body.image_urls[0] | startswith("data:image/png;base64,")) and
	    .body.target_polycount == 10000' "${lines[-1]}"
}

@test "blockade-skybox: Model 4 (4K, prompts to 2000 characters, a variant id)" {
	run_one blockade-skybox environment_map "$(printf 'long %.0s' $(seq 150))" '{"variant_id":2}'
	run -0 jq -c 'select(.event == "create" and .path == "/blockade/api/v1/skybox")' "$FAKE_LOG"
	jqok '.body.model_version == 4 and .body.variant_id == 2' "${lines[-1]}"
	jqok '(.metadata.cost_usd * 100 | round) == 20' "$art"
	run -1 --separate-stderr mi-submit <<<"$(req blockade-skybox environment_map 'too wide' '{"width":8192}')"
	jqok '.error.code == "VALIDATION_ERROR"' "$output"
	MI_BLOCKADE_SKYBOX_MODEL=model-3 run_one blockade-skybox environment_map "model three" '{"width":8192}'
	run -0 jq -c 'select(.event == "create" and .path == "/blockade/api/v1/skybox")' "$FAKE_LOG"
	jqok '.body.model_version == 3' "${lines[-1]}"
}

@test "replicate: an image answered in the create (Prefer: wait), a video polled, Cancel-After sent" {
	run_one replicate image "rusty panel" '{"width":1024,"height":576}'
	jqok '.metadata.provider_id == "replicate" and .metadata.mime_type == "image/png" and
	    .metadata.media.width == 1344 and .metadata.cost_usd == 0.003 and
	    (.metadata.provider.prediction_id | length) > 0' "$art"
	run -0 creates_for "rusty panel"
	jqok '.path == "/replicate/v1/models/black-forest-labs/flux-schnell/predictions" and
	    .headers.prefer == "wait=20" and .headers["cancel-after"] == "30s" and
	    .body.input.aspect_ratio == "16:9"' "${lines[0]}"
	[ "$(job_sql "submit_count" 'rusty panel')" = 1 ]
	run_one replicate video "spinning coin" '{"duration_sec":6}'
	jqok '.metadata.mime_type == "video/mp4" and .metadata.cost_usd == 0.5' "$art"
	run -0 creates_for "spinning coin"
	jqok '.headers.prefer == null and .headers["cancel-after"] == "30s"' "${lines[0]}"
	# A version-pinned model goes to /v1/predictions.
	MI_REPLICATE_MODEL=acme/texgen:0123abcd run_one replicate texture "pinned"
	run -0 creates_for "pinned"
	jqok '.path == "/replicate/v1/predictions" and .body.version == "0123abcd"' "${lines[0]}"
	# Cancel-After is the timeout and a margin of at least 10 s (here
	# 1 s + 10 s): mi's own deadline comes first, and mi cancels the
	# prediction itself.
	MI_REPLICATE_TIMEOUT_MS=1000 run -1 pipeline <<<"$(req replicate video 'too slow [slow:3000]')"
	jqok '.error.code == "TIMEOUT"' "$output"
	run -0 creates_for "too slow"
	jqok '.headers["cancel-after"] == "11s"' "${lines[0]}"
}

@test "MI_<ID>_MODEL and MI_<ID>_BASE_URL override a definition" {
	MI_NANO_BANANA_VIDEO_MODEL=veo-3.1-generate-preview run_one \
	    nano-banana-video video "full price" '{"duration_sec":4}'
	jqok '.metadata.cost_usd == 1.6 and
	    .metadata.model == "veo-3.1-generate-preview"' "$art"
	MI_MESHY_BASE_URL=http://127.0.0.1:1 run -1 pipeline \
	    <<<"$(req meshy model_3d 'nowhere')"
	jqok '.error.code == "PROVIDER_UNAVAILABLE" and
	    (.error.message | contains("onnect"))' "$output"
}

@test "a broken definition is a CONFIG_ERROR naming it" {
	local dir=$BATS_TEST_TMPDIR/providers
	mkdir -p "$dir"
	cp "$MI_SHAREDIR"/providers/*.jq "$dir"
	echo 'def provider: {id: "broken", transport: "http" ' >"$dir/broken.jq"
	MI_PROVIDERS_DIR=$dir run -78 --separate-stderr mi-submit \
	    <<<"$(req broken image 'x')"
	jqok '.error.code == "CONFIG_ERROR" and
	    (.error.message | startswith("provider '"'"'broken'"'"'"))' "$output"
}

@test "no key appears in any output, diagnostic, spool file or database row" {
	local all
	in=$(req meshy model_3d "k1")$'\n'$(req nano-banana-video video "k2 [redirect]" '{"duration_sec":4}')
	in+=$'\n'$(req nano-banana image "k3")$'\n'$(req suno audio_bgm "k4")
	in+=$'\n'$(req elevenlabs-sfx audio_sfx "k5")$'\n'$(req blockade-skybox environment_map "k6")
	in+=$'\n'$(req fal image "k7")$'\n'$(req meshy model_3d "k8 [fail]")
	in+=$'\n'$(req replicate image "k11")
	in+=$'\n'$(req suno audio_bgm "k9 [credits]")
	run -1 pipeline <<<"$in"
	all=$output$(pipeline_err)
	all+=$(MESHY_API_KEY=bad-key-1 pipeline <<<"$(req meshy model_3d k10)" 2>&1 || true)
	all+=$(pg_dump_all_text)
	all+=$(cat "$BATS_TEST_TMPDIR"/*.err)
	all+=$(find "$ASSET_STORAGE_DIR" -type f -exec cat {} + 2>/dev/null | tr -d '\0')
	[[ $all == *k1* && $all == *MESHY_API_KEY* ]]
	[[ $all != *"$KEY"* ]]
	[[ $all != *bad-key-1* ]]
	# The URLs mi stored never carry the key either.
	run -0 sql "SELECT count(*) FROM app.generation_jobs
	    WHERE result_uri LIKE '%key=%' OR provider_state::text LIKE '%key=%'"
	assert_output 0
}

# Every row of the tables mi writes, as text.
pg_dump_all_text() {
	sql "SELECT row_to_json(j)::text FROM app.generation_jobs j"
	sql "SELECT row_to_json(a)::text FROM app.artifacts a"
	sql "SELECT row_to_json(h)::text FROM app.provider_health h"
}

@test "the worked example of mi-providers(5) adds a vendor with no C" {
	local dir=$BATS_TEST_TMPDIR/providers port
	mkdir -p "$dir/lib"
	cp "$MI_SHAREDIR"/providers/lib/mi.jq "$dir/lib/"
	sed -n '/^# share\/providers\/acme-sfx.jq$/,/^\.Ed$/p' \
	    "$BATS_TEST_DIRNAME/../man/mi-providers.5" | sed '$d' |
	    sed 's/\\e/\\/g' >"$dir/acme-sfx.jq"
	grep -q 'def polled' "$dir/acme-sfx.jq"
	# A vendor of that shape: a task id, then done with a URL.
	port=$(free_port)
	python3 - "$port" "$(stored_path "$(req elevenlabs-sfx audio_sfx \
	    'acme source' | pipeline)")" \
	    >"$BATS_TEST_TMPDIR/acme.log" 2>&1 3>&- <<'PY' &
import http.server, json, sys
port, wav = int(sys.argv[1]), open(sys.argv[2], "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        ok = self.headers.get("Authorization") == "Bearer acme-key"
        self.rfile.read(int(self.headers["Content-Length"]))
        self.reply(200 if ok else 401, b'{"task":"t1"}')
    def do_GET(self):
        if self.path == "/tasks/t1":
            url = "http://127.0.0.1:%d/files/t1.wav" % port
            self.reply(200, json.dumps({"state": "done", "url": url}).encode())
        else:
            self.reply(200, wav, "audio/mpeg")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
	SRV=$!
	for _ in $(seq 300); do
		curl -s -o /dev/null "http://127.0.0.1:$port/tasks/t1" && break
		sleep 0.1
	done
	MI_PROVIDERS_DIR=$dir MI_ACME_SFX_BASE_URL=http://127.0.0.1:$port \
	    ACME_API_KEY=acme-key MI_ACME_SFX_POLL_INTERVAL_MS=50 \
	    run -0 pipeline <<<"$(req acme-sfx audio_sfx 'a new vendor' '{"duration_sec":1}')"
	jqok '.metadata.provider_id == "acme-sfx" and .metadata.cost_usd == 0.01
	    and (.uri | endswith(".mp3"))' "$output"
	MI_PROVIDERS_DIR=$dir ACME_API_KEY=k run -1 --separate-stderr mi-submit \
	    <<<"$(req acme-sfx audio_sfx 'too long' '{"duration_sec":9}')"
	jqok '.error.code == "VALIDATION_ERROR"' "$output"
}
