#!/usr/bin/env bats
# A real browser: headless Chromium (Debian's, driven by playwright-core)
# opens a Three.js page served from one origin (python3 -m http.server on
# test/) that loads a GLB and a Radiance HDR from mi-serve on another port
# through signed URLs made by mi-store, renders them with WebGL
# (SwiftShader), and reports the meshes it built.  The screenshot is kept
# in $MI_SCREENSHOTS when set, else in the file's temporary directory.

load test_helper

stop_pid() {
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

setup_file() {
	mi_setup_db
	mi_setup_store
	export SIGNKEY=browser-signing-key-0123456789
	export PS=$(free_port) PW=$(free_port)
	export RUN=$(uuid)
	local gen="$BATS_FILE_TMPDIR/gen"
	mkdir -p "$gen"
	mi-generate -t model_3d -p 'neon prize wheel' -o "$gen/wheel.glb" >/dev/null
	mi-generate -t environment_map -p 'casino at sunset' -P width=512 \
	    -o "$gen/sky.hdr" >/dev/null
	MI_URL_SIGNING_KEY="$SIGNKEY" MI_PUBLIC_URL="http://127.0.0.1:$PS" \
	    mi-store --tenant org_web --run "$RUN" --type model_3d "$gen/wheel.glb" \
	    >"$BATS_FILE_TMPDIR/glb.json"
	MI_URL_SIGNING_KEY="$SIGNKEY" MI_PUBLIC_URL="http://127.0.0.1:$PS" \
	    mi-store --tenant org_web --run "$RUN" --type environment_map \
	    "$gen/sky.hdr" >"$BATS_FILE_TMPDIR/hdr.json"

	env -u MI_JWT_SECRET -u MI_JWT_PUBLIC_KEY -u MI_CORS_ORIGINS \
	    MI_URL_SIGNING_KEY="$SIGNKEY" mi-serve --access-log \
	    --listen "127.0.0.1:$PS" 2>"$BATS_FILE_TMPDIR/serve.log" 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/serve.pid"
	python3 -m http.server "$PW" --bind 127.0.0.1 \
	    --directory "$BATS_TEST_DIRNAME" >"$BATS_FILE_TMPDIR/web.log" 2>&1 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/web.pid"
	local i
	for i in $(seq 300); do
		curl -fs -o /dev/null "http://127.0.0.1:$PS/healthz" &&
		    curl -fs -o /dev/null "http://127.0.0.1:$PW/browser/index.html" &&
		    return 0
		sleep 0.1
	done
	return 1
}

teardown_file() {
	stop_pid "$BATS_FILE_TMPDIR/serve.pid"
	stop_pid "$BATS_FILE_TMPDIR/web.pid"
}

# Meshes three.js builds for the default scene: one per primitive of
# every node's mesh, children included.
expected_meshes() {
	python3 - "$1" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack_from("<I", b, 12)[0]
g = json.loads(b[20:20 + n])
def count(i):
    node = g["nodes"][i]
    c = len(g["meshes"][node["mesh"]]["primitives"]) if "mesh" in node else 0
    return c + sum(count(k) for k in node.get("children", []))
print(sum(count(i) for i in g["scenes"][g.get("scene", 0)]["nodes"]))
EOF
}

@test "Chromium renders a GLB lit by an HDR, both from mi-serve by signed URL" {
	local glb hdr want shot page
	glb=$(jq -r .signed_url "$BATS_FILE_TMPDIR/glb.json")
	hdr=$(jq -r .signed_url "$BATS_FILE_TMPDIR/hdr.json")
	[[ $glb == "http://127.0.0.1:$PS/api/assets/org_web/$RUN/model_3d/"*".glb?exp="*"&sig="* ]]
	[[ $hdr == "http://127.0.0.1:$PS/api/assets/org_web/$RUN/environment_map/"*".hdr?exp="*"&sig="* ]]
	want=$(expected_meshes "$BATS_FILE_TMPDIR/gen/wheel.glb")
	[ "$want" -ge 1 ]
	shot="${MI_SCREENSHOTS:-$BATS_FILE_TMPDIR}/browser.png"
	mkdir -p "$(dirname "$shot")"
	page="http://127.0.0.1:$PW/browser/index.html?glb=$(jq -rn --arg u "$glb" '$u|@uri')&hdr=$(jq -rn --arg u "$hdr" '$u|@uri')"

	run -0 --separate-stderr node "$BATS_TEST_DIRNAME/browser/run.mjs" "$page" "$shot"
	echo "$output" | jq -e --argjson m "$want" '
	    .result.ok == true and .result.meshes == $m and
	    .result.triangles > 0 and
	    .result.hdr == {"width": 512, "height": 256} and
	    (.result.renderer | startswith("WebGL")) and
	    .failed == [] and .errors == []'
	# Both assets came from mi-serve, cross-origin, answered 200.
	echo "$output" | jq -e --arg p "http://127.0.0.1:$PS/api/assets/" '
	    [.seen[] | select(.url | startswith($p)) | .status] == [200, 200]'
	grep -q "\"GET /api/assets/org_web/$RUN/model_3d/.*\.glb\" 200 " "$BATS_FILE_TMPDIR/serve.log"
	grep -q "\"GET /api/assets/org_web/$RUN/environment_map/.*\.hdr\" 200 " "$BATS_FILE_TMPDIR/serve.log"
	# A screenshot of the rendered frame, not a blank page.
	[ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
	[ "$(stat -c %s "$shot")" -gt 10000 ]
}

@test "the same page without signatures loads nothing" {
	local glb hdr page shot="$BATS_FILE_TMPDIR/refused.png"
	glb=$(jq -r .signed_url "$BATS_FILE_TMPDIR/glb.json")
	hdr=$(jq -r .signed_url "$BATS_FILE_TMPDIR/hdr.json")
	glb=${glb%%\?*}
	hdr=${hdr%%\?*}
	page="http://127.0.0.1:$PW/browser/index.html?glb=$(jq -rn --arg u "$glb" '$u|@uri')&hdr=$(jq -rn --arg u "$hdr" '$u|@uri')"
	run -1 --separate-stderr node "$BATS_TEST_DIRNAME/browser/run.mjs" "$page" "$shot"
	# Refused without credentials: a 404 that, with no origin list
	# configured, carries no CORS grant either, so the page gets nothing.
	echo "$output" | jq -e --arg g "$glb" --arg h "$hdr" '
	    .result.ok == false and ([.failed[].url] | sort) == ([$g, $h] | sort)'
	grep -q "\"GET ${glb#http://127.0.0.1:$PS}\" 404 .* no_credentials" "$BATS_FILE_TMPDIR/serve.log"
	grep -q "\"GET ${hdr#http://127.0.0.1:$PS}\" 404 .* no_credentials" "$BATS_FILE_TMPDIR/serve.log"
}
