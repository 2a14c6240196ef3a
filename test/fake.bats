#!/usr/bin/env bats
# The fake provider server itself: each provider's happy path through
# create, poll and download, the fault markers, authentication failures,
# the statistics endpoint and the request log.

load test_helper
load fake/fake

setup_file() {
	fake_start --job-ms 200
}

teardown_file() {
	fake_stop
}

J='Content-Type: application/json'

mesh() {
	curl -sS -H "Authorization: Bearer $FAKE_KEY" -H "$J" "$@"
}

goog() {
	curl -sS -H "x-goog-api-key: $FAKE_KEY" -H "$J" "$@"
}

suno() {
	curl -sS -H "Authorization: Bearer $FAKE_KEY" -H "$J" "$@"
}

sky() {
	curl -sS -H "x-api-key: $FAKE_KEY" -H "$J" "$@"
}

fal() {
	curl -sS -H "Authorization: Key $FAKE_KEY" -H "$J" "$@"
}

# poll_until 'jq test' curl-args...: repeats the request until the
# answer satisfies the jq test; prints the last answer.
poll_until() {
	local test=$1 out i
	shift
	for i in $(seq 1 300); do
		out=$("$@")
		if echo "$out" | jq -e "$test" >/dev/null 2>&1; then
			echo "$out"
			return 0
		fi
		sleep 0.05
	done
	echo "$out"
	return 1
}

meshy_preview() {
	mesh -X POST "$FAKE_URL/meshy/openapi/v2/text-to-3d" \
	    -d "$(jq -cn --arg p "$1" '{mode:"preview",prompt:$p}')" | jq -r .result
}

meshy_done() {
	poll_until '.status=="SUCCEEDED" or .status=="FAILED"' \
	    mesh "$FAKE_URL/meshy/openapi/v2/text-to-3d/$1"
}

fstat() {
	fake_stats | jq -r "$1"
}

@test "fake: prints ready, answers stats, unknown prefix is 404" {
	[[ $FAKE_PORT =~ ^[0-9]+$ ]]
	run -0 curl -sS "$FAKE_URL/_fake/stats"
	echo "$output" | jq -e '.creates_accepted and .max_concurrent and (.in_flight|type=="number")'
	run -0 curl -sS -o /dev/null -w '%{http_code}' "$FAKE_URL/nope/x"
	assert_output 404
}

@test "meshy: preview passes PENDING/IN_PROGRESS to SUCCEEDED with a real GLB" {
	id=$(meshy_preview "a prize wheel [slow:4000]")
	[[ $id =~ ^[0-9a-f-]{36}$ ]]
	first=$(mesh "$FAKE_URL/meshy/openapi/v2/text-to-3d/$id")
	echo "$first" | jq -e '.status=="PENDING" and .progress==0 and .created_at>1700000000000 and .finished_at==0 and .model_urls=={}'
	sleep 1
	mid=$(mesh "$FAKE_URL/meshy/openapi/v2/text-to-3d/$id")
	echo "$mid" | jq -e '.status=="IN_PROGRESS" and .progress>0 and .progress<100 and .started_at>0'
	done=$(meshy_done "$id")
	echo "$done" | jq -e '.status=="SUCCEEDED" and .progress==100 and .type=="text-to-3d-preview"
	    and .expires_at==.finished_at+259200000 and .task_error.message==""'
	url=$(echo "$done" | jq -r .model_urls.glb)
	[[ $url == "$FAKE_URL/files/meshy/$id/"*"/model.glb?Expires="* ]]
	run -0 curl -sS -o "$BATS_TEST_TMPDIR/m.glb" -w '%{http_code} %{content_type}' "$url"
	assert_output "200 model/gltf-binary"
	run -0 head -c 4 "$BATS_TEST_TMPDIR/m.glb"
	assert_output glTF
	# The download carried no key, and the log says so.
	tail -n 1 "$FAKE_LOG" | jq -e '.event=="download" and .key_sent==false and .provider=="meshy"'
}

@test "meshy: refine, image-to-3d, list and balance" {
	id=$(meshy_preview "a lantern")
	meshy_done "$id" >/dev/null
	run -0 mesh -X POST "$FAKE_URL/meshy/openapi/v2/text-to-3d" \
	    -d "{\"mode\":\"refine\",\"preview_task_id\":\"$id\",\"enable_pbr\":true}" -w ' %{http_code}'
	assert_output --regexp '^\{"result":"[0-9a-f-]+"\} 202$'
	rid=$(echo "${output% *}" | jq -r .result)
	run -0 meshy_done "$rid"
	echo "$output" | jq -e '.type=="text-to-3d-refine" and .prompt=="a lantern" and (.texture_urls[0].base_color|test("texture_0.png"))'
	run -0 mesh "$FAKE_URL/meshy/openapi/v2/text-to-3d?page_num=1&page_size=50&sort_by=-created_at"
	echo "$output" | jq -e --arg a "$id" --arg b "$rid" 'type=="array" and ([.[].id]|index($a)!=null and index($b)!=null)'
	run -0 mesh -X POST "$FAKE_URL/meshy/openapi/v2/text-to-3d" -d "{\"mode\":\"refine\",\"preview_task_id\":\"nope\"}" -w ' %{http_code}'
	assert_output --partial ' 400'
	img="data:image/png;base64,$(printf '\211PNG\r\n\032\n' | base64)"
	run -0 mesh -X POST "$FAKE_URL/meshy/openapi/v1/image-to-3d" -d "{\"image_url\":\"$img\"}"
	iid=$(echo "$output" | jq -r .result)
	run -0 poll_until '.status=="SUCCEEDED"' mesh "$FAKE_URL/meshy/openapi/v1/image-to-3d/$iid"
	echo "$output" | jq -e '.type=="image-to-3d" and (.model_urls.glb|length>0)'
	run -0 mesh "$FAKE_URL/meshy/openapi/v1/balance"
	assert_output '{"balance":1000}'
	run -0 mesh -X POST "$FAKE_URL/meshy/openapi/v2/text-to-3d" -d '{"mode":"preview"}' -w ' %{http_code}'
	assert_output --partial ' 400'
}

@test "meshy: bad or missing key is 401 with a message" {
	run -0 curl -sS -w ' %{http_code}' -X POST "$FAKE_URL/meshy/openapi/v2/text-to-3d" \
	    -H 'Authorization: Bearer wrong' -d '{"mode":"preview","prompt":"x"}'
	assert_output '{"message":"Invalid API key."} 401'
	tail -n 1 "$FAKE_LOG" | jq -e '.event=="create" and .accepted==false and .status==401 and .provider=="meshy"'
	run -0 curl -sS -w ' %{http_code}' "$FAKE_URL/meshy/openapi/v1/balance"
	assert_output --partial ' 401'
}

@test "gemini image: synchronous base64 PNG of the aspect ratio's size" {
	body='{"contents":[{"role":"user","parts":[{"text":"mossy cobblestone"}]}],
	    "generationConfig":{"responseModalities":["TEXT","IMAGE"],"imageConfig":{"aspectRatio":"16:9"}}}'
	run -0 goog -X POST "$FAKE_URL/gemini/v1beta/models/gemini-2.5-flash-image:generateContent" -d "$body"
	echo "$output" | jq -e '.candidates[0].finishReason=="STOP"'
	echo "$output" | jq -r '.candidates[0].content.parts[] | select(.inlineData) | .inlineData.data' |
	    base64 -d >"$BATS_TEST_TMPDIR/g.png"
	run -0 file -b "$BATS_TEST_TMPDIR/g.png"
	assert_output --partial 'PNG image data, 1344 x 768'
	run -0 curl -sS -w ' %{http_code}' -H 'x-goog-api-key: wrong' -X POST \
	    "$FAKE_URL/gemini/v1beta/models/gemini-2.5-flash-image:generateContent" -d "$body"
	assert_output --partial ' 400'
	echo "${output% *}" | jq -e '.error.status=="INVALID_ARGUMENT" and .error.details[0].reason=="API_KEY_INVALID"'
	run -0 curl -sS -w ' %{http_code}' -X POST \
	    "$FAKE_URL/gemini/v1beta/models/gemini-2.5-flash-image:generateContent" -d "$body"
	assert_output --partial ' 403'
	run -0 goog -X POST "$FAKE_URL/gemini/v1beta/models/gemini-2.5-flash-image:generateContent" \
	    -d '{"contents":[{"parts":[{"text":"x [blocked]"}]}]}'
	echo "$output" | jq -e '.candidates[0].finishReason=="IMAGE_SAFETY" and (.candidates[0].content|not)'
	run -0 goog -X POST "$FAKE_URL/gemini/v1beta/models/gemini-2.5-flash-image:generateContent" \
	    -d '{"contents":[{"parts":[{"text":"x [fail]"}]}]}'
	echo "$output" | jq -e '[.candidates[0].content.parts[]|select(.inlineData)]|length==0'
}

@test "veo: operation has no done field while running, then a video URI that needs the key" {
	run -0 goog -X POST "$FAKE_URL/gemini/v1beta/models/veo-3.0-generate-001:predictLongRunning" \
	    -d '{"instances":[{"prompt":"foggy pine forest [slow:3000]"}],"parameters":{"aspectRatio":"16:9","durationSeconds":8,"resolution":"1080p"}}'
	name=$(echo "$output" | jq -r .name)
	[[ $name =~ ^models/veo-3.0-generate-001/operations/[a-z0-9]+$ ]]
	run -0 goog "$FAKE_URL/gemini/v1beta/$name"
	echo "$output" | jq -e 'has("done")|not'
	run -0 poll_until '.done==true' goog "$FAKE_URL/gemini/v1beta/$name"
	uri=$(echo "$output" | jq -r '.response.generateVideoResponse.generatedSamples[0].video.uri')
	[[ $uri == "$FAKE_URL/gemini/v1beta/files/"*":download?alt=media" ]]
	run -0 curl -sS -o /dev/null -w '%{http_code}' "$uri"
	assert_output 403
	run -0 curl -sS -H "x-goog-api-key: $FAKE_KEY" -o "$BATS_TEST_TMPDIR/v.mp4" -w '%{http_code} %{content_type}' "$uri"
	assert_output "200 video/mp4"
	run -0 file -b "$BATS_TEST_TMPDIR/v.mp4"
	assert_output --partial 'ISO Media'
	tail -n 1 "$FAKE_LOG" | jq -e '.event=="download" and .provider=="veo" and .key_sent==true'
	# Parameter validation and the failure shape.
	run -0 goog -w ' %{http_code}' -X POST "$FAKE_URL/gemini/v1beta/models/veo-3.0-generate-001:predictLongRunning" \
	    -d '{"instances":[{"prompt":"x"}],"parameters":{"aspectRatio":"1:1"}}'
	assert_output --partial ' 400'
	run -0 goog -X POST "$FAKE_URL/gemini/v1beta/models/veo-3.0-generate-001:predictLongRunning" \
	    -d '{"instances":[{"prompt":"x [fail]"}]}'
	name=$(echo "$output" | jq -r .name)
	run -0 poll_until '.done==true' goog "$FAKE_URL/gemini/v1beta/$name"
	echo "$output" | jq -e '.error.code==3 and (.error.message|length>0) and (.response|not)'
}

@test "veo: [redirect] sends the download to another host that needs no key" {
	run -0 goog -X POST "$FAKE_URL/gemini/v1beta/models/veo-3.1-generate-preview:predictLongRunning" \
	    -d '{"instances":[{"prompt":"spinning coin [redirect]"}],"parameters":{"durationSeconds":4}}'
	name=$(echo "$output" | jq -r .name)
	run -0 poll_until '.done==true' goog "$FAKE_URL/gemini/v1beta/$name"
	uri=$(echo "$output" | jq -r '.response.generateVideoResponse.generatedSamples[0].video.uri')
	run -0 curl -sS -H "x-goog-api-key: $FAKE_KEY" -o /dev/null -w '%{http_code} %{redirect_url}' "$uri"
	assert_output --regexp "^302 http://localhost:$FAKE_PORT/files/veo/"
	loc=${output#302 }
	run -0 curl -sS -o /dev/null -w '%{http_code}' "${loc/localhost/127.0.0.1}"
	assert_output 200
	tail -n 1 "$FAKE_LOG" | jq -e '.path|startswith("/files/veo/")'
	tail -n 1 "$FAKE_LOG" | jq -e '.key_sent==false'
}

@test "suno: TEXT_SUCCESS/FIRST_SUCCESS/SUCCESS with two MP3s; instrumental recorded" {
	run -0 suno -X POST "$FAKE_URL/suno/api/v1/generate" \
	    -d '{"customMode":true,"instrumental":true,"model":"V4_5","style":"synthwave [slow:4000]","title":"Night Drive","callBackUrl":"https://example.com/cb"}'
	echo "$output" | jq -e '.code==200 and .msg=="success"'
	tid=$(echo "$output" | jq -r .data.taskId)
	seen=$(for i in $(seq 1 400); do
		s=$(suno "$FAKE_URL/suno/api/v1/generate/record-info?taskId=$tid" | jq -r .data.status)
		echo "$s"
		[ "$s" = SUCCESS ] && break
		sleep 0.02
	done | uniq | tr '\n' ' ')
	[ "$seen" = "PENDING TEXT_SUCCESS FIRST_SUCCESS SUCCESS " ]
	run -0 suno "$FAKE_URL/suno/api/v1/generate/record-info?taskId=$tid"
	echo "$output" | jq -e '.code==200 and (.data.param|fromjson|.instrumental==true)
	    and (.data.response.sunoData|length==2) and all(.data.response.sunoData[]; (.audioUrl|length>0) and .duration>0)'
	url=$(echo "$output" | jq -r '.data.response.sunoData[0].audioUrl')
	run -0 curl -sS -o "$BATS_TEST_TMPDIR/s.mp3" -w '%{http_code} %{content_type}' "$url"
	assert_output "200 audio/mpeg"
	run -0 file -b "$BATS_TEST_TMPDIR/s.mp3"
	assert_output --partial 'MPEG ADTS, layer III'
	grep '"event":"create"' "$FAKE_LOG" | grep '"provider":"suno"' | tail -n 1 |
	    jq -e '.body.instrumental==true and .accepted==true'
}

@test "suno: errors hide in HTTP 200 bodies; [429] is a real 429" {
	run -0 curl -sS -w ' %{http_code}' -H 'Authorization: Bearer wrong' -X POST \
	    "$FAKE_URL/suno/api/v1/generate" -d '{"customMode":false,"instrumental":false,"prompt":"x"}'
	assert_output --partial ' 200'
	echo "${output% *}" | jq -e '.code==401'
	run -0 suno -w ' %{http_code}' -X POST "$FAKE_URL/suno/api/v1/generate" \
	    -d '{"customMode":false,"instrumental":false,"prompt":"broke [credits]"}'
	assert_output --partial ' 200'
	echo "${output% *}" | jq -e '.code==429'
	run -0 suno -w ' %{http_code}' -X POST "$FAKE_URL/suno/api/v1/generate" \
	    -d '{"customMode":false,"prompt":"no instrumental field"}'
	echo "${output% *}" | jq -e '.code==400'
	run -0 suno -i -X POST "$FAKE_URL/suno/api/v1/generate" \
	    -d '{"customMode":false,"instrumental":false,"prompt":"busy [429]"}'
	assert_line --regexp '^HTTP/1.1 429'
	assert_line --regexp '^Retry-After: 1'
	run -0 suno -X POST "$FAKE_URL/suno/api/v1/generate" \
	    -d '{"customMode":false,"instrumental":false,"prompt":"busy [429]"}'
	echo "$output" | jq -e '.code==200'
	run -0 suno -X POST "$FAKE_URL/suno/api/v1/generate" \
	    -d '{"customMode":false,"instrumental":false,"prompt":"song [fail]"}'
	tid=$(echo "$output" | jq -r .data.taskId)
	run -0 poll_until '.data.status|endswith("FAILED")' suno "$FAKE_URL/suno/api/v1/generate/record-info?taskId=$tid"
	echo "$output" | jq -e '.data.status=="GENERATE_AUDIO_FAILED" and .data.errorCode==501 and (.data.errorMessage|length>0)'
}

@test "elevenlabs: synchronous MP3, duration validated, key checked" {
	start=$(date +%s%N)
	run -0 curl -sS -H "xi-api-key: $FAKE_KEY" -H "$J" -o "$BATS_TEST_TMPDIR/e.mp3" -w '%{http_code} %{content_type}' \
	    -X POST "$FAKE_URL/elevenlabs/v1/sound-generation?output_format=mp3_44100_128" \
	    -d '{"text":"door creak","duration_seconds":2.5,"prompt_influence":0.3}'
	assert_output "200 audio/mpeg"
	[ $(( ($(date +%s%N) - start) / 1000000 )) -ge 200 ]
	run -0 file -b "$BATS_TEST_TMPDIR/e.mp3"
	assert_output --partial 'MPEG ADTS, layer III'
	run -0 curl -sS -H "xi-api-key: $FAKE_KEY" -H "$J" -w ' %{http_code}' \
	    -X POST "$FAKE_URL/elevenlabs/v1/sound-generation" -d '{"text":"x","duration_seconds":31}'
	assert_output --partial ' 422'
	echo "${output% *}" | jq -e '.detail.status=="invalid_duration"'
	run -0 curl -sS -H "xi-api-key: nope" -w ' %{http_code}' \
	    -X POST "$FAKE_URL/elevenlabs/v1/sound-generation" -d '{"text":"x"}'
	assert_output --partial ' 401'
	echo "${output% *}" | jq -e '.detail.status=="invalid_api_key"'
}

@test "blockade: skybox pending to complete, HDRI export gives a Radiance .hdr" {
	run -0 sky -X POST "$FAKE_URL/blockade/api/v1/skybox" -d '{"prompt":"misty alpine valley","skybox_style_id":67}'
	echo "$output" | jq -e '.status=="pending" and (.id|type=="number") and .file_url==""'
	id=$(echo "$output" | jq .id)
	obf=$(echo "$output" | jq -r .obfuscated_id)
	run -0 poll_until '.request.status=="complete"' sky "$FAKE_URL/blockade/api/v1/imagine/requests/$id"
	echo "$output" | jq -e '(.request.file_url|test("skybox.jpg")) and .request.error_message==null'
	run -0 curl -sS -o "$BATS_TEST_TMPDIR/s.jpg" -w '%{content_type}' "$(echo "$output" | jq -r .request.file_url)"
	assert_output image/jpeg
	run -0 sky "$FAKE_URL/blockade/api/v1/imagine/requests/obfuscated-id/$obf"
	echo "$output" | jq -e '.request.status=="complete"'
	run -0 sky -X POST "$FAKE_URL/blockade/api/v1/skybox/export" -d "{\"skybox_id\":\"$obf\",\"type_id\":4}"
	echo "$output" | jq -e '.type_id==4 and .type=="hdri-hdr" and .status=="pending"'
	eid=$(echo "$output" | jq -r .id)
	run -0 poll_until '.status=="complete"' sky "$FAKE_URL/blockade/api/v1/skybox/export/$eid"
	run -0 curl -sS -o "$BATS_TEST_TMPDIR/e.hdr" -w '%{content_type}' "$(echo "$output" | jq -r .file_url)"
	assert_output image/vnd.radiance
	run -0 file -b "$BATS_TEST_TMPDIR/e.hdr"
	assert_output --partial 'Radiance HDR'
	run -0 sky -X POST "$FAKE_URL/blockade/api/v1/skybox/export" -d "{\"skybox_id\":\"$obf\",\"type_id\":5}"
	eid=$(echo "$output" | jq -r .id)
	run -0 poll_until '.status=="complete"' sky "$FAKE_URL/blockade/api/v1/skybox/export/$eid"
	curl -sS -o "$BATS_TEST_TMPDIR/e.exr" "$(echo "$output" | jq -r .file_url)"
	run -0 file -b "$BATS_TEST_TMPDIR/e.exr"
	assert_output --partial 'OpenEXR'
	run -0 curl -sS -w ' %{http_code}' -X POST "$FAKE_URL/blockade/api/v1/skybox" -d '{"prompt":"x"}'
	assert_output --partial ' 401'
	run -0 curl -sS -w ' %{http_code}' -H 'x-api-key: bad' -X POST "$FAKE_URL/blockade/api/v1/skybox" -d '{"prompt":"x"}'
	assert_output --partial ' 403'
	run -0 sky -X POST "$FAKE_URL/blockade/api/v1/skybox" -d '{"prompt":"doomed [fail]"}'
	id=$(echo "$output" | jq .id)
	run -0 poll_until '.request.status=="error"' sky "$FAKE_URL/blockade/api/v1/imagine/requests/$id"
	echo "$output" | jq -e '.request.error_message|length>0'
}

@test "fal: the Platform API lists an endpoint's finished requests with their inputs, a page at a time" {
	local ep="fal-ai/list-$RANDOM" a b c out
	a=$(fal -X POST "$FAKE_URL/fal/$ep" -d '{"prompt":"list one"}' | jq -r .request_id)
	b=$(fal -X POST "$FAKE_URL/fal/$ep" -d '{"prompt":"list two","seed":7}' | jq -r .request_id)
	c=$(fal -X POST "$FAKE_URL/fal/$ep" -d '{"prompt":"still running [never]"}' | jq -r .request_id)
	run -0 poll_until '.items | length == 2' fal "$FAKE_URL/falapi/v1/models/requests/by-endpoint?endpoint_id=$ep"
	# Finished only, newest end first; no payloads unless asked.
	echo "$output" | jq -e --arg a "$a" --arg b "$b" '[.items[].request_id] | sort == ([$a, $b] | sort)'
	echo "$output" | jq -e '.has_more == false and .next_cursor == null'
	echo "$output" | jq -e '.items | all(has("json_input") | not)'
	echo "$output" | jq -e --arg ep "$ep" '.items | all(.endpoint_id == $ep and (.sent_at | type) == "string" and .status_code == 200)'
	run -0 fal "$FAKE_URL/falapi/v1/models/requests/by-endpoint?endpoint_id=$ep&expand=payloads&limit=1"
	echo "$output" | jq -e '.items | length == 1'
	echo "$output" | jq -e '.has_more == true and (.next_cursor | type) == "string"'
	echo "$output" | jq -e '.items[0].json_input.prompt | startswith("list ")'
	out=$(echo "$output" | jq -r .next_cursor)
	run -0 fal "$FAKE_URL/falapi/v1/models/requests/by-endpoint?endpoint_id=$ep&expand=payloads&limit=1&cursor=$out"
	echo "$output" | jq -e '.items | length == 1 and .[0].json_input.prompt != null'
	echo "$output" | jq -e '.has_more == false'
	echo "$output" | jq -e --arg c "$c" '[.items[].request_id] | index($c) == null'
	# A start after the ends lists nothing; bad arguments and keys are refused.
	run -0 fal "$FAKE_URL/falapi/v1/models/requests/by-endpoint?endpoint_id=$ep&start=2099-01-01T00:00:00Z"
	echo "$output" | jq -e '.items == []'
	run -0 curl -sS -w ' %{http_code}' -H "Authorization: Key $FAKE_KEY" "$FAKE_URL/falapi/v1/models/requests/by-endpoint"
	assert_output --partial ' 422'
	run -0 curl -sS -w ' %{http_code}' -H 'Authorization: Key bad' "$FAKE_URL/falapi/v1/models/requests/by-endpoint?endpoint_id=$ep"
	assert_output --partial ' 401'
}

@test "fal: queue submit, IN_QUEUE/IN_PROGRESS/COMPLETED, result with a file URL" {
	run -0 fal -X POST "$FAKE_URL/fal/fal-ai/flux/dev" -d '{"prompt":"rusty metal panel [slow:4000]","image_size":{"width":512,"height":256}}'
	rid=$(echo "$output" | jq -r .request_id)
	echo "$output" | jq -e --arg u "$FAKE_URL/fal/fal-ai/flux/requests/$rid" \
	    '.response_url==$u and .status_url==($u+"/status") and .cancel_url==($u+"/cancel")'
	st=$(echo "$output" | jq -r .status_url)
	rs=$(echo "$output" | jq -r .response_url)
	run -0 fal -w ' %{http_code}' "$st"
	assert_output --partial ' 202'
	echo "${output% *}" | jq -e '.status=="IN_QUEUE"'
	run -0 fal -w ' %{http_code}' "$rs"
	assert_output --partial ' 400'
	sleep 1.5
	run -0 fal "$st?logs=1"
	echo "$output" | jq -e '.status=="IN_PROGRESS" and (.logs|type=="array")'
	run -0 poll_until '.status=="COMPLETED"' fal "$st"
	echo "$output" | jq -e '(.error|not) and .metrics.inference_time>0'
	run -0 fal "$rs"
	echo "$output" | jq -e '.images[0].width==512 and .images[0].height==256 and .images[0].content_type=="image/png"'
	run -0 curl -sS -o "$BATS_TEST_TMPDIR/f.png" -w '%{content_type}' "$(echo "$output" | jq -r '.images[0].url')"
	run -0 file -b "$BATS_TEST_TMPDIR/f.png"
	assert_output --partial 'PNG image data, 512 x 256'
	run -0 curl -sS -w ' %{http_code}' -H 'Authorization: Key bad' -X POST "$FAKE_URL/fal/fal-ai/flux/dev" -d '{"prompt":"x"}'
	assert_output --partial ' 401'
	run -0 curl -sS -w ' %{http_code}' -X POST "$FAKE_URL/fal/fal-ai/flux/dev" -d '{"prompt":"x"}'
	assert_output --partial ' 401'
	# A failure is COMPLETED with an error, and the result is 422.
	run -0 fal -X POST "$FAKE_URL/fal/fal-ai/trellis" -d '{"prompt":"chair [fail]"}'
	st=$(echo "$output" | jq -r .status_url)
	rs=$(echo "$output" | jq -r .response_url)
	run -0 poll_until '.status=="COMPLETED"' fal "$st"
	echo "$output" | jq -e '.error_type=="generation_failed"'
	run -0 curl -sS -D - -o /dev/null -H "Authorization: Key $FAKE_KEY" "$rs"
	assert_line --regexp '^HTTP/1.1 422'
	assert_line --regexp '^X-Fal-Error-Type: generation_failed'
	# Model kinds follow the path.
	run -0 fal -X POST "$FAKE_URL/fal/fal-ai/trellis" -d '{"image_url":"https://example.com/a.png"}'
	rs=$(echo "$output" | jq -r .response_url)
	run -0 poll_until '.model_mesh.url' fal "$rs"
	echo "$output" | jq -e '.model_mesh.content_type=="model/gltf-binary"'
}

@test "faults: [429] once with Retry-After, [500x2] twice, [500] always" {
	run -0 curl -sS -i -H "Authorization: Bearer $FAKE_KEY" -X POST "$FAKE_URL/meshy/openapi/v2/text-to-3d" \
	    -d '{"mode":"preview","prompt":"rl [429]"}'
	assert_line --regexp '^HTTP/1.1 429'
	assert_line --regexp '^Retry-After: 1'
	run -0 mesh -o /dev/null -w '%{http_code}' -X POST "$FAKE_URL/meshy/openapi/v2/text-to-3d" -d '{"mode":"preview","prompt":"rl [429]"}'
	assert_output 202
	codes=$(for i in 1 2 3; do
		fal -o /dev/null -w '%{http_code} ' -X POST "$FAKE_URL/fal/fal-ai/flux/dev" -d '{"prompt":"flaky [500x2]"}'
	done)
	[ "$codes" = "500 503 200 " ]
	codes=$(for i in 1 2 3; do
		goog -o /dev/null -w '%{http_code} ' -X POST "$FAKE_URL/gemini/v1beta/models/veo-3.0-generate-001:predictLongRunning" \
		    -d '{"instances":[{"prompt":"down [500]"}]}'
	done)
	[ "$codes" = "503 503 503 " ]
	# A scoped marker hits only its provider.
	run -0 sky -o /dev/null -w '%{http_code}' -X POST "$FAKE_URL/blockade/api/v1/skybox" -d '{"prompt":"sc [500@suno]"}'
	assert_output 200
	run -0 fake_stats
	echo "$output" | jq -e '.creates_by_prompt["rl [429]"]==1 and .attempts_by_prompt["rl [429]"]==2
	    and .creates_by_prompt["flaky [500x2]"]==1 and (.creates_by_prompt["down [500]"]|not)'
}

@test "faults: [fail] in meshy, [never] stays processing, [slow:MS] takes longer" {
	id=$(meshy_preview "broken [fail]")
	run -0 meshy_done "$id"
	echo "$output" | jq -e '.status=="FAILED" and .task_error.message=="Internal server error." and .model_urls=={}'
	nid=$(meshy_preview "stuck [never]")
	sid=$(meshy_preview "slowly [slow:1500]")
	sleep 0.6
	mesh "$FAKE_URL/meshy/openapi/v2/text-to-3d/$nid" | jq -e '.status=="IN_PROGRESS" and .progress<50'
	mesh "$FAKE_URL/meshy/openapi/v2/text-to-3d/$sid" | jq -e '.status=="IN_PROGRESS"'
	run -0 meshy_done "$sid"
	echo "$output" | jq -e '.status=="SUCCEEDED"'
	mesh "$FAKE_URL/meshy/openapi/v2/text-to-3d/$nid" | jq -e '.status=="IN_PROGRESS"'
}

@test "faults: [expired] first download refused, a fresh poll's URL works" {
	id=$(meshy_preview "old link [expired]")
	url1=$(meshy_done "$id" | jq -r .model_urls.glb)
	run -0 curl -sS -o /dev/null -w '%{http_code}' "$url1"
	assert_output 403
	run -0 curl -sS -o /dev/null -w '%{http_code}' "$url1"
	assert_output 403
	url2=$(mesh "$FAKE_URL/meshy/openapi/v2/text-to-3d/$id" | jq -r .model_urls.glb)
	[ "$url1" != "$url2" ]
	run -0 curl -sS -o /dev/null -w '%{http_code}' "$url2"
	assert_output 200
	# fal answers 410 Gone.
	run -0 fal -X POST "$FAKE_URL/fal/fal-ai/flux/dev" -d '{"prompt":"fal link [expired]"}'
	rs=$(echo "$output" | jq -r .response_url)
	u=$(poll_until '.images' fal "$rs" | jq -r '.images[0].url')
	run -0 curl -sS -o /dev/null -w '%{http_code}' "$u"
	assert_output 410
	u=$(fal "$rs" | jq -r '.images[0].url')
	run -0 curl -sS -o /dev/null -w '%{http_code}' "$u"
	assert_output 200
}

@test "faults: [truncated], [html], [badtype] downloads" {
	id=$(meshy_preview "cut [truncated]")
	url=$(meshy_done "$id" | jq -r .model_urls.glb)
	run -18 curl -sS -o /dev/null "$url"
	id=$(meshy_preview "page [html]")
	url=$(meshy_done "$id" | jq -r .model_urls.glb)
	run -0 curl -sS -w ' %{http_code} %{content_type}' "$url"
	assert_output --regexp '^<!DOCTYPE html>.* 200 text/html'
	# Thumbnails are not affected.
	run -0 curl -sS -o /dev/null -w '%{http_code} %{content_type}' "$(mesh "$FAKE_URL/meshy/openapi/v2/text-to-3d/$id" | jq -r .thumbnail_url)"
	assert_output '200 image/png'
	id=$(meshy_preview "wrong [badtype]")
	url=$(meshy_done "$id" | jq -r .model_urls.glb)
	run -0 curl -sS -o "$BATS_TEST_TMPDIR/b" -w '%{content_type}' "$url"
	assert_output model/gltf-binary
	run -0 file -b "$BATS_TEST_TMPDIR/b"
	assert_output --partial 'PNG image'
	run -0 curl -sS -H "xi-api-key: $FAKE_KEY" -H "$J" -o "$BATS_TEST_TMPDIR/e" \
	    -X POST "$FAKE_URL/elevenlabs/v1/sound-generation" -d '{"text":"boom [badtype]"}'
	run -0 file -b "$BATS_TEST_TMPDIR/e"
	assert_output --partial 'PNG image'
	run -18 curl -sS -H "xi-api-key: $FAKE_KEY" -H "$J" -o /dev/null \
	    -X POST "$FAKE_URL/elevenlabs/v1/sound-generation" -d '{"text":"boom [truncated]"}'
}

@test "faults: [hang] times the client out but the job exists and is listed" {
	run -28 mesh -m 0.5 -X POST "$FAKE_URL/meshy/openapi/v2/text-to-3d" -d '{"mode":"preview","prompt":"lost [hang:3000]"}'
	run -0 mesh "$FAKE_URL/meshy/openapi/v2/text-to-3d?page_size=50"
	echo "$output" | jq -e '[.[]|select(.prompt=="lost [hang:3000]")]|length==1'
	[ "$(fstat '.creates_by_prompt["lost [hang:3000]"]')" = 1 ]
	# Only the first create hangs.
	run -0 mesh -m 2 -o /dev/null -w '%{http_code}' -X POST "$FAKE_URL/meshy/openapi/v2/text-to-3d" -d '{"mode":"preview","prompt":"lost [hang:3000]"}'
	assert_output 202
	grep -F 'lost [hang:3000]' "$FAKE_LOG" | head -n 1 | jq -e '.event=="create" and .accepted==true and .delay_ms==3000'
}

@test "stats: in-flight and max concurrency by provider and tag; reset" {
	fake_reset
	for i in 1 2 3; do
		fal -X POST "$FAKE_URL/fal/fal-ai/flux/dev" -d "{\"prompt\":\"p$i [tag:grp]\"}" >"$BATS_TEST_TMPDIR/r$i" &
	done
	wait
	run -0 fake_stats
	echo "$output" | jq -e '.in_flight==3 and .max_concurrent.fal==3 and .max_concurrent_by_tag.grp==3 and .creates_accepted.fal==3'
	for i in 1 2 3; do
		st=$(jq -r .status_url "$BATS_TEST_TMPDIR/r$i")
		poll_until '.status=="COMPLETED"' fal "$st" >/dev/null
	done
	run -0 fake_stats
	echo "$output" | jq -e '.in_flight==0 and .max_concurrent_by_tag.grp==3'
	# Synchronous calls are in flight while answered.
	for i in 1 2; do
		curl -sS -o /dev/null -H "xi-api-key: $FAKE_KEY" -X POST "$FAKE_URL/elevenlabs/v1/sound-generation" \
		    -d "{\"text\":\"s$i [tag:sfx]\"}" &
	done
	wait
	[ "$(fstat '.max_concurrent_by_tag.sfx')" = 2 ]
	[ "$(fstat '.in_flight')" = 0 ]
	fake_reset
	run -0 fake_stats
	echo "$output" | jq -e '.creates_accepted=={} and .in_flight==0 and .jobs==0'
}

@test "log: one JSON object per request with the documented fields" {
	run -0 jq -c -s 'length' "$FAKE_LOG"
	[ "$output" -gt 20 ]
	run -0 jq -e -s 'all(.[]; has("ts") and has("provider") and has("method") and has("path")
	    and has("query") and has("headers") and has("body") and has("status") and has("event")
	    and has("job_id") and has("tag") and has("accepted"))' "$FAKE_LOG"
	run -0 jq -e -s '[.[]|select(.event=="create" and .accepted==true)]|length>5' "$FAKE_LOG"
	run -0 jq -e -s '[.[]|select(.event=="poll")]|length>5' "$FAKE_LOG"
	# Only Veo's downloads carried a key.
	run -0 jq -r -s '[.[]|select(.event=="download" and .key_sent)|.provider]|unique|join(",")' "$FAKE_LOG"
	assert_output veo
}

@test "fake: different jobs give different bytes; [same] gives the same" {
	a=$(meshy_preview "cube one")
	b=$(meshy_preview "cube two")
	c=$(meshy_preview "cube three [same]")
	d=$(meshy_preview "cube four [same]")
	for j in $a $b $c $d; do
		curl -sS "$(meshy_done "$j" | jq -r .model_urls.glb)" | sha256sum | cut -c1-64
	done >"$BATS_TEST_TMPDIR/h"
	run -0 sort -u "$BATS_TEST_TMPDIR/h"
	[ "${#lines[@]}" -eq 3 ]
}
