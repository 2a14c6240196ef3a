#!/usr/bin/env bats
# mi-bundle and bundles served by mi-serve: reproducible zips checked by
# independent tools (unzip, python3 -m zipfile, sha256sum, jq, Python's
# json), campaign manifests, --verify against missing assets, wrong and
# malformed checksums and every GameConfig rule; bundle entries through
# mi-serve (types, ETag, 304, Range, credentials); hostile zips (../ and
# absolute names, symbolic links, duplicates, overlapping entries, zip
# bombs) stored and requested: refused, memory bounded; the
# spin-the-wheel game played in headless Chromium.  The zip reader's fuzz
# target (test/fuzz/zipread.c) runs in fuzz.bats.

load test_helper

stop_pid() {
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

# store_path URI: the file the store holds for an artifact URI
store_path() {
	echo "$ASSET_STORAGE_DIR/${1#*/api/assets/}"
}

# resp CURL-ARGS...: status line, headers without Date, then the body
resp() {
	curl -s -i --path-as-is "$@" | tr -d '\r' | grep -av '^Date: '
}

setup_file() {
	mi_setup_db
	mi_setup_store
	export SIGNKEY=bundle-signing-key-0123456789
	export PS=$(free_port)
	export RUN=$(uuid) CRUN=$(uuid) T=org_game
	local gen="$BATS_FILE_TMPDIR/gen" d="$BATS_FILE_TMPDIR"
	mkdir -p "$gen"
	mi-generate -t model_3d -p 'neon prize wheel' -o "$gen/wheel.glb" >/dev/null
	mi-generate -t environment_map -p 'arcade' -P width=256 \
	    -o "$gen/sky.hdr" >/dev/null
	mi-generate -t texture -p 'neon floor' -P width=512 -P height=512 \
	    -o "$gen/floor.png" >/dev/null
	mi-generate -t audio_bgm -p 'synthwave' -P duration_sec=30 \
	    -o "$gen/music.wav" >/dev/null
	mi-generate -t audio_sfx -p 'wheel spin' -P sfx_type=spin \
	    -P duration_sec=1 -o "$gen/spin.wav" >/dev/null
	# One short video serves as intro, win and lose (three artifacts).
	mi-generate -t video -p 'intro' -P duration_sec=4 -P resolution=480p \
	    -o "$gen/intro.mp4" >/dev/null
	{
		mi-store -t $T -r "$RUN" -y model_3d "$gen/wheel.glb"
		mi-store -t $T -r "$RUN" -y environment_map "$gen/sky.hdr"
		mi-store -t $T -r "$RUN" -y texture "$gen/floor.png"
		mi-store -t $T -r "$RUN" -y audio_bgm "$gen/music.wav"
		mi-store -t $T -r "$RUN" -y audio_sfx "$gen/spin.wav"
	} >"$d/assets.ndjson"
	{
		mi-store -t $T -r "$CRUN" -y intro_video "$gen/intro.mp4"
		mi-store -t $T -r "$CRUN" -y win_video "$gen/intro.mp4"
		mi-store -t $T -r "$CRUN" -y outcome_lose_video "$gen/intro.mp4"
	} >"$d/videos.ndjson"
	sh "$BATS_TEST_DIRNAME/../examples/game/template.sh" "$d/game"
	mi-bundle --template "$d/game" <"$d/assets.ndjson" >"$d/bundle.json"

	export SECRET=bundle-jwt-secret-0123456789abcdef
	env -u MI_JWT_PUBLIC_KEY -u MI_CORS_ORIGINS MI_JWT_SECRET="$SECRET" \
	    MI_URL_SIGNING_KEY="$SIGNKEY" mi-serve --access-log \
	    --listen "127.0.0.1:$PS" 2>"$d/serve.log" 3>&- &
	echo $! >"$d/serve.pid"
	local i
	for i in $(seq 300); do
		curl -fs -o /dev/null "http://127.0.0.1:$PS/healthz" && return 0
		sleep 0.1
	done
	return 1
}

teardown_file() {
	stop_pid "$BATS_FILE_TMPDIR/serve.pid"
}

# jwt TENANT: an HS256 token of that tenant, valid for ten minutes
jwt() {
	local h p
	h=$(printf '{"alg":"HS256","typ":"JWT"}' | openssl base64 -A | tr '+/' '-_' | tr -d '=')
	p=$(printf '{"sub":"user_1","org_id":"%s","exp":%d}' "$1" $(($(date +%s) + 600)) |
	    openssl base64 -A | tr '+/' '-_' | tr -d '=')
	printf '%s.%s.%s\n' "$h" "$p" "$(printf '%s.%s' "$h" "$p" |
	    openssl dgst -sha256 -hmac "$SECRET" -binary | openssl base64 -A |
	    tr '+/' '-_' | tr -d '=')"
}

# The bundle's URL on the server, and its signed query.
bundle_url() {
	echo "http://127.0.0.1:$PS$(jq -r .uri "$BATS_FILE_TMPDIR/bundle.json")"
}
bundle_query() {
	local s
	s=$(MI_URL_SIGNING_KEY="$SIGNKEY" mi-serve --sign \
	    "$(jq -r .uri "$BATS_FILE_TMPDIR/bundle.json")")
	echo "${s#*\?}"
}

@test "mi-bundle stores a bundle of type bundle and writes its artifact record" {
	local b="$BATS_FILE_TMPDIR/bundle.json" z
	run jq -e '.type == "bundle" and .tenant_id == "org_game" and
	    (.uri | test("/bundle/[0-9a-f]{64}\\.zip$")) and
	    .metadata.kind == "game-bundle" and
	    .metadata.template_id == "spin_wheel_v1" and
	    .metadata.mime_type == "application/zip" and
	    (.metadata.manifest_checksum | test("^sha256:[0-9a-f]{64}$"))' "$b"
	assert_success
	z=$(store_path "$(jq -r .uri "$b")")
	[ -f "$z" ]
	[ "$(sha256sum "$z" | cut -c1-64)" = "$(jq -r .content_hash "$b")" ]
	run sql "SELECT type || ' ' || size_bytes FROM app.artifacts WHERE id = '$(jq -r .id "$b")'"
	[ "$output" = "bundle $(stat -c %s "$z")" ]
}

@test "the same inputs give the same bytes; the store keeps one copy" {
	local d="$BATS_FILE_TMPDIR"
	run -0 --separate-stderr mi-bundle --template "$d/game" <"$d/assets.ndjson"
	[ "$(echo "$output" | jq -r .content_hash)" = "$(jq -r .content_hash "$d/bundle.json")" ]
	[ "$(echo "$output" | jq -r .deduplicated)" = true ]
	# A fresh template copy (new mtimes, other order on disk) changes nothing.
	sh "$BATS_TEST_DIRNAME/../examples/game/template.sh" "$d/game2"
	touch -d '2001-02-03' "$d/game2/index.html"
	run -0 --separate-stderr mi-bundle --template "$d/game2" <"$d/assets.ndjson"
	[ "$(echo "$output" | jq -r .content_hash)" = "$(jq -r .content_hash "$d/bundle.json")" ]
	# All of the run's artifacts from the database: the same bundle.
	run -0 --separate-stderr mi-bundle --template "$d/game" --run "$RUN"
	[ "$(echo "$output" | jq -r .content_hash)" = "$(jq -r .content_hash "$d/bundle.json")" ]
}

@test "unzip, python3 -m zipfile and sha256sum agree with bundle.json" {
	local d="$BATS_FILE_TMPDIR" z x="$BATS_FILE_TMPDIR/x" p sum
	z=$(store_path "$(jq -r .uri "$d/bundle.json")")
	run -0 unzip -l "$z"
	[[ $output == *"index.html"* ]]
	[[ $output == *"assets/models/wheel.glb"* ]]
	[[ $output == *"bundle.json"* ]]
	run -0 python3 -m zipfile -t "$z"
	run -0 unzip -tq "$z"
	rm -rf "$x" && mkdir -p "$x"
	(cd "$x" && unzip -q "$z")
	jq -e '.files | length > 10' "$x/bundle.json"
	jq -e '.file_count == null and .metadata.file_count == (.files | length)' "$x/bundle.json"
	jq -e '.metadata.total_size_bytes == ([.files[].size_bytes] | add)' "$x/bundle.json"
	jq -e '.entry_point == "index.html" and .template_id == "spin_wheel_v1"' "$x/bundle.json"
	jq -e '.assets.models == ["assets/models/wheel.glb"] and
	    (.assets.audio | length) == 2 and (.assets.images | length) == 2' "$x/bundle.json"
	# Every file: its size and the first 16 hex of its SHA-256.
	jq -r '.files[] | "\(.path) \(.size_bytes) \(.checksum)"' "$x/bundle.json" |
	while read -r p size sum; do
		[ "$(stat -c %s "$x/$p")" = "$size" ] || { echo "size $p"; exit 1; }
		[ "$(sha256sum "$x/$p" | cut -c1-16)" = "$sum" ] || { echo "sum $p"; exit 1; }
	done
	# Every entry but bundle.json is listed.
	[ "$(unzip -Z1 "$z" | grep -vc '^bundle.json$')" = "$(jq '.files | length' "$x/bundle.json")" ]
	# The artifacts are byte for byte the stored files.
	cmp "$x/assets/models/wheel.glb" "$BATS_FILE_TMPDIR/gen/wheel.glb"
	# The manifest checksum, computed by jq and by Python.
	sum=$(jq -cS 'del(.checksum)' "$x/bundle.json" | tr -d '\n' | sha256sum | cut -c1-64)
	[ "$(jq -r .checksum "$x/bundle.json")" = "sha256:$sum" ]
	run -0 python3 -c '
import hashlib, json, sys
m = json.load(open(sys.argv[1]))
c = m.pop("checksum")
t = json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
print(c == "sha256:" + hashlib.sha256(t.encode()).hexdigest())' "$x/bundle.json"
	[ "$output" = True ]
}

@test "media entries are stored, text is deflated, times and modes are fixed" {
	local z
	z=$(store_path "$(jq -r .uri "$BATS_FILE_TMPDIR/bundle.json")")
	run -0 python3 -c '
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [i.filename for i in z.infolist()]
assert names == sorted(names), names
for i in z.infolist():
    want = zipfile.ZIP_DEFLATED if i.filename.endswith((".html", ".js", ".json", ".css")) else zipfile.ZIP_STORED
    assert i.compress_type == want, (i.filename, i.compress_type)
    assert i.date_time == (1980, 1, 2, 0, 0, 0), (i.filename, i.date_time)
    assert (i.external_attr >> 16) == 0o100644, (i.filename, oct(i.external_attr >> 16))
print("ok")' "$z"
	[ "$output" = ok ]
}

@test "mi-bundle --verify passes a good bundle, by file and by record" {
	local z
	z=$(store_path "$(jq -r .uri "$BATS_FILE_TMPDIR/bundle.json")")
	run -0 --separate-stderr mi-bundle --verify "$z"
	echo "$output" | jq -e '.verified == true and .kind == "bundle" and .checked > 10'
	run -0 --separate-stderr mi-bundle --verify <"$BATS_FILE_TMPDIR/bundle.json"
	echo "$output" | jq -e '.verified == true'
}

# tamper ZIP OUT ENTRY TEXT: a copy of ZIP with ENTRY's content replaced
tamper() {
	python3 - "$@" <<'EOF'
import sys, zipfile
src, out, name, text = sys.argv[1:5]
with zipfile.ZipFile(src) as a, zipfile.ZipFile(out, "w") as b:
    for i in a.infolist():
        data = text.encode() if i.filename == name else a.read(i)
        b.writestr(i, data)
EOF
}

@test "--verify catches a tampered entry and its broken GameConfig" {
	local z bad="$BATS_FILE_TMPDIR/tampered.zip"
	z=$(store_path "$(jq -r .uri "$BATS_FILE_TMPDIR/bundle.json")")
	tamper "$z" "$bad" game_config.json '{"template_id":"spin_wheel_v1","settings":{"duration_sec":0,"difficulty":{"level":"easy","win_probability":0.5}}}'
	run -1 --separate-stderr mi-bundle --verify "$bad"
	echo "$output" | jq -e '.verified == false and .error.code == "INVALID_HASH"'
	echo "$output" | jq -e '[.problems[] | select(.code == "INVALID_HASH" and (.message | test("game_config.json")))] | length == 1'
	echo "$output" | jq -e '[.problems[] | select(.code == "VALIDATION_ERROR" and (.message | test("settings.duration_sec")))] | length == 1'
	[[ $stderr == "mi-bundle: "*"INVALID_HASH: "* ]]
}

# config JQ-FILTER: the template's GameConfig changed by the filter
config() {
	jq "$1" "$BATS_FILE_TMPDIR/game/game_config.json" >"$BATS_FILE_TMPDIR/cfg.json"
	echo "$BATS_FILE_TMPDIR/cfg.json"
}

@test "each GameConfig rule stops the build with a VALIDATION_ERROR naming it" {
	local d="$BATS_FILE_TMPDIR" f
	f=$(config '.template_id = ""')
	run -1 --separate-stderr mi-bundle --template "$d/game" --config "$f" <"$d/assets.ndjson"
	echo "$output" | jq -se 'map(select(.error.code == "VALIDATION_ERROR")) | length >= 1'
	[[ $output == *"template_id: required"* ]]
	f=$(config 'del(.template_id)')
	run -1 --separate-stderr mi-bundle --template "$d/game" --config "$f" <"$d/assets.ndjson"
	[[ $output == *"template_id: required"* ]]
	f=$(config '.settings.difficulty.level = "extreme"')
	run -1 --separate-stderr mi-bundle --template "$d/game" --config "$f" <"$d/assets.ndjson"
	[[ $output == *"settings.difficulty.level: must be easy, medium or hard"* ]]
	f=$(config '.settings.difficulty.win_probability = 1.5')
	run -1 --separate-stderr mi-bundle --template "$d/game" --config "$f" <"$d/assets.ndjson"
	[[ $output == *"settings.difficulty.win_probability: must be a number from 0 to 1"* ]]
	f=$(config '.settings.difficulty.win_probability = "high"')
	run -1 --separate-stderr mi-bundle --template "$d/game" --config "$f" <"$d/assets.ndjson"
	[[ $output == *"win_probability"* ]]
	f=$(config '.settings.duration_sec = 0')
	run -1 --separate-stderr mi-bundle --template "$d/game" --config "$f" <"$d/assets.ndjson"
	[[ $output == *"settings.duration_sec: must be a number above 0"* ]]
	f=$(config '.visuals.colors.accent = "goldish"')
	run -1 --separate-stderr mi-bundle --template "$d/game" --config "$f" <"$d/assets.ndjson"
	[[ $output == *"visuals.colors.accent: not a CSS colour"* ]]
	f=$(config '.visuals.colors.primary = "#12345"')
	run -1 --separate-stderr mi-bundle --template "$d/game" --config "$f" <"$d/assets.ndjson"
	[[ $output == *"visuals.colors.primary: not a CSS colour"* ]]
	# Every CSS form that is a colour passes.
	f=$(config '.visuals.colors = {"a":"#abc","b":"#abcd","c":"#a1b2c3","d":"#a1b2c3d4",
	    "e":"rgb(1, 2, 3)","f":"rgba(1,2,3,0.5)","g":"rgb(1 2 3 / 50%)",
	    "h":"hsl(120deg 50% 50%)","i":"hsla(120, 50%, 50%, 0.3)",
	    "j":"RebeccaPurple","k":"transparent","l":"currentColor"}')
	run -0 --separate-stderr mi-bundle --template "$d/game" --config "$f" <"$d/assets.ndjson"
	echo "$output" | jq -e '.type == "bundle"'
}

@test "an artifact missing from the store or of another tenant stops the build" {
	local d="$BATS_FILE_TMPDIR"
	head -1 "$d/assets.ndjson" | jq -c '.uri |= sub("[0-9a-f]{64}"; "'"$(printf '%064d' 0)"'") | .content_hash = "'"$(printf '%064d' 0)"'"' >"$d/missing.ndjson"
	run -1 --separate-stderr mi-bundle --template "$d/game" <"$d/missing.ndjson"
	echo "$output" | head -1 | jq -e '.error.code == "MISSING_ASSET"'
	echo "$output" | tail -1 | jq -e '.error.message | test("bundle not built")'
	head -1 "$d/assets.ndjson" | jq -c '.content_hash = "abc"' >"$d/badhash.ndjson"
	run -1 --separate-stderr mi-bundle --template "$d/game" <"$d/badhash.ndjson"
	echo "$output" | head -1 | jq -e '.error.code == "INVALID_HASH"'
	run -1 --separate-stderr mi-bundle --template "$d/game" --tenant org_other <"$d/assets.ndjson"
	echo "$output" | head -1 | jq -e '.error.code == "MISSING_ASSET" and (.error.message | test("another tenant"))'
}

campaign_json() {
	cat >"$BATS_FILE_TMPDIR/campaign.json" <<EOF
{"campaign_id":"cmp_neon","campaign_name":"Neon nights","tenant_id":"$T",
 "branding":{"brand_name":"Neon","colors":{"primary":"#ff2fb3"}},
 "analytics":{"enabled":true,"events":["play","win"]}}
EOF
	echo "$BATS_FILE_TMPDIR/campaign.json"
}

@test "--manifest builds and stores a CampaignManifest that --verify passes" {
	local d="$BATS_FILE_TMPDIR" m
	run -0 --separate-stderr mi-bundle --manifest "$(campaign_json)" \
	    < <(cat "$d/videos.ndjson" "$d/bundle.json")
	echo "$output" >"$d/manifest.json"
	jq -e '.type == "json" and .filename == "campaign-manifest.json" and
	    .metadata.kind == "campaign-manifest" and .metadata.campaign_id == "cmp_neon"' "$d/manifest.json"
	m=$(store_path "$(jq -r .uri "$d/manifest.json")")
	jq -e '.manifest_version == "1.0.0" and .campaign_id == "cmp_neon" and
	    .campaign_name == "Neon nights" and
	    ([.assets.intro_video, .assets.win_video, .assets.lose_video,
	      .assets.game_bundle] | all(.required == true and
	      (.checksum | test("^sha256:[0-9a-f]{64}$")) and .size_bytes > 0)) and
	    .assets.intro_video.type == "video" and
	    .assets.game_bundle.type == "bundle" and
	    .assets.additional == [] and
	    .interaction.game_container == {"entry_point":"index.html","config_path":"game_config.json"} and
	    .flow.sequence == ["intro","game","outcome"] and
	    .rules.active == true and .analytics.events == ["play","win"] and
	    .metadata.tenant_id == "org_game" and
	    (.metadata.bundle_id | startswith("bundle_")) and
	    (.checksum | test("^sha256:[0-9a-f]{64}$"))' "$m"
	# Each reference's checksum is the stored file's SHA-256.
	[ "$(jq -r .assets.intro_video.checksum "$m")" = "sha256:$(sha256sum "$d/gen/intro.mp4" | cut -c1-64)" ]
	[ "$(jq -r .assets.game_bundle.size_bytes "$m")" = "$(jq -r .size_bytes "$d/bundle.json")" ]
	# The manifest's own checksum, by jq and by Python.
	[ "$(jq -r .checksum "$m")" = "sha256:$(jq -cS 'del(.checksum)' "$m" | tr -d '\n' | sha256sum | cut -c1-64)" ]
	run -0 python3 -c '
import hashlib, json, sys
m = json.load(open(sys.argv[1]))
c = m.pop("checksum")
print(c == "sha256:" + hashlib.sha256(json.dumps(m, sort_keys=True, separators=(",", ":")).encode()).hexdigest())' "$m"
	[ "$output" = True ]
	run -0 --separate-stderr mi-bundle --verify "$m"
	echo "$output" | jq -e '.verified == true and .kind == "campaign_manifest" and .checked > 10'
	run -0 --separate-stderr mi-bundle --verify <"$d/manifest.json"
	echo "$output" | jq -e '.verified == true'
}

@test "--manifest without a required video is a MISSING_ASSET, nothing stored" {
	local d="$BATS_FILE_TMPDIR" n
	n=$(sql "SELECT count(*) FROM app.artifacts WHERE type = 'json'")
	run -1 --separate-stderr mi-bundle --manifest "$(campaign_json)" \
	    < <(head -2 "$d/videos.ndjson"; cat "$d/bundle.json")
	echo "$output" | head -1 | jq -e '.error.code == "MISSING_ASSET" and (.error.message | test("lose_video"))'
	[ "$(sql "SELECT count(*) FROM app.artifacts WHERE type = 'json'")" = "$n" ]
}

# manifest_with JQ-FILTER: the stored manifest changed by the filter (its
# checksum recomputed unless the filter touches it)
manifest_with() {
	local d="$BATS_FILE_TMPDIR" m out="$BATS_FILE_TMPDIR/changed.json" sum
	m=$(store_path "$(jq -r .uri "$d/manifest.json")")
	jq "$1" "$m" >"$out"
	if [ "${2:-}" != keep ]; then
		sum=$(jq -cS 'del(.checksum)' "$out" | tr -d '\n' | sha256sum | cut -c1-64)
		jq --arg s "sha256:$sum" '.checksum = $s' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
	fi
	echo "$out"
}

@test "--verify: a missing asset, another tenant's, a wrong and a malformed checksum" {
	local f zero
	zero=$(printf '%064d' 0)
	f=$(manifest_with '.assets.win_video.uri |= sub("[0-9a-f]{64}"; "'"$zero"'")')
	run -1 --separate-stderr mi-bundle --verify "$f"
	echo "$output" | jq -e '.error.code == "MISSING_ASSET" and (.error.message | test("assets.win_video"))'
	f=$(manifest_with '.assets.intro_video.uri |= sub("/org_game/"; "/org_other/")')
	run -1 --separate-stderr mi-bundle --verify "$f"
	echo "$output" | jq -e '[.problems[] | select(.code == "MISSING_ASSET" and (.message | test("assets.intro_video")))] | length == 1'
	f=$(manifest_with '.')
	run -1 --separate-stderr mi-bundle --verify --tenant org_other "$f"
	echo "$output" | jq -e '.error.code == "MISSING_ASSET" and (.problems | length) == 4'
	f=$(manifest_with '.assets.lose_video.checksum = "sha256:'"$zero"'"')
	run -1 --separate-stderr mi-bundle --verify "$f"
	echo "$output" | jq -e '.error.code == "INVALID_HASH" and (.error.message | test("assets.lose_video: checksum does not match the stored bytes"))'
	f=$(manifest_with '.assets.lose_video.checksum = "sha256:XYZ"')
	run -1 --separate-stderr mi-bundle --verify "$f"
	echo "$output" | jq -e '.error.code == "INVALID_HASH" and (.error.message | test("not sha256: and 64 hex"))'
	f=$(manifest_with '.assets.intro_video.checksum = "md5:1234"')
	run -1 --separate-stderr mi-bundle --verify "$f"
	echo "$output" | jq -e '.error.code == "INVALID_HASH"'
	f=$(manifest_with '.campaign_name = "changed"' keep)
	run -1 --separate-stderr mi-bundle --verify "$f"
	echo "$output" | jq -e '.error.code == "INVALID_HASH" and (.error.message | test("checksum: does not match the manifest"))'
	f=$(manifest_with '.checksum = "sha256:abc"' keep)
	run -1 --separate-stderr mi-bundle --verify "$f"
	echo "$output" | jq -e '.error.code == "INVALID_HASH" and (.error.message | test("checksum: not sha256"))'
	f=$(manifest_with '.branding.colors.primary = "neon"')
	run -1 --separate-stderr mi-bundle --verify "$f"
	echo "$output" | jq -e '.error.code == "VALIDATION_ERROR" and (.error.message | test("branding.colors.primary"))'
	f=$(manifest_with 'del(.assets.game_bundle)')
	run -1 --separate-stderr mi-bundle --verify "$f"
	echo "$output" | jq -e '.error.code == "MISSING_ASSET" and (.error.message | test("assets.game_bundle: missing"))'
}

@test "mi-bundle: bad usage is 64, an unusable template 65" {
	run -64 --separate-stderr mi-bundle
	run -64 --separate-stderr mi-bundle --template a --verify
	run -64 --separate-stderr mi-bundle --verify --run "$RUN"
	run -64 --separate-stderr mi-bundle --nope
	mkdir -p "$BATS_FILE_TMPDIR/empty"
	run -65 --separate-stderr mi-bundle --template "$BATS_FILE_TMPDIR/empty" <"$BATS_FILE_TMPDIR/assets.ndjson"
	[[ $stderr == *"has no index.html"* ]]
	mkdir -p "$BATS_FILE_TMPDIR/linky"
	echo x >"$BATS_FILE_TMPDIR/linky/index.html"
	ln -sf /etc/passwd "$BATS_FILE_TMPDIR/linky/passwd"
	run -65 --separate-stderr mi-bundle --template "$BATS_FILE_TMPDIR/linky" <"$BATS_FILE_TMPDIR/assets.ndjson"
	[[ $stderr == *"not a regular file"* ]]
	rm "$BATS_FILE_TMPDIR/linky/passwd"
	echo x >"$BATS_FILE_TMPDIR/linky/a b.js"
	run -65 --separate-stderr mi-bundle --template "$BATS_FILE_TMPDIR/linky" <"$BATS_FILE_TMPDIR/assets.ndjson"
	[[ $stderr == *"outside the entry grammar"* ]]
}

@test "mi-serve answers bundle entries with their type, ETag, 304 and Range" {
	local u q h etag
	u=$(bundle_url)
	q=$(bundle_query)
	h=$(jq -r .content_hash "$BATS_FILE_TMPDIR/bundle.json")
	run resp "$u/index.html?$q"
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
	[[ $output == *$'\nContent-Type: text/html; charset=utf-8\n'* ]]
	[[ $output == *$'\nETag: "'"$h"'/index.html"'$'\n'* ]]
	[[ $output == *$'\nCache-Control: public, max-age='*', immutable'$'\n'* ]]
	[[ $output == *$'\nX-Content-Type-Options: nosniff\n'* ]]
	[[ $output == *"<title>Spin the wheel</title>"* ]]
	# The credentials as the first path segment: relative URLs keep them.
	run resp "$u/$q/assets/models/wheel.glb" -o "$BATS_FILE_TMPDIR/got.glb"
	run curl -s -o "$BATS_FILE_TMPDIR/got.glb" -w '%{http_code} %{content_type}' "$u/$q/assets/models/wheel.glb"
	[ "$output" = "200 model/gltf-binary" ]
	cmp "$BATS_FILE_TMPDIR/got.glb" "$BATS_FILE_TMPDIR/gen/wheel.glb"
	run curl -s -o /dev/null -w '%{http_code} %{content_type}' "$u/$q/js/three/three.module.js"
	[ "$output" = "200 text/javascript; charset=utf-8" ]
	run curl -s -o /dev/null -w '%{http_code}' "$u/$q/"
	[ "$output" = 200 ]
	# 304 on the entry's ETag, not on the bundle's.
	etag="\"$h/assets/audio/music.wav\""
	run curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$u/$q/assets/audio/music.wav"
	[ "$output" = 304 ]
	run curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: \"$h\"" "$u/$q/assets/audio/music.wav"
	[ "$output" = 200 ]
	# Range inside a stored entry and inside a deflated one.
	run resp -H 'Range: bytes=4-7' "$u/$q/assets/models/wheel.glb"
	[ "${lines[0]}" = "HTTP/1.1 206 Partial Content" ]
	[[ $output == *$'\nContent-Range: bytes 4-7/'"$(stat -c %s "$BATS_FILE_TMPDIR/gen/wheel.glb")"$'\n'* ]]
	[ "$(curl -s -H 'Range: bytes=4-7' "$u/$q/assets/models/wheel.glb" | od -An -tx1 | tr -d ' ')" = \
	    "$(dd if="$BATS_FILE_TMPDIR/gen/wheel.glb" bs=1 skip=4 count=4 2>/dev/null | od -An -tx1 | tr -d ' ')" ]
	[ "$(curl -s -H 'Range: bytes=-16' "$u/$q/index.html")" = "$(tail -c 16 "$BATS_FILE_TMPDIR/game/index.html")" ]
	run resp -H 'Range: bytes=1-3' "$u/$q/index.html"
	[ "${lines[0]}" = "HTTP/1.1 206 Partial Content" ]
	[ "${lines[-1]}" = "!do" ]
	run resp -H 'Range: bytes=99999999-' "$u/$q/index.html"
	[ "${lines[0]}" = "HTTP/1.1 416 Range Not Satisfiable" ]
	# HEAD: the length without the body.
	run curl -s -I "$u/$q/assets/audio/spin.wav"
	[[ $output == *"Content-Length: $(stat -c %s "$BATS_FILE_TMPDIR/gen/spin.wav")"* ]]
}

@test "bundle entries take the bundle's credentials and nothing else" {
	local u q bad exp
	u=$(bundle_url)
	q=$(bundle_query)
	run curl -s -o /dev/null -w '%{http_code}' "$u/index.html"
	[ "$output" = 404 ]
	# The signature's last digit changed (a 0 becomes a 1, anything else 0).
	if [ "${q: -1}" = 0 ]; then bad=${q%?}1; else bad=${q%?}0; fi
	[ "$bad" != "$q" ]
	run curl -s -o /dev/null -w '%{http_code}' "$u/index.html?$bad"
	[ "$output" = 404 ]
	run curl -s -o /dev/null -w '%{http_code}' "$u/$bad/index.html"
	[ "$output" = 404 ]
	# A signature made for an entry path, or for another bundle, is not the
	# bundle's.
	exp=$(( $(date +%s) + 600 ))
	run curl -s -o /dev/null -w '%{http_code}' "$u/index.html?exp=$exp&sig=$(printf '%s\n%s' "${u#http://127.0.0.1:$PS}/index.html" "$exp" | openssl dgst -sha256 -hmac "$SIGNKEY" | awk '{print $NF}')"
	[ "$output" = 404 ]
	# An expired one.
	exp=$(( $(date +%s) - 10 ))
	run curl -s -o /dev/null -w '%{http_code}' "$u/index.html?exp=$exp&sig=$(printf '%s\n%s' "${u#http://127.0.0.1:$PS}" "$exp" | openssl dgst -sha256 -hmac "$SIGNKEY" | awk '{print $NF}')"
	[ "$output" = 404 ]
	# A Bearer token of the bundle's tenant, and of another.
	run curl -s -o /dev/null -w '%{http_code} %{content_type}' \
	    -H "Authorization: Bearer $(jwt org_game)" "$u/assets/models/wheel.glb"
	[ "$output" = "200 model/gltf-binary" ]
	run curl -s -o /dev/null -w '%{http_code}' \
	    -H "Authorization: Bearer $(jwt org_other)" "$u/assets/models/wheel.glb"
	[ "$output" = 404 ]
	# The log never shows a signature.
	! grep -q "${q#*sig=}" "$BATS_FILE_TMPDIR/serve.log"
	grep -q 'sig=-/index.html' "$BATS_FILE_TMPDIR/serve.log"
}

@test "names that leave the archive are refused like a missing file" {
	local u q p
	u=$(bundle_url)
	q=$(bundle_query)
	for p in ../index.html ./index.html js/../index.html //etc/passwd \
	    %2e%2e/index.html js%2fgame.js 'index.html%00' nope.html js \
	    'js//game.js' '..' 'index.html/' "$q/../../index.html"; do
		run curl -s --path-as-is -o /dev/null -w '%{http_code}' "$u/$q/$p"
		[ "$output" = 404 ] || { echo "$p: $output"; false; }
	done
	run resp "$u/$q/../bundle.json"
	[ "${lines[0]}" = "HTTP/1.1 404 Not Found" ]
	[ "${lines[-1]}" = "not found" ]
}

# hostile.py OUT KIND: writes a zip of one kind of hostility
hostile() {
	python3 - "$@" <<'EOF'
import struct, sys, zipfile, zlib
out, kind = sys.argv[1:3]
def plain(z):
    z.writestr("ok.txt", "fine\n")
if kind == "names":
    with zipfile.ZipFile(out, "w") as z:
        plain(z)
        for n in ["../escape.txt", "/etc/passwd", "a/../../b.txt", "C:\\win.txt",
                  "dir\\back.txt", "sp ace.txt", "nul\x01.txt", "a//b.txt", "./dot.txt"]:
            i = zipfile.ZipInfo(n)
            z.writestr(i, "hostile\n")
elif kind == "symlink":
    with zipfile.ZipFile(out, "w") as z:
        plain(z)
        i = zipfile.ZipInfo("link.txt")
        i.create_system = 3
        i.external_attr = (0o120777 << 16)
        z.writestr(i, "../../../../etc/passwd")
        i = zipfile.ZipInfo("dir/")
        i.create_system = 3
        i.external_attr = (0o040755 << 16)
        z.writestr(i, "")
elif kind == "dup":
    import warnings
    warnings.simplefilter("ignore")
    with zipfile.ZipFile(out, "w") as z:
        plain(z)
        z.writestr("dup.txt", "first\n")
        z.writestr("dup.txt", "second\n")
elif kind == "bomb":
    # 64 MiB of zeros: far over the inflate limit for one entry.
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        plain(z)
        z.writestr("bomb.txt", b"\0" * (64 << 20))
elif kind == "liar":
    # Declares 100 bytes; the stream inflates to 8 MiB.
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        plain(z)
        z.writestr("liar.txt", b"A" * (8 << 20))
    b = bytearray(open(out, "rb").read())
    c = b.rfind(b"PK\x01\x02")
    assert b[c + 46:c + 54] == b"liar.txt"
    struct.pack_into("<I", b, c + 24, 100)
    open(out, "wb").write(b)
elif kind == "overlap":
    # 200 central entries that all point at one local entry.
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", b"B" * (1 << 20))
    b = bytearray(open(out, "rb").read())
    c = b.find(b"PK\x01\x02")
    e = b.find(b"PK\x05\x06")
    rec = bytes(b[c:e])
    cd = bytearray(rec)
    for k in range(1, 200):
        cd += rec
    end = bytearray(b[e:e + 22])
    struct.pack_into("<HHII", end, 8, 200, 200, len(cd), c)
    open(out, "wb").write(bytes(b[:c]) + bytes(cd) + bytes(end))
elif kind == "big":
    # 24 MiB of text: inflated within the limit, a lot of memory at once.
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        plain(z)
        z.writestr("big.txt", b"0123456789abcdef" * (3 << 19))
EOF
}

# stored KIND: stores a hostile zip as a bundle; prints its URL on the server
stored() {
	local z="$BATS_FILE_TMPDIR/$1.zip" uri
	hostile "$z" "$1"
	uri=$(mi-store -t $T -r "$RUN" -y bundle "$z" | jq -r .uri)
	[[ $uri == */bundle/*.zip ]] || { echo "not stored: $1" >&2; return 1; }
	echo "http://127.0.0.1:$PS$uri"
}

signed_get() {
	local u=$1 p=$2 s
	s=$(MI_URL_SIGNING_KEY="$SIGNKEY" mi-serve --sign "$u")
	curl -s --path-as-is -o "$BATS_FILE_TMPDIR/body" -w '%{http_code}' "$u/$p?${s#*\?}"
}

@test "hostile zips: ../, absolute and odd names, links, directories, duplicates refused" {
	local u p
	u=$(stored names)
	run signed_get "$u" ok.txt
	[ "$output" = 200 ]
	for p in ../escape.txt escape.txt /etc/passwd etc/passwd a/../../b.txt b.txt \
	    'C:\win.txt' 'dir\back.txt' 'sp%20ace.txt' a//b.txt ./dot.txt dot.txt; do
		run signed_get "$u" "$p"
		[ "$output" = 404 ] || { echo "$p: $output"; false; }
		[ "$(cat "$BATS_FILE_TMPDIR/body")" = "not found" ]
	done
	u=$(stored symlink)
	run signed_get "$u" link.txt
	[ "$output" = 404 ]
	run signed_get "$u" dir/
	[ "$output" = 404 ]
	run signed_get "$u" ok.txt
	[ "$output" = 200 ]
	u=$(stored dup)
	run signed_get "$u" dup.txt
	[ "$output" = 404 ]
	run signed_get "$u" ok.txt
	[ "$output" = 200 ]
	# --verify names each refused entry.
	run -1 --separate-stderr mi-bundle --verify "$BATS_FILE_TMPDIR/names.zip"
	[[ $output == *"is refused: name outside the grammar"* ]]
	run -1 --separate-stderr mi-bundle --verify "$BATS_FILE_TMPDIR/symlink.zip"
	[[ $output == *"link.txt' is refused: symbolic link"* ]]
	run -1 --separate-stderr mi-bundle --verify "$BATS_FILE_TMPDIR/dup.zip"
	[[ $output == *"dup.txt' is refused: duplicate"* ]]
}

vm_hwm_kb() {
	awk '/^VmHWM:/ { print $2 }' "/proc/$(cat "$BATS_FILE_TMPDIR/serve.pid")/status"
}

@test "zip bombs are refused and mi-serve's memory stays bounded" {
	local u before after i codes
	before=$(vm_hwm_kb)
	u=$(stored bomb)
	run signed_get "$u" bomb.txt
	[ "$output" = 404 ]
	run signed_get "$u" ok.txt
	[ "$output" = 200 ]
	u=$(stored liar)
	run signed_get "$u" liar.txt
	[ "$output" = 404 ]
	u=$(stored overlap)
	run signed_get "$u" a.txt
	[ "$output" = 404 ]
	run -1 --separate-stderr mi-bundle --verify "$BATS_FILE_TMPDIR/overlap.zip"
	[[ $output == *"entries overlap"* ]]
	# 24 MiB inflated at a time, 12 at once: within the budget, the rest
	# wait for another try (503), never more memory.
	u=$(stored big)
	s=$(MI_URL_SIGNING_KEY="$SIGNKEY" mi-serve --sign "$u")
	for i in $(seq 12); do
		curl -s -o /dev/null -w '%{http_code} %{size_download}\n' "$u/big.txt?${s#*\?}" &
	done >"$BATS_FILE_TMPDIR/codes"
	wait
	codes=$(sort "$BATS_FILE_TMPDIR/codes" | uniq -c)
	echo "$codes"
	grep -q "^200 $((24 << 20))$" "$BATS_FILE_TMPDIR/codes"
	! grep -v -e "^200 $((24 << 20))$" -e '^503 ' "$BATS_FILE_TMPDIR/codes"
	after=$(vm_hwm_kb)
	echo "VmHWM $before kB -> $after kB"
	[ $((after - before)) -lt $((160 * 1024)) ]
	# The server is still well.
	run curl -s "http://127.0.0.1:$PS/healthz"
	[ "$output" = ok ]
}

@test "the spin-the-wheel game plays from the bundle in headless Chromium" {
	local u q shot
	u=$(bundle_url)
	q=$(bundle_query)
	shot=${MI_SCREENSHOTS:-$BATS_FILE_TMPDIR}/bundle-game.png
	run node "$BATS_TEST_DIRNAME/browser/run.mjs" "$u/$q/index.html" "$shot"
	echo "$output" | jq -c '{result, failed, errors}'
	[ "$status" -eq 0 ]
	echo "$output" | jq -e '.result.ok == true and .result.meshes > 0 and
	    .result.environment == true and .result.texture == true and
	    .result.music_ready == true and .result.sfx_ready == true and
	    (.result.bundle_id | startswith("bundle_"))'
	echo "$output" | jq -e '.failed == [] and .errors == []'
	# Every request of the page went to the bundle, and was answered.
	echo "$output" | jq -e '[.seen[] | select(.url | startswith("http")) |
	    select(.url | contains("/bundle/") | not)] == []'
	echo "$output" | jq -e '[.seen[] | select(.url | contains("/bundle/")) | .status] | all(. == 200 or . == 206)'
	echo "$output" | jq -e '[.seen[].url | select(test("three.core.js|wheel.glb|music.wav|spin.wav|sky.hdr|floor.png|game_config.json"))] | length >= 7'
	[ -s "$shot" ]
}
