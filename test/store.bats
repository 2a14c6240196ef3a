#!/usr/bin/env bats
# mi-store and mi-migrate: layout, rows, hashing, dedup, sniffing, names,
# injected write failures, a database that is down, bad JSON.

load test_helper

setup_file() {
	mi_setup_db
	mi_setup_store
	export MEDIA="$BATS_FILE_TMPDIR/media"
	mkdir -p "$MEDIA"
	python3 "$BATS_TEST_DIRNAME/lib/mkmedia.py" png "$MEDIA/a.png" 1 64
	python3 "$BATS_TEST_DIRNAME/lib/mkmedia.py" png "$MEDIA/b.png" 2 64
	python3 "$BATS_TEST_DIRNAME/lib/mkmedia.py" wav "$MEDIA/s.wav" 3 10
	python3 "$BATS_TEST_DIRNAME/lib/mkmedia.py" glb "$MEDIA/m.glb" 4
	python3 "$BATS_TEST_DIRNAME/lib/mkmedia.py" hdr "$MEDIA/e.hdr" 5 32
	cc -shared -fPIC -o "$BATS_FILE_TMPDIR/failwrite.so" \
	    "$BATS_TEST_DIRNAME/lib/failwrite.c" -ldl
	# Under make check SANITIZE=address the shim comes before libasan.
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
}

setup() {
	RUN=$(uuid)
}

@test "mi-store stores a file at the content-addressed path and records it" {
	run --separate-stderr mi-store --tenant org_a --run "$RUN" --type texture \
	    --skill gen_texture "$MEDIA/a.png"
	assert_success
	hash=$(sha256sum "$MEDIA/a.png" | cut -c1-64)
	echo "$output" | jq -e --arg h "$hash" --arg r "$RUN" '
	    .content_hash == $h and .tenant_id == "org_a" and .run_id == $r and
	    .type == "texture" and .skill_id == "gen_texture" and
	    .filename == "a.png" and .metadata.mime_type == "image/png" and
	    .deduplicated == false and
	    .uri == "/api/assets/org_a/\($r)/texture/\($h).png"'
	size=$(stat -c %s "$MEDIA/a.png")
	echo "$output" | jq -e --argjson s "$size" '.size_bytes == $s'
	cmp "$MEDIA/a.png" "$ASSET_STORAGE_DIR/org_a/$RUN/texture/$hash.png"
	id=$(echo "$output" | jq -r .id)
	run sql "SELECT tenant_id, run_id, type, content_hash, size_bytes, uri
	    FROM app.artifacts WHERE id = '$id'"
	assert_output "org_a|$RUN|texture|$hash|$size|/api/assets/org_a/$RUN/texture/$hash.png"
}

@test "the stored hash equals sha256sum for every media kind" {
	for f in a.png s.wav m.glb e.hdr; do
		run --separate-stderr mi-store -t org_h -r "$RUN" -y misc "$MEDIA/$f"
		assert_success
		want=$(sha256sum "$MEDIA/$f" | cut -c1-64)
		got=$(echo "$output" | jq -r .content_hash)
		[ "$got" = "$want" ]
		ext=${f##*.}
		[ -f "$ASSET_STORAGE_DIR/org_h/$RUN/misc/$want.$ext" ]
	done
}

@test "content from standard input is stored like a file" {
	run --separate-stderr sh -c "cat '$MEDIA/b.png' | mi-store -t org_p -r $RUN -y image -"
	assert_success
	want=$(sha256sum "$MEDIA/b.png" | cut -c1-64)
	echo "$output" | jq -e --arg h "$want" '.content_hash == $h and .filename == null'
}

@test "a large file is hashed and copied correctly" {
	head -c 30000000 /dev/urandom > "$BATS_TEST_TMPDIR/big.bin"
	cat "$MEDIA/s.wav" "$BATS_TEST_TMPDIR/big.bin" > "$BATS_TEST_TMPDIR/big.wav"
	run --separate-stderr mi-store -t org_big -r "$RUN" -y audio "$BATS_TEST_TMPDIR/big.wav"
	assert_success
	want=$(sha256sum "$BATS_TEST_TMPDIR/big.wav" | cut -c1-64)
	echo "$output" | jq -e --arg h "$want" '.content_hash == $h and .size_bytes == 30008044'
	cmp "$BATS_TEST_TMPDIR/big.wav" "$ASSET_STORAGE_DIR/org_big/$RUN/audio/$want.wav"
}

@test "a file rewritten while it is stored never lands under a wrong hash" {
	# Two versions of one PNG, the same size; a writer puts them in turn
	# over the file, in place, while mi-store reads it.
	f=$BATS_TEST_TMPDIR/live.png
	for v in A B; do
		{ cat "$MEDIA/a.png"; head -c 48000000 /dev/urandom; } > "$BATS_TEST_TMPDIR/$v"
	done
	cp "$BATS_TEST_TMPDIR/A" "$f"
	( while :; do
		for v in B A; do
			dd if="$BATS_TEST_TMPDIR/$v" of="$f" bs=1M conv=notrunc status=none
			sleep 0.2
		done
	done ) &
	writer=$!
	for i in 1 2 3 4 5; do
		mi-store -t org_live -r "$(uuid)" -y image "$f" \
		    >>"$BATS_TEST_TMPDIR/out" 2>>"$BATS_TEST_TMPDIR/err" || true
	done
	kill "$writer"
	wait "$writer" || true
	# Each save either stored some content under its own hash or said
	# that the file changed; nothing else.
	[ "$(wc -l < "$BATS_TEST_TMPDIR/out")" = 5 ]
	jq -e -s 'all(.content_hash != null or (.error.code == "STORAGE_ERROR" and
	    (.error.message | test("changed while"))))' "$BATS_TEST_TMPDIR/out"
	n=0
	for o in "$ASSET_STORAGE_DIR"/org_live/.objects/*; do
		[ -e "$o" ] || continue
		name=$(basename "$o")
		sum=$(sha256sum "$o" | cut -c1-64)
		[ "$sum" = "${name%%.*}" ]
		n=$((n + 1))
	done
	# And every path that a record names holds what its hash says.
	for p in $(jq -r 'select(.content_hash) | "\(.content_hash) \(.uri)"' "$BATS_TEST_TMPDIR/out" | tr ' ' '|'); do
		h=${p%%|*}
		rel=${p#*|/api/assets/}
		[ "$(sha256sum "$ASSET_STORAGE_DIR/$rel" | cut -c1-64)" = "$h" ]
	done
}

@test "the same content in the same run is not written twice" {
	run --separate-stderr mi-store -t org_d -r "$RUN" -y image "$MEDIA/a.png" "$MEDIA/a.png"
	assert_success
	[ "$(echo "$output" | jq -s 'map(.deduplicated)' -c)" = '[false,true]' ]
	[ "$(echo "$output" | jq -s 'map(.id) | unique | length')" = 1 ]
	hash=$(sha256sum "$MEDIA/a.png" | cut -c1-64)
	[ "$(find "$ASSET_STORAGE_DIR/org_d/$RUN" -type f | wc -l)" = 1 ]
	run sql "SELECT count(*) FROM app.artifacts WHERE tenant_id = 'org_d'"
	assert_output 1
}

@test "the same content in another run is a hard link, not a copy" {
	run2=$(uuid)
	mi-store -t org_x -r "$RUN" -y image "$MEDIA/a.png" >/dev/null
	run --separate-stderr mi-store -t org_x -r "$run2" -y image "$MEDIA/a.png"
	assert_success
	echo "$output" | jq -e '.deduplicated == true'
	hash=$(sha256sum "$MEDIA/a.png" | cut -c1-64)
	i1=$(stat -c %i "$ASSET_STORAGE_DIR/org_x/$RUN/image/$hash.png")
	i2=$(stat -c %i "$ASSET_STORAGE_DIR/org_x/$run2/image/$hash.png")
	[ "$i1" = "$i2" ]
	# Another tenant gets its own copy: tenants share nothing.
	run --separate-stderr mi-store -t org_y -r "$run2" -y image "$MEDIA/a.png"
	echo "$output" | jq -e '.deduplicated == false'
	i3=$(stat -c %i "$ASSET_STORAGE_DIR/org_y/$run2/image/$hash.png")
	[ "$i3" != "$i1" ]
	run sql "SELECT count(*) FROM app.artifacts WHERE tenant_id = 'org_x'"
	assert_output 2
}

@test "concurrent saves of the same content all succeed and leave one file" {
	runs=()
	for i in 1 2 3 4; do runs+=("$(uuid)"); done
	pids=()
	for i in $(seq 1 12); do
		r=${runs[$((i % 4))]}
		mi-store -t org_c -r "$r" -y image "$MEDIA/b.png" \
		    >"$BATS_TEST_TMPDIR/out.$i" 2>&1 &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	cat "$BATS_TEST_TMPDIR"/out.* | jq -e -s 'length == 12 and all(.content_hash != null)'
	# One inode for all four run paths and the canonical copy.
	[ "$(find "$ASSET_STORAGE_DIR/org_c" -type f -printf '%i\n' | sort -u | wc -l)" = 1 ]
	[ "$(find "$ASSET_STORAGE_DIR/org_c" -type f | wc -l)" = 5 ]
	# Exactly one of the twelve saw the content as new.
	[ "$(cat "$BATS_TEST_TMPDIR"/out.* | jq -s 'map(select(.deduplicated == false)) | length')" = 1 ]
	run sql "SELECT count(*), count(DISTINCT run_id) FROM app.artifacts WHERE tenant_id = 'org_c'"
	assert_output "4|4"
}

@test "a .png that is really text is refused with a validation error" {
	echo "hello, this is not an image" > "$BATS_TEST_TMPDIR/fake.png"
	run -1 --separate-stderr mi-store -t org_v -r "$RUN" -y image "$BATS_TEST_TMPDIR/fake.png"
	echo "$output" | jq -e '.error.code == "VALIDATION_ERROR" and
	    (.error.message | test("text/plain"))'
	[[ $stderr == *"mi-store: warning: "* ]]
	[ ! -d "$ASSET_STORAGE_DIR/org_v/$RUN" ]
	run sql "SELECT count(*) FROM app.artifacts WHERE tenant_id = 'org_v'"
	assert_output 0
}

@test "a declared extension that disagrees with the content is refused" {
	cp "$MEDIA/s.wav" "$BATS_TEST_TMPDIR/sound.png"
	run -1 --separate-stderr mi-store -t org_v -r "$RUN" -y misc "$BATS_TEST_TMPDIR/sound.png"
	echo "$output" | jq -e '.error.code == "VALIDATION_ERROR" and
	    (.error.message | test("audio/wav.*image/png"))'
}

@test "a file that does not suit the artifact type is refused" {
	run -1 --separate-stderr mi-store -t org_v -r "$RUN" -y intro_video "$MEDIA/s.wav"
	echo "$output" | jq -e '.error.code == "VALIDATION_ERROR" and
	    (.error.message | test("intro_video"))'
}

@test "a zero-byte file is refused" {
	: > "$BATS_TEST_TMPDIR/empty.png"
	run -1 --separate-stderr mi-store -t org_v -r "$RUN" -y image "$BATS_TEST_TMPDIR/empty.png"
	echo "$output" | jq -e '.error.code == "VALIDATION_ERROR" and (.error.message | test("empty"))'
}

@test "hostile names never reach a path" {
	long=$(printf 'a%.0s' $(seq 1 256))
	for t in '../x' 'a/b' '.' '..' 'a%2fb' 'a b' '' 'a\b' "$long" $'a\nb' 'é'; do
		run -1 --separate-stderr mi-store -t "$t" -r "$RUN" -y image "$MEDIA/a.png"
		echo "$output" | jq -e '.error.code == "VALIDATION_ERROR" and (.error.message | test("bad tenant"))'
	done
	for r in '../../etc' 'not-a-uuid' "$RUN/.." "${RUN}x"; do
		run -1 --separate-stderr mi-store -t org_n -r "$r" -y image "$MEDIA/a.png"
		echo "$output" | jq -e '.error.message | test("bad run")'
	done
	for y in '../../x' 'a/b' '.objects' "$long"; do
		run -1 --separate-stderr mi-store -t org_n -r "$RUN" -y "$y" "$MEDIA/a.png"
		echo "$output" | jq -e '.error.message | test("bad type")'
	done
	# Through records, a NUL escape cannot smuggle a separator either.
	run -1 --separate-stderr mi-store <<<"{\"path\":\"$MEDIA/a.png\",\"tenant_id\":\"org\\u0000/../x\",\"run_id\":\"$RUN\",\"type\":\"image\"}"
	echo "$output" | jq -e '.error.code == "VALIDATION_ERROR"'
	[ -z "$(ls -A "$ASSET_STORAGE_DIR" | grep -v '^org_' || true)" ]
	[ ! -e "$ASSET_STORAGE_DIR/org_n" ] || [ -z "$(find "$ASSET_STORAGE_DIR/org_n" -name '*.png' -not -path '*/.objects/*')" ]
}

@test "write failures are retried and then succeed" {
	rm -f "$BATS_TEST_TMPDIR/faults"
	MI_FAULT_COUNT=2 MI_FAULT_LOG="$BATS_TEST_TMPDIR/faults" \
	    LD_PRELOAD="$BATS_FILE_TMPDIR/failwrite.so" \
	    run --separate-stderr mi-store -t org_f -r "$RUN" -y image "$MEDIA/a.png"
	assert_success
	[ "$(wc -l < "$BATS_TEST_TMPDIR/faults")" = 2 ]
	hash=$(sha256sum "$MEDIA/a.png" | cut -c1-64)
	cmp "$MEDIA/a.png" "$ASSET_STORAGE_DIR/org_f/$RUN/image/$hash.png"
}

@test "persistent write failures give STORAGE_ERROR after 3 retries and no file" {
	rm -f "$BATS_TEST_TMPDIR/faults"
	MI_FAULT_COUNT=1000 MI_FAULT_LOG="$BATS_TEST_TMPDIR/faults" \
	    LD_PRELOAD="$BATS_FILE_TMPDIR/failwrite.so" \
	    run -1 --separate-stderr mi-store -t org_g -r "$RUN" -y image "$MEDIA/b.png"
	echo "$output" | jq -e '.error.code == "STORAGE_ERROR" and .error.retryable == true and
	    (.error.message | test("No space left on device"))'
	# One attempt and three retries.
	[ "$(wc -l < "$BATS_TEST_TMPDIR/faults")" = 4 ]
	[ -z "$(find "$ASSET_STORAGE_DIR/org_g" -type f)" ]
	run sql "SELECT count(*) FROM app.artifacts WHERE tenant_id = 'org_g'"
	assert_output 0
	# A failing fsync is treated the same way (EIO).
	MI_FAULT_COUNT=1000 MI_FAULT_ERRNO=5 LD_PRELOAD="$BATS_FILE_TMPDIR/failwrite.so" \
	    run -1 --separate-stderr sh -c "cat '$MEDIA/b.png' | mi-store -t org_g -r $RUN -y image -"
	echo "$output" | jq -e '.error.code == "STORAGE_ERROR" and (.error.message | test("Input/output error"))'
	[ -z "$(find "$ASSET_STORAGE_DIR/org_g" -type f)" ]
}

@test "without O_TMPFILE the named temporary file is stored readable (0644)" {
	MI_FAULT_NO_TMPFILE=1 LD_PRELOAD="$BATS_FILE_TMPDIR/failwrite.so" \
	    run --separate-stderr mi-store -t org_nt -r "$RUN" -y image "$MEDIA/a.png"
	assert_success
	hash=$(sha256sum "$MEDIA/a.png" | cut -c1-64)
	cmp "$MEDIA/a.png" "$ASSET_STORAGE_DIR/org_nt/.objects/$hash.png"
	[ "$(stat -c %a "$ASSET_STORAGE_DIR/org_nt/.objects/$hash.png")" = 644 ]
	[ "$(stat -c %a "$ASSET_STORAGE_DIR/org_nt/$RUN/image/$hash.png")" = 644 ]
	# No temporary file is left behind.
	[ "$(ls -A "$ASSET_STORAGE_DIR/org_nt/.objects")" = "$hash.png" ]
}

@test "a run directory that cannot be made leaves no object and is not retryable" {
	rm -f "$BATS_TEST_TMPDIR/faults"
	MI_FAULT_MKDIR="$RUN" MI_FAULT_LOG="$BATS_TEST_TMPDIR/faults" \
	    LD_PRELOAD="$BATS_FILE_TMPDIR/failwrite.so" \
	    run -1 --separate-stderr mi-store -t org_perm -r "$RUN" -y image "$MEDIA/a.png"
	echo "$output" | jq -e '.error.code == "STORAGE_ERROR" and .error.retryable == false'
	echo "$output" | jq -e --arg r "$RUN" '.error.message | test("create directory .*\($r).*: Permission denied")'
	# Tried once and retried three times, as writes are.
	[ "$(grep -c mkdir "$BATS_TEST_TMPDIR/faults")" = 4 ]
	[ -z "$(find "$ASSET_STORAGE_DIR/org_perm" -type f)" ]
	run sql "SELECT count(*) FROM app.artifacts WHERE tenant_id = 'org_perm'"
	assert_output 0
	# A disk that is full there is worth another try later.
	MI_FAULT_MKDIR="$RUN" MI_FAULT_MKDIR_ERRNO=28 LD_PRELOAD="$BATS_FILE_TMPDIR/failwrite.so" \
	    run -1 --separate-stderr mi-store -t org_perm -r "$RUN" -y image "$MEDIA/a.png"
	echo "$output" | jq -e '.error.code == "STORAGE_ERROR" and .error.retryable == true'
	[ -z "$(find "$ASSET_STORAGE_DIR/org_perm" -type f)" ]
}

@test "new directories are fsynced in their parents, and directory fsyncs are checked" {
	root=$(realpath "$ASSET_STORAGE_DIR")
	rm -f "$BATS_TEST_TMPDIR/fsyncs"
	MI_FSYNC_LOG="$BATS_TEST_TMPDIR/fsyncs" LD_PRELOAD="$BATS_FILE_TMPDIR/failwrite.so" \
	    run --separate-stderr mi-store -t org_fsync -r "$RUN" -y image "$MEDIA/a.png"
	assert_success
	cat "$BATS_TEST_TMPDIR/fsyncs"
	for d in "$root" "$root/org_fsync" "$root/org_fsync/.objects" \
	    "$root/org_fsync/$RUN" "$root/org_fsync/$RUN/image"; do
		grep -qx "$d" "$BATS_TEST_TMPDIR/fsyncs"
	done
	# A directory fsync that keeps failing is a STORAGE_ERROR ...
	MI_FAULT_DIR_COUNT=1000 MI_FAULT_ERRNO=5 LD_PRELOAD="$BATS_FILE_TMPDIR/failwrite.so" \
	    run -1 --separate-stderr mi-store -t org_fsync2 -r "$RUN" -y image "$MEDIA/a.png"
	echo "$output" | jq -e '.error.code == "STORAGE_ERROR" and .error.retryable == true and
	    (.error.message | test("fsync directory .*Input/output error"))'
	run sql "SELECT count(*) FROM app.artifacts WHERE tenant_id = 'org_fsync2'"
	assert_output 0
	# ... and one that fails twice is retried.
	MI_FAULT_DIR_COUNT=2 LD_PRELOAD="$BATS_FILE_TMPDIR/failwrite.so" \
	    run --separate-stderr mi-store -t org_fsync3 -r "$RUN" -y image "$MEDIA/a.png"
	assert_success
}

@test "an upper-case run UUID is stored, linked and recorded in lower case" {
	up=${RUN^^}
	low=${RUN,,}
	[ "$up" != "$low" ]
	run --separate-stderr mi-store -t org_uc -r "$up" -y image "$MEDIA/a.png"
	assert_success
	hash=$(sha256sum "$MEDIA/a.png" | cut -c1-64)
	echo "$output" | jq -e --arg r "$low" --arg h "$hash" '.run_id == $r and
	    .uri == "/api/assets/org_uc/\($r)/image/\($h).png"'
	id=$(echo "$output" | jq -r .id)
	[ -f "$ASSET_STORAGE_DIR/org_uc/$low/image/$hash.png" ]
	[ ! -e "$ASSET_STORAGE_DIR/org_uc/$up" ]
	# The same run in lower case is the same tree and the same row.
	run --separate-stderr mi-store -t org_uc -r "$low" -y image "$MEDIA/a.png"
	assert_success
	echo "$output" | jq -e --arg id "$id" '.deduplicated == true and .id == $id'
	[ "$(ls "$ASSET_STORAGE_DIR/org_uc" | grep -v '^[.]objects$')" = "$low" ]
	# Records spell it either way too.
	run --separate-stderr mi-store <<<"{\"path\":\"$MEDIA/b.png\",\"tenant_id\":\"org_uc\",\"run_id\":\"$up\",\"type\":\"image\"}"
	assert_success
	echo "$output" | jq -e --arg r "$low" '.run_id == $r and (.uri | contains($r))'
	[ ! -e "$ASSET_STORAGE_DIR/org_uc/$up" ]
}

@test "a database that is down gives exit 69 and a clear message" {
	DATABASE_URL="postgresql://postgres@127.0.0.1:1/none" \
	    run -69 --separate-stderr mi-store -t org_a -r "$RUN" -y image "$MEDIA/a.png"
	assert_output ""
	[[ $stderr == "mi-store: unable to connect to the database:"* ]]
}

@test "missing configuration gives exit 78" {
	env -u DATABASE_URL mi-store -t org_a -r "$RUN" -y image "$MEDIA/a.png" && false
	run -78 env -u DATABASE_URL mi-store -t org_a -r "$RUN" -y image "$MEDIA/a.png"
	run -78 --separate-stderr env -u ASSET_STORAGE_DIR mi-store -t org_a -r "$RUN" -y image "$MEDIA/a.png"
	[[ $stderr == *"ASSET_STORAGE_DIR is not set"* ]]
}

@test "record mode: bad JSON becomes an error record and the rest is stored" {
	run -1 --separate-stderr mi-store <<EOF
{"path":"$MEDIA/a.png","tenant_id":"org_r","run_id":"$RUN","type":"image","skill_id":"s1","metadata":{"k":1}}
{"path": "$MEDIA/b.png", "tenant_id":
{"path":"$MEDIA/s.wav","tenant_id":"org_r","run_id":"$RUN","type":"sfx"}
not json at all
{"tenant_id":"org_r","run_id":"$RUN","type":"image"}
{"path":"/nonexistent.png","tenant_id":"org_r","run_id":"$RUN","type":"image"}
{"error":{"code":"PROVIDER_ERROR","message":"upstream"},"job":1}
{"path":"$MEDIA/m.glb","tenant_id":"org_r","run_id":"$RUN","type":"model_3d"}
EOF
	[ "$(echo "$output" | wc -l)" = 8 ]
	echo "$output" | sed -n 1p | jq -e '.skill_id == "s1" and .metadata.k == 1'
	echo "$output" | sed -n 2p | jq -e '.error.code == "INVALID_JSON"'
	echo "$output" | sed -n 3p | jq -e '.metadata.mime_type == "audio/wav"'
	echo "$output" | sed -n 4p | jq -e '.error.code == "INVALID_JSON"'
	echo "$output" | sed -n 5p | jq -e '.error.code == "VALIDATION_ERROR" and (.error.message | test("path"))'
	echo "$output" | sed -n 6p | jq -e '.error.code == "MISSING_ASSET"'
	echo "$output" | sed -n 7p | jq -e '.error.message == "upstream" and .job == 1'
	echo "$output" | sed -n 8p | jq -e '.metadata.mime_type == "model/gltf-binary"'
	run sql "SELECT count(*) FROM app.artifacts WHERE tenant_id = 'org_r'"
	assert_output 3
}

@test "record mode: an RS byte is an error record, never an abort" {
	# jq's parser resets on 0x1E mid-buffer, then asserts on the next one.
	run -1 --separate-stderr sh -c "printf '[1,\036 2]\n' | mi-store"
	assert_output --partial '"code":"INVALID_JSON"'
	echo "$output" | jq -e '.error.message | test("0x1E")'
	a='{"path":"'$MEDIA/a.png'","tenant_id":"org_rs","run_id":"'$RUN'","type":"image"}'
	b='{"path":"'$MEDIA/s.wav'","tenant_id":"org_rs","run_id":"'$RUN'","type":"sfx"}'
	printf '%s\n\036\n%s\n{"a":"x\036y"}\n{"n":\000}\n[1 "b"]\n%s\n' "$a" "$b" "$a" \
	    > "$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr mi-store < "$BATS_TEST_TMPDIR/in"
	[ "$(echo "$output" | wc -l)" = 7 ]
	echo "$output" | sed -n 1p | jq -e '.metadata.mime_type == "image/png"'
	echo "$output" | sed -n 2p | jq -e '.error.code == "INVALID_JSON" and (.error.message | test("record 2: invalid byte 0x1E at line 2"))'
	echo "$output" | sed -n 3p | jq -e '.metadata.mime_type == "audio/wav"'
	echo "$output" | sed -n 4p | jq -e '.error.code == "INVALID_JSON" and (.error.message | test("0x1E"))'
	echo "$output" | sed -n 5p | jq -e '.error.code == "INVALID_JSON" and (.error.message | test("0x00"))'
	echo "$output" | sed -n 6p | jq -e '.error.code == "INVALID_JSON" and (.error.message | test("separator"))'
	# The last record is the first one again: found.
	echo "$output" | sed -n 7p | jq -e '.deduplicated == true'
	run sql "SELECT count(*) FROM app.artifacts WHERE tenant_id = 'org_rs'"
	assert_output 2
}

@test "another record reader (mi-route-audio) goes on after RS and NUL bytes" {
	req='{"tenant_id":"org_a","run_id":"'$RUN'","run_step_id":"'$(uuid)'","media_type":"audio_sfx","prompt":"p","params":{"duration_sec":2,"sfx_type":"click"}}'
	printf '%s\n\036\n[1,\0362]\n\000\n%s\n' "$req" "$req" > "$BATS_TEST_TMPDIR/in"
	run -1 --separate-stderr mi-route-audio < "$BATS_TEST_TMPDIR/in"
	[ "$(echo "$output" | wc -l)" = 5 ]
	echo "$output" | sed -n 1p | jq -e '.error == null and .provider_id != null'
	echo "$output" | sed -n 2p | jq -e '.error.code == "INVALID_JSON"'
	echo "$output" | sed -n 3p | jq -e '.error.code == "INVALID_JSON"'
	echo "$output" | sed -n 4p | jq -e '.error.code == "INVALID_JSON"'
	echo "$output" | sed -n 5p | jq -e '.error == null and .provider_id != null'
}

@test "MI_PUBLIC_URL prefixes the uri and a signing key adds a signed URL" {
	MI_PUBLIC_URL=https://cdn.example/ MI_URL_SIGNING_KEY=k3y \
	    run --separate-stderr mi-store -t org_u -r "$RUN" -y image "$MEDIA/a.png"
	assert_success
	echo "$output" | jq -e '(.uri | startswith("https://cdn.example/api/assets/org_u/")) and
	    (.signed_url | test("^https://cdn.example/api/assets/org_u/.*[.]png[?]exp=[0-9]+&sig=[0-9a-f]{64}$"))'
	# The signature is HMAC-SHA256 over "path\nexp".
	url=$(echo "$output" | jq -r .signed_url)
	path=${url#https://cdn.example}; path=${path%%\?*}
	exp=${url#*exp=}; exp=${exp%%&*}
	sig=${url##*sig=}
	want=$(printf '%s\n%s' "$path" "$exp" | openssl dgst -sha256 -hmac k3y -r | cut -c1-64)
	[ "$sig" = "$want" ]
	run grep -c k3y <<<"$output"
	assert_output 0
}

@test "an output that cannot be written is reported with its real cause" {
	run -74 --separate-stderr sh -c "mi-store -t org_o -r $RUN -y image '$MEDIA/a.png' > /dev/full"
	[ "$stderr" = "mi-store: unable to write output: No space left on device" ]
	run -74 --separate-stderr sh -c "mi-store -t org_o -r $RUN -y image '$MEDIA/a.png' >&-"
	[ "$stderr" = "mi-store: unable to write output: Bad file descriptor" ]
	# Records and error records alike.
	run -74 --separate-stderr sh -c "printf 'x\n' | mi-store > /dev/full"
	[[ $stderr == *"mi-store: unable to write output: No space left on device" ]]
}

@test "usage, help and version" {
	run -0 mi-store --help
	assert_line --index 0 --partial "usage: mi-store"
	run -0 mi-store --version
	assert_output "mi-store 0.1.0"
	run -64 --separate-stderr mi-store --bogus
	[[ $stderr == "mi-store: unknown option '--bogus'"* ]]
	run -64 --separate-stderr mi-store "$MEDIA/a.png"
	[[ $stderr == *"needs --tenant"* ]]
}

@test "mi-migrate is idempotent and safe to run concurrently" {
	$PSQL -q -X "$MI_PG_BASE/postgres" -c "CREATE DATABASE mig_$$" >/dev/null
	url="$MI_PG_BASE/mig_$$"
	for i in 1 2 3 4; do
		DATABASE_URL=$url mi-migrate >"$BATS_TEST_TMPDIR/m.$i" 2>&1 &
	done
	wait
	n=$(ls "$MI_MIGRATIONS_DIR"/*.sql | wc -l)
	applied=$(cat "$BATS_TEST_TMPDIR"/m.* | grep -c '"status":"applied"' || true)
	[ "$applied" = "$n" ]
	run -0 --separate-stderr env DATABASE_URL=$url mi-migrate
	[ "$(echo "$output" | jq -s 'map(select(.status == "present")) | length')" = "$n" ]
	[[ $stderr == "mi-migrate: 0 applied, $n present" ]]
	run $PSQL -X -A -t "$url" -c "SELECT count(*) FROM app.schema_migrations"
	assert_output "$n"
	DATABASE_URL="postgresql://postgres@127.0.0.1:1/none" run -69 mi-migrate
}

@test "MP3 is known by its frame header, after an ID3 tag or without it; a frame header with a bitrate that does not exist is not MP3" {
	local d=$BATS_TEST_TMPDIR
	ffmpeg -v error -f lavfi -i sine=d=1 -metadata title=tagged -y "$d/tagged.mp3"
	ffmpeg -v error -f lavfi -i sine=d=1 -id3v2_version 0 -write_xing 0 -y "$d/bare.mp3"
	[ "$(head -c 3 "$d/tagged.mp3")" = ID3 ]
	[ "$(head -c 2 "$d/bare.mp3" | od -An -tx1 | tr -d ' ')" = fffb ]
	for f in tagged bare; do
		run -0 --separate-stderr mi-store -t org_mp3 -r "$RUN" -y audio_sfx "$d/$f.mp3"
		echo "$output" | jq -e '.metadata.mime_type == "audio/mpeg" and (.uri | endswith(".mp3"))'
	done
	# Bitrate index 15 does not exist: libmagic does not take it either.
	{ printf '\377\373\360\000'; head -c 4000 /dev/urandom; } >"$d/bad.mp3"
	run -1 --separate-stderr mi-store -t org_mp3 -r "$RUN" -y audio_sfx "$d/bad.mp3"
	echo "$output" | jq -e '.error.message | test("not a known media type")'
}
