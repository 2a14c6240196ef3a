#!/usr/bin/env bats
# make demo's script: a whole campaign offline through the real pipeline,
# served by mi-serve; every printed URL works; a second run stores nothing
# new; the cluster stays reachable from a clone the postgres user cannot
# enter; a foreign server on a port is never taken for the demo's own;
# demo-stop says what it stopped.

load test_helper

setup_file() {
	# A clone-like path the postgres user cannot enter, as /root (0700) is:
	# the demo keeps its cluster elsewhere and leaves the modes alone.
	export HOMEDIR="$MI_TEST_TMP/home"
	mkdir -m 700 "$HOMEDIR"
	export MI_DEMO_DIR="$HOMEDIR/mi/demo"
	export MI_DEMO_PG_PORT=$(free_port) MI_DEMO_PORT=$(free_port)
	export MI_DEMO_VIEWER_PORT=$(free_port)
	top=$(dirname "$BATS_TEST_DIRNAME")
	sh "$top/examples/demo.sh" >"$BATS_FILE_TMPDIR/run1.out" \
	    2>"$BATS_FILE_TMPDIR/run1.err" || {
		cat "$BATS_FILE_TMPDIR/run1.out" "$BATS_FILE_TMPDIR/run1.err" >&3
		return 1
	}
}

teardown_file() {
	local pgdir
	pgdir=$(readlink -f "$MI_DEMO_DIR/pg")
	sh "$(dirname "$BATS_TEST_DIRNAME")/examples/demo-stop.sh" 2>/dev/null || true
	kill "$(cat "$BATS_FILE_TMPDIR/foreign.pid" 2>/dev/null)" 2>/dev/null || true
	case $pgdir in /var/tmp/mi-demo.*/*) rm -rf "$pgdir" ;; esac
}

# A server on 127.0.0.1:PORT that is not the demo's: python's, on a
# directory of its own.
foreign_server() {
	mkdir -p "$BATS_FILE_TMPDIR/foreign"
	python3 -m http.server "$1" --bind 127.0.0.1 \
	    --directory "$BATS_FILE_TMPDIR/foreign" >/dev/null 2>&1 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/foreign.pid"
	local i
	for i in $(seq 300); do
		curl -fs -o /dev/null "http://127.0.0.1:$1/" && return 0
		sleep 0.1
	done
	return 1
}

@test "the demo generates every asset of the campaign" {
	arts="$MI_DEMO_DIR/artifacts.ndjson"
	run jq -s -r 'map(.type) | sort | join(" ")' "$arts"
	assert_output "bgm brand_logo environment_map floor_texture intro_video outcome_lose_video outcome_win_video prize_wheel sfx_click sfx_lose sfx_spin sfx_win"
	jq -e -s 'all(.error == null)' "$arts"
	jq -e -s 'map(select(.type == "prize_wheel"))[0].metadata.mime_type == "model/gltf-binary"' "$arts"
	jq -e -s 'map(select(.type == "environment_map"))[0].metadata.mime_type == "image/vnd.radiance"' "$arts"
	jq -e -s 'map(select(.type == "intro_video"))[0].metadata.mime_type == "video/mp4"' "$arts"
	grep -q "12 artifacts, 0 deduplicated, 0 failed" "$BATS_FILE_TMPDIR/run1.out"
}

@test "every URL the demo prints answers through mi-serve with the stored bytes" {
	urls=$(grep -v -e '^  http' -e '^campaign manifest: ' "$BATS_FILE_TMPDIR/run1.out" |
	    grep -o 'http://127.0.0.1:[0-9]*/api/assets/[^[:space:]]*')
	[ "$(echo "$urls" | wc -l)" = 12 ]
	for u in $urls; do
		path=${u#http://127.0.0.1:*/api/assets/}; path=${path%%\?*}
		curl -fsS -o "$BATS_TEST_TMPDIR/got" "$u"
		cmp "$BATS_TEST_TMPDIR/got" "$MI_DEMO_DIR/store/$path"
		h=$(sha256sum "$BATS_TEST_TMPDIR/got" | cut -c1-64)
		[[ $path == *"/$h."* ]]
	done
	grep -q "viewer: http://127.0.0.1:$MI_DEMO_VIEWER_PORT/index.html" "$BATS_FILE_TMPDIR/run1.out"
	curl -fsS "http://127.0.0.1:$MI_DEMO_VIEWER_PORT/assets.json" | jq -e '.prize_wheel and .environment_map'
}

@test "the demo's game: a verified bundle of the run's assets, served by its URL" {
	local game
	game=$(sed -n 's/^  \(http.*\/index.html\)$/\1/p' "$BATS_FILE_TMPDIR/run1.out")
	[[ $game == "http://127.0.0.1:$MI_DEMO_PORT/api/assets/org_demo/"*"/bundle/"*".zip/exp="*"&sig="*"/index.html" ]]
	run curl -fsS -o /dev/null -w '%{content_type}' "$game"
	[ "$output" = "text/html; charset=utf-8" ]
	curl -fsS "${game%index.html}bundle.json" | jq -e '
	    .assets.models == ["assets/models/prize_wheel.glb"] and
	    (.assets.audio | length) == 5 and (.assets.images | length) == 3 and
	    .assets.video == []'
	run curl -fsS -o /dev/null -w '%{content_type}' "${game%index.html}assets/models/prize_wheel.glb"
	[ "$output" = model/gltf-binary ]
	jq -e '.verified == true and .kind == "campaign_manifest"' "$MI_DEMO_DIR/verify.ndjson"
	jq -e '.metadata.kind == "campaign-manifest"' "$MI_DEMO_DIR/manifest.ndjson"
}

@test "the cluster lives where postgres can reach it; the home stays 0700" {
	[ -L "$MI_DEMO_DIR/pg" ]
	pgdir=$(readlink -f "$MI_DEMO_DIR/pg")
	[[ $pgdir == /var/tmp/mi-demo.$(id -u)/* ]]
	[ -f "$pgdir/data/PG_VERSION" ]
	[ "$(stat -c %a "$HOMEDIR")" = 700 ]
	grep -q "cluster in $pgdir" "$BATS_FILE_TMPDIR/run1.err"
}

@test "running the demo again stores nothing new and reuses no foreign server" {
	before=$(find "$MI_DEMO_DIR/store" -type f | wc -l)
	top=$(dirname "$BATS_TEST_DIRNAME")
	# Something else now answers on mi-serve's port.
	pid=$(cat "$MI_DEMO_DIR/mi-serve.pid")
	kill "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	foreign_server "$MI_DEMO_PORT"
	run env -u MI_DEMO_PORT sh "$top/examples/demo.sh"
	assert_success
	assert_output --partial "12 artifacts, 12 deduplicated, 0 failed"
	[ "$(find "$MI_DEMO_DIR/store" -type f | wc -l)" = "$before" ]
	assert_output --partial "127.0.0.1:$MI_DEMO_PORT is in use by"
	assert_output --partial "SimpleHTTP"
	port=$(cat "$MI_DEMO_DIR/mi-serve.port")
	[ "$port" != "$MI_DEMO_PORT" ]
	assert_output --partial "mi-serve takes 127.0.0.1:$port"
	u=$(echo "$output" | grep -o "http://127.0.0.1:$port/api/assets/[^[:space:]]*glb[^[:space:]]*")
	curl -fsS -o /dev/null "$u"
	curl -fsS "http://127.0.0.1:$MI_DEMO_VIEWER_PORT/assets.json" |
	    jq -e --arg p "http://127.0.0.1:$port/" '.prize_wheel | startswith($p)'
	# the foreign server still runs, untouched
	curl -fsS -o /dev/null "http://127.0.0.1:$MI_DEMO_PORT/"
}

@test "a port set for the demo that something else holds is named, not taken" {
	top=$(dirname "$BATS_TEST_DIRNAME")
	run sh "$top/examples/demo.sh"
	[ "$status" -eq 69 ]
	assert_output --partial "127.0.0.1:$MI_DEMO_PORT (MI_DEMO_PORT) is in use by"
	assert_output --partial "SimpleHTTP"
	assert_output --partial "not by this demo's mi-serve"
}

@test "the cost report of the run is printed" {
	grep -q "local" "$BATS_FILE_TMPDIR/run1.out"
	grep -q "cost of this run:" "$BATS_FILE_TMPDIR/run1.out"
}

@test "the viewer loads the run's model and HDRI in headless Chromium" {
	glb=$(find "$MI_DEMO_DIR/store" -path '*/prize_wheel/*.glb' | head -1)
	# Meshes three.js makes: one per primitive of every mesh a node uses.
	want=$(python3 - "$glb" <<'PY'
import json, struct, sys
d = open(sys.argv[1], 'rb').read()
n = struct.unpack_from('<I', d, 12)[0]
g = json.loads(d[20:20 + n])
print(sum(len(g['meshes'][x['mesh']]['primitives']) for x in g['nodes'] if 'mesh' in x))
PY
)
	run node "$BATS_TEST_DIRNAME/browser/run.mjs" \
	    "http://127.0.0.1:$MI_DEMO_VIEWER_PORT/index.html" \
	    "$BATS_FILE_TMPDIR/viewer.png"
	echo "$output" | jq -e --argjson n "$want" \
	    '.result.ok and .result.meshes == $n and (.failed | length) == 0 and (.errors | length) == 0'
	assert_success
	[ -s "$BATS_FILE_TMPDIR/viewer.png" ]
	cp "$BATS_FILE_TMPDIR/viewer.png" "${MI_TEST_OUTPUT:-$BATS_RUN_TMPDIR}/viewer.png"
}

@test "demo-stop says what it stopped, then that nothing runs" {
	top=$(dirname "$BATS_TEST_DIRNAME")
	port=$(cat "$MI_DEMO_DIR/mi-serve.port")
	run sh "$top/examples/demo-stop.sh"
	assert_success
	assert_output --partial "stopped mi-serve (pid "
	assert_output --partial ", 127.0.0.1:$port)"
	assert_output --partial "stopped the viewer (pid "
	assert_output --partial "stopped PostgreSQL (127.0.0.1:$MI_DEMO_PG_PORT"
	run curl -fsS "http://127.0.0.1:$port/healthz"
	assert_failure
	run sh "$top/examples/demo-stop.sh"
	[ "$status" -eq 1 ]
	assert_output "demo-stop: nothing was running (the demo in $MI_DEMO_DIR)"
}
