#!/usr/bin/env bats
# The built-in local generators, through mi-generate: every media type is
# checked by an independent tool (pngcheck and a zlib decoder for PNG,
# soxi for WAV, ffprobe/ffmpeg for MP4, the Khronos glTF validator for GLB,
# a Python RGBE decoder and three.js's loader for .hdr), plus determinism
# and error handling.

bats_require_minimum_version 1.5.0
load test_helper

FX="$BATS_TEST_DIRNAME/fixtures/localgen"

setup_file() {
	export OUT="$BATS_FILE_TMPDIR/out"
	mkdir -p "$OUT"
}

# gen TYPE PROMPT FILE [key=value ...]: one file through the option form.
gen() {
	local type=$1 prompt=$2 file=$3 kv args=()
	shift 3
	for kv in "$@"; do
		args+=(-P "$kv")
	done
	mi-generate -t "$type" -p "$prompt" -o "$file" "${args[@]}"
}

sha() {
	sha256sum "$1" | cut -d' ' -f1
}

# frame FILE N OUT: decodes frame N (or "last") of a video to a PNG.
frame() {
	if [ "$2" = last ]; then
		ffmpeg -v error -sseof -0.3 -i "$1" -update 1 -y "$3"
	else
		ffmpeg -v error -i "$1" -vf "select=eq(n\\,$2)" -frames:v 1 \
		    -y "$3"
	fi
}

psnr() {
	ffmpeg -hide_banner -i "$1" -i "$2" -lavfi psnr -f null - 2>&1 |
	    sed -n 's/.*average:\([0-9.inf]*\).*/\1/p'
}

@test "mi-generate: --help, --version, bad usage" {
	run -0 mi-generate --help
	assert_line --partial 'usage: mi-generate'
	run -0 mi-generate --version
	assert_output 'mi-generate 0.1.0'
	run -64 --separate-stderr mi-generate --bogus
	[[ $stderr == *"mi-generate: unknown option '--bogus'"* ]]
	run -64 mi-generate -p 'a prompt without a type'
	run -64 mi-generate -t image -P novalue
}

@test "image: a PNG of the requested size" {
	run -0 gen image 'neon arcade prize wheel' "$OUT/img.png" \
	    width=800 height=600
	jq -e '.media_type == "image" and .mime_type == "image/png"' <<<"$output"
	run -0 pngcheck "$OUT/img.png"
	assert_output --partial '800x600, 24-bit RGB'
	run -0 file -b "$OUT/img.png"
	assert_output --partial 'PNG image data, 800 x 600'
	run -0 python3 "$FX/png_info.py" "$OUT/img.png"
	jq -e '.width == 800 and .height == 600' <<<"$output"
}

@test "texture: power-of-two, seamless by default (edges continue)" {
	run -0 gen texture 'mossy stone tiles' "$OUT/tex.png" width=512 \
	    height=512
	run -0 pngcheck "$OUT/tex.png"
	run -0 python3 "$FX/png_info.py" "$OUT/tex.png"
	echo "$output"
	# The wrap-around seam differs no more than neighbouring pixels do.
	jq -e '.width == 512 and .height == 512 and
	    .edge_x <= 4 * .step_x + 2 and .edge_y <= 4 * .step_y + 2' \
	    <<<"$output"
	# A non-seamless picture of the same prompt has a visible seam.
	run -0 gen texture 'mossy stone tiles' "$OUT/tex2.png" width=512 \
	    height=512 seamless=false
	run -0 python3 "$FX/png_info.py" "$OUT/tex2.png"
	jq -e '.edge_x > 4 * .step_x + 2 or .edge_y > 4 * .step_y + 2' \
	    <<<"$output"
	run -65 --separate-stderr gen texture 'x' "$OUT/bad.png" width=600 \
	    height=512
	[[ $stderr == *"not a power of two"* ]]
	run -65 gen image 'x' "$OUT/bad.png" width=256
}

@test "texture: 4096x4096 in a few seconds" {
	local t0=$SECONDS
	run -0 gen texture 'brushed gold' "$OUT/big.png" width=4096 \
	    height=4096
	# The time of the plain build: sanitizers and valgrind measure
	# themselves (make check SANITIZE=..., VALGRIND=1).
	if [ -z "${SANITIZE:-}" ] && [ "${VALGRIND:-0}" = 0 ]; then
		[ $((SECONDS - t0)) -le 8 ]
	fi
	run -0 pngcheck "$OUT/big.png"
	assert_output --partial '4096x4096'
}

@test "environment_map: Radiance RGBE, 2:1, a sun far above 1.0" {
	run -0 gen environment_map 'sunset over the casino' "$OUT/env.hdr" \
	    width=512
	jq -e '.mime_type == "image/vnd.radiance"' <<<"$output"
	run -0 head -c 11 "$OUT/env.hdr"
	assert_output '#?RADIANCE'
	run -0 grep -a -c -e '^FORMAT=32-bit_rle_rgbe$' -e '^-Y 256 +X 512$' \
	    "$OUT/env.hdr"
	assert_output 2
	run -0 python3 "$FX/hdr_info.py" "$OUT/env.hdr"
	echo "$output"
	jq -e '.width == 512 and .height == 256 and .bytes_left == 0 and
	    .max > 10 and .min >= 0' <<<"$output"
	# three.js loads it as a browser viewer would.
	run -0 node "$FX/hdr_three.mjs" "$OUT/env.hdr"
	jq -e '.width == 512 and .height == 256 and .pixels == 131072 and
	    .max > 10' <<<"$output"
	run -65 --separate-stderr gen environment_map 'x' "$OUT/e.exr" \
	    format=exr
	[[ $stderr == *"format 'exr' not supported"* ]]
}

@test "model_3d: every shape passes the glTF validator with PBR textures" {
	local s
	for s in wheel card coin stage plate; do
		run -0 gen model_3d "a shiny $s" "$OUT/$s.glb"
		jq -e '.mime_type == "model/gltf-binary"' <<<"$output"
	done
	run -0 node "$FX/glb_info.js" "$OUT"/{wheel,card,coin,stage,plate}.glb
	echo "$output"
	[ "${#lines[@]}" -eq 5 ]
	for s in "${lines[@]}"; do
		jq -e '.errors == 0 and .triangles > 100 and
		    .triangles <= 50000 and .baseColor and .metallicRoughness and
		    .normal and .images == ["image/png","image/png","image/png"]
		    and .attributes == ["NORMAL","POSITION","TANGENT",
		    "TEXCOORD_0"]' <<<"$s"
	done
	# The prompt's words pick the shape.
	jq -s -e 'map(.node) == ["wheel","card","coin","stage","plate"]' \
	    <<<"$output"
}

@test "model_3d: the triangle budget holds" {
	run -0 gen model_3d 'prize wheel' "$OUT/small.glb" max_triangles=1500
	run -0 node "$FX/glb_info.js" "$OUT/small.glb"
	jq -e '.errors == 0 and .triangles <= 1500 and .triangles > 300' \
	    <<<"$output"
	run -0 gen model_3d 'a coin' "$OUT/nopbr.glb" pbr=false shape='"coin"'
	run -0 node "$FX/glb_info.js" "$OUT/nopbr.glb"
	jq -e '.errors == 0 and .baseColor and (.normal | not)' <<<"$output"
	run -65 --separate-stderr gen model_3d 'prize wheel' "$OUT/x.glb" \
	    max_triangles=10
	[[ $stderr == *"max_triangles 10 too small"* ]]
	run -65 gen model_3d 'prize wheel' "$OUT/x.glb" max_triangles=60000
	run -65 gen model_3d 'x' "$OUT/x.glb" shape=teapot
}

@test "audio_sfx: every type is a distinct 44.1 kHz mono 16-bit WAV" {
	local t
	declare -A seen
	for t in click spin flip scratch match win lose countdown reveal \
	    confetti; do
		run -0 gen audio_sfx 'arcade' "$OUT/$t.wav" sfx_type="$t" \
		    duration_sec=1.5
		run -0 soxi -r "$OUT/$t.wav"
		assert_output 44100
		run -0 soxi -c "$OUT/$t.wav"
		assert_output 1
		run -0 soxi -b "$OUT/$t.wav"
		assert_output 16
		run -0 soxi -s "$OUT/$t.wav"
		assert_output 66150
		seen[$(sha "$OUT/$t.wav")]=$t
	done
	[ "${#seen[@]}" -eq 10 ]
}

@test "audio_sfx: duration bounds, defaults and bad types" {
	run -0 gen audio_sfx 'x' "$OUT/short.wav" sfx_type=click duration_sec=0.5
	run -0 soxi -s "$OUT/short.wav"
	assert_output 22050
	run -0 gen audio_sfx 'x' "$OUT/long.wav" sfx_type=confetti duration_sec=5
	run -0 soxi -D "$OUT/long.wav"
	assert_output 5.000000
	# No type: taken from the prompt.
	run -0 gen audio_sfx 'a countdown to the draw' "$OUT/cd.wav"
	run -0 soxi -D "$OUT/cd.wav"
	assert_output 4.000000
	run -65 --separate-stderr gen audio_sfx 'x' "$OUT/b.wav" sfx_type=boom
	[[ $stderr == *"unknown sfx_type 'boom'"*"click, spin, flip, scratch"* ]]
	run -65 gen audio_sfx 'x' "$OUT/b.wav" sfx_type=win duration_sec=6
	run -65 gen audio_sfx 'x' "$OUT/b.wav" sfx_type=win duration_sec=0.2
}

@test "audio_bgm: every genre, exact duration, fast" {
	local g
	declare -A seen
	for g in electronic orchestral rock jazz ambient pop hip-hop; do
		run -0 gen audio_bgm 'casino night' "$OUT/$g.wav" genre="$g" \
		    duration_sec=30
		run -0 soxi -s "$OUT/$g.wav"
		assert_output 661500
		seen[$(sha "$OUT/$g.wav")]=$g
	done
	[ "${#seen[@]}" -eq 7 ]
	local t0=$SECONDS
	run -0 gen audio_bgm 'epic finale' "$OUT/long.wav" genre=orchestral \
	    duration_sec=120
	[ $((SECONDS - t0)) -le $((4 * MI_TEST_SLOW)) ]
	run -0 soxi -D "$OUT/long.wav"
	assert_output 120.000000
	run -0 soxi -r "$OUT/long.wav"
	assert_output 22050
	run -65 --separate-stderr gen audio_bgm 'x' "$OUT/b.wav" genre=polka
	[[ $stderr == *"unknown genre 'polka'"* ]]
	run -65 gen audio_bgm 'x' "$OUT/b.wav" duration_sec=20
}

@test "video: H.264 MP4, size, duration, faststart; a loop closes" {
	run -0 --separate-stderr mi-generate -v -t video -p 'neon wheel' \
	    -o "$OUT/loop.mp4" -P duration_sec=4 -P resolution=480p -P loop=true
	jq -e '.mime_type == "video/mp4"' <<<"$output"
	[[ $stderr == *"mi-generate: 100%"* ]]
	run -0 ffprobe -v error -select_streams v:0 -show_entries \
	    stream=codec_name,width,height,pix_fmt -show_entries \
	    format=duration -of json "$OUT/loop.mp4"
	jq -e '.streams[0] == {"codec_name":"h264","width":854,"height":480,
	    "pix_fmt":"yuv420p"} and (.format.duration | tonumber - 4 |
	    fabs < 0.05)' <<<"$output"
	run -0 python3 "$FX/mp4_boxes.py" "$OUT/loop.mp4"
	[[ $output == *moov*mdat* ]]
	frame "$OUT/loop.mp4" 0 "$OUT/l0.png"
	frame "$OUT/loop.mp4" last "$OUT/l1.png"
	frame "$OUT/loop.mp4" 60 "$OUT/lm.png"
	local closed mid
	closed=$(psnr "$OUT/l0.png" "$OUT/l1.png")
	mid=$(psnr "$OUT/l0.png" "$OUT/lm.png")
	echo "first/last $closed dB, first/middle $mid dB"
	awk -v c="$closed" -v m="$mid" 'BEGIN { exit !(c > 30 && m < c - 8) }'
}

@test "video: aspect ratios, and a drift that does not loop" {
	run -0 gen video 'slot machine' "$OUT/sq.mp4" duration_sec=4 \
	    resolution=480p aspect_ratio='"1:1"'
	run -0 ffprobe -v error -select_streams v:0 -show_entries \
	    stream=width,height -of csv=p=0 "$OUT/sq.mp4"
	assert_output '480,480'
	frame "$OUT/sq.mp4" 0 "$OUT/s0.png"
	frame "$OUT/sq.mp4" last "$OUT/s1.png"
	awk -v c="$(psnr "$OUT/s0.png" "$OUT/s1.png")" 'BEGIN { exit !(c < 30) }'
	run -0 gen video 'slot machine' "$OUT/tall.mp4" duration_sec=4 \
	    resolution=480p aspect_ratio=9:16
	run -0 ffprobe -v error -select_streams v:0 -show_entries \
	    stream=width,height -of csv=p=0 "$OUT/tall.mp4"
	assert_output '480,854'
	run -65 gen video 'x' "$OUT/b.mp4" duration_sec=3
	run -65 gen video 'x' "$OUT/b.mp4" resolution=4k
	run -65 gen video 'x' "$OUT/b.mp4" aspect_ratio=4:3
}

@test "video: from a reference image, by path or stored asset uri" {
	run -0 gen image 'lucky seven' "$OUT/ref.png" width=640 height=512
	run -0 gen video 'x' "$OUT/ref.mp4" duration_sec=4 resolution=480p \
	    reference_image="$OUT/ref.png"
	run -0 ffprobe -v error -show_entries format=duration -of csv=p=0 \
	    "$OUT/ref.mp4"
	mkdir -p "$OUT/store/org_x/run/image"
	cp "$OUT/ref.png" "$OUT/store/org_x/run/image/ref.png"
	ASSET_STORAGE_DIR="$OUT/store" run -0 gen video 'x' "$OUT/ref2.mp4" \
	    duration_sec=4 resolution=480p \
	    reference_image=/api/assets/org_x/run/image/ref.png
	[ "$(sha "$OUT/ref.mp4")" = "$(sha "$OUT/ref2.mp4")" ]
	run -65 gen video 'x' "$OUT/b.mp4" reference_image="$OUT/none.png"
	ASSET_STORAGE_DIR="$OUT/store" run -65 gen video 'x' "$OUT/b.mp4" \
	    reference_image=/api/assets/org_x/../../etc/passwd
}

@test "video: scenes with captions, crossfades and a music track" {
	run -0 gen image 'lucky seven' "$OUT/scene.png" width=640 height=512
	run -0 gen video 'grand opening' "$OUT/scenes.mp4" resolution=480p \
	    music=true "scenes=[{\"caption\":\"Spin to win!\",\"duration\":3},
	    {\"image\":\"$OUT/scene.png\",\"caption\":\"Gold\"},{}]" \
	    duration_sec=9
	run -0 ffprobe -v error -show_entries stream=codec_name,nb_frames \
	    -show_entries format=duration -of json "$OUT/scenes.mp4"
	echo "$output"
	jq -e '[.streams[].codec_name] == ["h264","aac"] and
	    .streams[0].nb_frames == "270" and
	    (.format.duration | tonumber - 9 | fabs < 0.1)' <<<"$output"
	run -0 python3 "$FX/mp4_boxes.py" "$OUT/scenes.mp4"
	[[ $output == *moov*mdat* ]]
	run -65 gen video 'x' "$OUT/b.mp4" 'scenes=[{"duration":0.5},{}]'
	run -65 gen video 'x' "$OUT/b.mp4" 'scenes=[{},{},{},{},{},{},{},{},{}]'
	run -65 gen video 'x' "$OUT/b.mp4" 'scenes=[{"duration":9},{"duration":9}]'
	run -65 gen video 'x' "$OUT/b.mp4" 'scenes=[{"image":"/nonexistent.png"}]'
	run -65 gen video 'x' "$OUT/b.mp4" music=polka
}

@test "video: ffmpeg missing is 69, ffmpeg failing is 70" {
	MI_FFMPEG=/nonexistent/ffmpeg run -69 --separate-stderr \
	    gen video 'x' "$OUT/n.mp4"
	[[ $stderr == *"unable to run '/nonexistent/ffmpeg'"* ]]
	MI_FFMPEG=false run -70 gen video 'x' "$OUT/n.mp4"
	[ ! -e "$OUT/n.mp4" ]
}

@test "determinism: same request, same bytes; another prompt, other bytes" {
	local t p
	for t in image:width=512 texture:width=512 environment_map:width=256 \
	    model_3d:max_triangles=3000 audio_sfx:sfx_type=win \
	    audio_bgm:duration_sec=30 video:duration_sec=4; do
		p=${t#*:}
		t=${t%%:*}
		run -0 gen "$t" 'golden prize wheel' "$OUT/d1" "$p"
		run -0 gen "$t" 'golden prize wheel' "$OUT/d2" "$p"
		run -0 gen "$t" 'silver coin shower' "$OUT/d3" "$p"
		[ "$(sha "$OUT/d1")" = "$(sha "$OUT/d2")" ]
		[ "$(sha "$OUT/d1")" != "$(sha "$OUT/d3")" ]
	done
}

@test "requests on stdin: content-addressed files, error records, exit 1" {
	mkdir -p "$OUT/dir"
	run -1 --separate-stderr mi-generate -d "$OUT/dir" <<-'EOF'
	{"tenant_id":"org_a","run_id":"r1","media_type":"audio_sfx","prompt":"ding","params":{"sfx_type":"match"}}
	{"media_type":"hologram","prompt":"x"}
	{"media_type":"image",
	 "prompt":"poster","params":{"width":512,"height":512}}
	{"media_type":"audio_sfx","error":{"code":"TIMEOUT","message":"m","retryable":true}}
	{"media_type":
	EOF
	echo "$output"
	[ "${#lines[@]}" -eq 5 ]
	jq -e --arg d "$OUT/dir" '.tenant_id == "org_a" and .run_id == "r1" and
	    .path == ($d + "/" + .content_hash + ".wav")' <<<"${lines[0]}"
	jq -e '.error.code == "VALIDATION_ERROR" and
	    (.error.message | contains("hologram"))' <<<"${lines[1]}"
	jq -e '.media_type == "image" and .size_bytes > 1000' <<<"${lines[2]}"
	jq -e '.error.code == "TIMEOUT"' <<<"${lines[3]}"
	jq -e '.error.code == "INVALID_JSON"' <<<"${lines[4]}"
	[ "$(sha "$(jq -r .path <<<"${lines[2]}")")" = \
	    "$(jq -r .content_hash <<<"${lines[2]}")" ]
	[ "$(find "$OUT/dir" -type f | wc -l)" -eq 2 ]
	[[ $stderr == *"mi-generate: "*"hologram"* ]]
}
