#!/usr/bin/env bats
# mi-serve over real HTTP: content types, 200/206/304/404/405/416 and their
# headers, HEAD, CORS, every way a request can be refused (each answered
# exactly as a missing file), a corpus of hostile paths, malformed
# requests, metrics, restart, SIGTERM, signed URLs from mi-store, caching
# headers, JWKS keys (tokens minted by PyJWT) and their reload on SIGHUP,
# hostile clients (pipelined bad tokens, idle connections at the fd limit).
# The request parser's and token reader's fuzz targets run in fuzz.bats.
#
# Server A: HS256 secret + URL signing key + an origin list, /metrics open
# to loopback clients.
# Server B: RS256 public key with issuer and audience, no signing key, no
# origin list, a metrics token.

load test_helper

b64url() {
	openssl base64 -A | tr '+/' '-_' | tr -d '='
}

# jwt_hs PAYLOAD [SECRET] [HEADER]
jwt_hs() {
	local h p s
	h=$(printf '%s' "${3:-{\"alg\":\"HS256\",\"typ\":\"JWT\"\}}" | b64url)
	p=$(printf '%s' "$1" | b64url)
	s=$(printf '%s.%s' "$h" "$p" |
	    openssl dgst -sha256 -hmac "${2:-$SECRET}" -binary | b64url)
	echo "$h.$p.$s"
}

# jwt_rs PAYLOAD: RS256 with the test key
jwt_rs() {
	local h p s
	h=$(printf '{"alg":"RS256","typ":"JWT","kid":"k1"}' | b64url)
	p=$(printf '%s' "$1" | b64url)
	s=$(printf '%s.%s' "$h" "$p" |
	    openssl dgst -sha256 -sign "$KEYDIR/key.pem" -binary | b64url)
	echo "$h.$p.$s"
}

# sig_for PATH EXP: the signature mi-serve expects, made independently
sig_for() {
	printf '%s\n%s' "$1" "$2" | openssl dgst -sha256 -hmac "$SIGNKEY" |
	    awk '{ print $NF }'
}

# put TENANT RUN TYPE EXT CONTENT: a file at its store path; prints the hash
put() {
	local f="$BATS_FILE_TMPDIR/put.tmp" h
	printf '%s' "$5" >"$f"
	h=$(sha256sum "$f" | cut -c1-64)
	mkdir -p "$ASSET_STORAGE_DIR/$1/$2/$3"
	mv "$f" "$ASSET_STORAGE_DIR/$1/$2/$3/$h.$4"
	echo "$h"
}

# resp CURL-ARGS...: status line, headers without Date, then the body
resp() {
	curl -s -i --path-as-is "$@" | tr -d '\r' | grep -av '^Date: '
}

# wait_up PORT [PID [LOG]]: until /healthz answers (at most 30 s on a
# busy machine); stops at once, showing LOG, if PID has ended
wait_up() {
	local i
	for i in $(seq 300); do
		curl -fs -m 2 -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
		if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then
			echo "mi-serve on port $1 ended before it answered" >&2
			[ -n "${3:-}" ] && tail -5 "$3" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "mi-serve on port $1 did not come up in 30 s" >&2
	[ -n "${3:-}" ] && tail -5 "$3" >&2
	return 1
}

start_a() {
	env -u MI_JWT_PUBLIC_KEY MI_JWT_SECRET="$SECRET" \
	    MI_URL_SIGNING_KEY="$SIGNKEY" \
	    MI_CORS_ORIGINS="https://game.example, https://other.example" \
	    MI_METRICS_LOOPBACK=1 mi-serve --access-log --listen "127.0.0.1:$PA" \
	    2>>"$BATS_FILE_TMPDIR/a.log" 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/a.pid"
	wait_up "$PA" "$(cat "$BATS_FILE_TMPDIR/a.pid")" "$BATS_FILE_TMPDIR/a.log"
}

start_b() {
	env -u MI_JWT_SECRET -u MI_URL_SIGNING_KEY -u MI_CORS_ORIGINS \
	    MI_JWT_PUBLIC_KEY="$KEYDIR/pub.pem" \
	    MI_JWT_ISSUER=https://clerk.example MI_JWT_AUDIENCE=mi-games \
	    MI_METRICS_TOKEN=metrics-secret \
	    mi-serve --listen "127.0.0.1:$PB" --root "$ASSET_STORAGE_DIR" \
	    2>>"$BATS_FILE_TMPDIR/b.log" 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/b.pid"
	wait_up "$PB" "$(cat "$BATS_FILE_TMPDIR/b.pid")" "$BATS_FILE_TMPDIR/b.log"
}

stop_pid() {
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

setup_file() {
	mi_setup_db
	mi_setup_store
	export SECRET=hs256-test-secret-0123456789abcdef
	export SIGNKEY=url-signing-key-fedcba9876543210
	export KEYDIR="$BATS_FILE_TMPDIR/keys"
	mkdir -p "$KEYDIR"
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
	    -out "$KEYDIR/key.pem" 2>/dev/null
	openssl pkey -in "$KEYDIR/key.pem" -pubout -out "$KEYDIR/pub.pem"
	export NOW=$(date +%s)
	export R=6f1c8d2e-4b7a-4c1e-9a53-0d2f6b8e7c10
	export RB=0a4e1b7c-2d3f-4a5b-8c6d-7e8f9a0b1c2d

	# Tenant A's model, stored by mi-store (so .objects holds it too).
	python3 "$BATS_TEST_DIRNAME/lib/mkmedia.py" glb "$BATS_FILE_TMPDIR/m.glb" 7
	printf 'TENANT-A-MARKER' >>"$BATS_FILE_TMPDIR/m.glb"
	MI_URL_SIGNING_KEY="$SIGNKEY" mi-store --tenant org_a --run "$R" \
	    --type model_3d "$BATS_FILE_TMPDIR/m.glb" >"$BATS_FILE_TMPDIR/a.json"
	export HA=$(jq -r .content_hash "$BATS_FILE_TMPDIR/a.json")
	export PATH_A="/api/assets/org_a/$R/model_3d/$HA.glb"
	export HB=$(put org_b "$RB" model_3d glb "glTF-TENANT-B-MARKER")
	export PATH_B="/api/assets/org_b/$RB/model_3d/$HB.glb"
	# A path of tenant A that holds nothing.
	export PATH_M="/api/assets/org_a/$R/model_3d/$(printf 0%.0s $(seq 64)).glb"

	# Links out of the store and across tenants, for the traversal corpus.
	local out="$BATS_FILE_TMPDIR/outside"
	export RL=11111111-2222-4333-8444-555555555555
	mkdir -p "$out/run/model_3d"
	printf 'SECRET-OUTSIDE-MARKER' >"$out/secret"
	export HS=$(sha256sum "$out/secret" | cut -c1-64)
	cp "$out/secret" "$out/run/model_3d/$HS.glb"
	ln -s "$out/secret" "$ASSET_STORAGE_DIR/org_a/$R/model_3d/$HS.glb"
	ln -s "$out/run" "$ASSET_STORAGE_DIR/org_a/$RL"
	ln -s "../../org_b/$RB/model_3d" "$ASSET_STORAGE_DIR/org_a/$R/lnk_b"
	ln -s "$HA.glb" "$ASSET_STORAGE_DIR/org_a/$R/model_3d/lnk_a.glb"

	export TOK_A=$(jwt_hs "{\"sub\":\"user_1\",\"org_id\":\"org_a\",\"exp\":$((NOW + 3600))}")
	export TOK_B=$(jwt_hs "{\"sub\":\"user_2\",\"org_id\":\"org_b\",\"exp\":$((NOW + 3600))}")
	export RS_A=$(jwt_rs "{\"sub\":\"user_1\",\"o\":{\"id\":\"org_a\",\"rol\":\"admin\"},\"iss\":\"https://clerk.example\",\"aud\":\"mi-games\",\"exp\":$((NOW + 3600)),\"nbf\":$((NOW - 10))}")

	export PA=$(free_port) PB=$(free_port)
	start_a
	start_b
}

teardown_file() {
	stop_pid "$BATS_FILE_TMPDIR/a.pid"
	stop_pid "$BATS_FILE_TMPDIR/b.pid"
}

A() {
	echo "http://127.0.0.1:$PA$1"
}

B() {
	echo "http://127.0.0.1:$PB$1"
}

@test "--help, --version and a bad option" {
	run -0 mi-serve --help
	assert_line --partial "usage: mi-serve"
	run -0 mi-serve --version
	assert_output "mi-serve 0.1.0"
	run -64 --separate-stderr mi-serve --bogus
	[[ $stderr == *"mi-serve: unknown option '--bogus'"* ]]
	run -64 mi-serve extra-argument
	run -64 mi-serve --ttl 60
}

@test "bad configuration exits 78, a port in use 69" {
	run -78 --separate-stderr env -u MI_JWT_SECRET -u MI_JWT_PUBLIC_KEY \
	    -u MI_URL_SIGNING_KEY mi-serve --listen 127.0.0.1:0
	[[ $stderr == *"no credentials configured"* ]]
	run -78 --separate-stderr env -u ASSET_STORAGE_DIR \
	    MI_JWT_SECRET=x mi-serve
	[[ $stderr == *"no store"* ]]
	run -78 env MI_JWT_SECRET=x mi-serve --root /nonexistent/store
	run -78 env MI_JWT_SECRET=x mi-serve --listen nonsense
	run -78 --separate-stderr env MI_JWT_PUBLIC_KEY=/etc/hostname mi-serve
	[[ $stderr == *"no PEM public key"* ]]
	run -69 --separate-stderr env MI_JWT_SECRET=x mi-serve \
	    --listen "127.0.0.1:$PA"
	[[ $stderr == *"in use"* ]]
}

@test "--sign prints a URL that mi-serve accepts; it checks its input" {
	run -0 env MI_URL_SIGNING_KEY="$SIGNKEY" mi-serve --sign "$PATH_A" \
	    --ttl 120
	[[ $output == "$PATH_A?exp="*"&sig="* ]]
	exp=${output#*exp=}
	exp=${exp%%&*}
	[ "$exp" -ge $((NOW + 120)) ]
	[ "$exp" -le $(($(date +%s) + 120)) ]
	[ "${output##*sig=}" = "$(sig_for "$PATH_A" "$exp")" ]
	run -0 curl -fs -o "$BATS_TEST_TMPDIR/got" "$(A "$output")"
	cmp "$BATS_TEST_TMPDIR/got" "$BATS_FILE_TMPDIR/m.glb"

	run -0 env MI_URL_SIGNING_KEY="$SIGNKEY" mi-serve \
	    --sign "https://cdn.example$PATH_A"
	[[ $output == "https://cdn.example$PATH_A?exp="* ]]
	run -0 env MI_URL_SIGNING_KEY="$SIGNKEY" \
	    MI_PUBLIC_URL=https://assets.example/ mi-serve --sign "$PATH_A"
	[[ $output == "https://assets.example$PATH_A?exp="* ]]
	run -78 env -u MI_URL_SIGNING_KEY mi-serve --sign "$PATH_A"
	run -65 env MI_URL_SIGNING_KEY=k mi-serve --sign /etc/passwd
	run -64 env MI_URL_SIGNING_KEY=k mi-serve --sign "$PATH_A" --ttl 0
	run -64 env MI_URL_SIGNING_KEY=k mi-serve --sign "$PATH_A" --ttl 31536001
}

@test "MI_URL_TTL is bounded: a huge one is refused, never a negative exp" {
	for t in 9223372036854775807 31536001 0 -5 12x; do
		run -78 --separate-stderr env MI_URL_SIGNING_KEY=k MI_URL_TTL="$t" \
		    mi-serve --sign "$PATH_A"
		[[ $stderr == *"MI_URL_TTL '$t' is not a number of seconds"* ]]
		run -78 env MI_URL_SIGNING_KEY=k MI_URL_TTL="$t" \
		    mi-serve --listen 127.0.0.1:0
	done
	run -0 env MI_URL_SIGNING_KEY=k MI_URL_TTL=31536000 mi-serve --sign "$PATH_A"
	exp=${output#*exp=}
	exp=${exp%%&*}
	[ "$exp" -le $(($(date +%s) + 31536000)) ]
	# mi-store with such a TTL gives no signed_url rather than a bad one
	run -0 --separate-stderr env MI_URL_SIGNING_KEY="$SIGNKEY" MI_URL_TTL=9223372036854775807 \
	    mi-store --tenant org_a --run "$R" --type model_3d "$BATS_FILE_TMPDIR/m.glb"
	[ "$(jq -r .signed_url <<<"$output")" = null ]
	run -0 --separate-stderr env MI_URL_SIGNING_KEY="$SIGNKEY" MI_URL_TTL=60 \
	    mi-store --tenant org_a --run "$R" --type model_3d "$BATS_FILE_TMPDIR/m.glb"
	url=$(jq -r .signed_url <<<"$output")
	exp=${url#*exp=}
	exp=${exp%%&*}
	[ "$exp" -gt "$(date +%s)" ]
	[ "$exp" -le $(($(date +%s) + 60)) ]
}

@test "mi-store's signed_url is served by mi-serve" {
	url=$(jq -r .signed_url "$BATS_FILE_TMPDIR/a.json")
	[[ $url == "$PATH_A?exp="*"&sig="* ]]
	run -0 curl -fs -o "$BATS_TEST_TMPDIR/got" "$(A "$url")"
	cmp "$BATS_TEST_TMPDIR/got" "$BATS_FILE_TMPDIR/m.glb"
}

@test "GET 200 with a token: the bytes, ETag, revalidated private caching, the common headers" {
	run -0 curl -fs -D "$BATS_TEST_TMPDIR/h" -o "$BATS_TEST_TMPDIR/got" \
	    -H "Authorization: Bearer $TOK_A" "$(A "$PATH_A")"
	cmp "$BATS_TEST_TMPDIR/got" "$BATS_FILE_TMPDIR/m.glb"
	run -0 tr -d '\r' <"$BATS_TEST_TMPDIR/h"
	assert_line "HTTP/1.1 200 OK"
	assert_line "Content-Type: model/gltf-binary"
	assert_line "Content-Length: $(stat -c %s "$BATS_FILE_TMPDIR/m.glb")"
	assert_line "ETag: \"$HA\""
	assert_line "Cache-Control: private, no-cache"
	refute_line --partial "immutable"
	refute_line --partial "max-age"
	assert_line "Accept-Ranges: bytes"
	assert_line "Cross-Origin-Resource-Policy: cross-origin"
	assert_line "X-Content-Type-Options: nosniff"
	assert_line "Vary: Origin"
	assert_line --regexp '^Date: [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT$'
}

@test "every stored type has its Content-Type" {
	local types="glb model/gltf-binary
gltf model/gltf+json
bin application/octet-stream
ktx2 image/ktx2
hdr image/vnd.radiance
exr image/x-exr
png image/png
jpg image/jpeg
webp image/webp
avif image/avif
mp4 video/mp4
webm video/webm
mp3 audio/mpeg
wav audio/wav
ogg audio/ogg
json application/json
zip application/zip
wasm application/wasm"
	while read -r ext type; do
		h=$(put org_a "$R" media "$ext" "content of a .$ext file")
		run -0 curl -fs -D "$BATS_TEST_TMPDIR/h" -o "$BATS_TEST_TMPDIR/got" \
		    -H "Authorization: Bearer $TOK_A" \
		    "$(A "/api/assets/org_a/$R/media/$h.$ext")"
		grep -qx "Content-Type: $type"$'\r' "$BATS_TEST_TMPDIR/h" ||
		    { echo "$ext: $(grep -i content-type "$BATS_TEST_TMPDIR/h")"; false; }
		[ "$(cat "$BATS_TEST_TMPDIR/got")" = "content of a .$ext file" ]
	done <<<"$types"
	[ "$(wc -l <<<"$types")" -eq 18 ]
}

@test "HEAD: the headers of GET and no body, on a kept-alive connection" {
	# A HEAD and a GET in one write: the second answer must follow the
	# first head directly, proving that no body was sent for HEAD.
	run -0 python3 "$BATS_TEST_DIRNAME/lib/httpraw.py" "$PA" \
	    "HEAD $PATH_A HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer $TOK_A\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
	size=$(stat -c %s "$BATS_FILE_TMPDIR/m.glb")
	first=${output%%$'\r\n\r\n'*}
	rest=${output#*$'\r\n\r\n'}
	[[ $first == "HTTP/1.1 200 OK"* ]]
	[[ $first == *"Content-Length: $size"* ]]
	[[ $first == *"Content-Type: model/gltf-binary"* ]]
	[[ $first == *"ETag: \"$HA\""* ]]
	[[ $first != *"Connection: close"* ]]
	[[ $rest == "HTTP/1.1 200 OK"* ]]
	[[ $rest == *"Connection: close"* ]]
	[[ $rest == *$'\r\n\r\n'"ok" ]]
}

@test "If-None-Match: 304 with the validators and no body" {
	for inm in "\"$HA\"" "W/\"$HA\"" "\"abc\", \"$HA\"" "*"; do
		run -0 resp -H "Authorization: Bearer $TOK_A" \
		    -H "If-None-Match: $inm" "$(A "$PATH_A")"
		assert_line --index 0 "HTTP/1.1 304 Not Modified"
		assert_line "ETag: \"$HA\""
		assert_line "Cache-Control: private, no-cache"
		assert_line "X-Content-Type-Options: nosniff"
		assert_line "Cross-Origin-Resource-Policy: cross-origin"
		refute_line --partial "Content-Length"
		[ "${lines[-1]}" = "Accept-Ranges: bytes" ] || [ "${lines[-1]}" = "Vary: Origin" ]
	done
	run -0 resp -H "Authorization: Bearer $TOK_A" \
	    -H "If-None-Match: \"0000\"" "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 200 OK"
	# revalidation checks the token again: without it, the 404
	run -0 resp -H "If-None-Match: \"$HA\"" "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
	run -0 resp -H "Authorization: Bearer $TOK_B" -H "If-None-Match: \"$HA\"" \
	    "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
}

@test "a signed URL's answer may be cached publicly, never past its exp" {
	local exp=$((NOW + 600)) far=$((NOW + 3 * 31536000)) got max
	run -0 resp "$(A "$PATH_A?exp=$exp&sig=$(sig_for "$PATH_A" "$exp")")"
	assert_line --index 0 "HTTP/1.1 200 OK"
	assert_line "ETag: \"$HA\""
	got=$(grep '^Cache-Control: ' <<<"$output")
	[[ $got == "Cache-Control: public, max-age="*", immutable" ]]
	max=${got#*max-age=}
	max=${max%%,*}
	[ "$max" -gt 0 ]
	[ "$max" -le $((exp - NOW)) ]
	[ "$max" -ge $((exp - $(date +%s) - 5)) ]
	# a far exp is held a year at most
	run -0 resp "$(A "$PATH_A?exp=$far&sig=$(sig_for "$PATH_A" "$far")")"
	assert_line "Cache-Control: public, max-age=31536000, immutable"
	# its 304 says the same
	run -0 resp -H "If-None-Match: \"$HA\"" \
	    "$(A "$PATH_A?exp=$exp&sig=$(sig_for "$PATH_A" "$exp")")"
	assert_line --index 0 "HTTP/1.1 304 Not Modified"
	assert_line --regexp '^Cache-Control: public, max-age=[0-9]+, immutable$'
}

@test "error answers are never cached and carry their own type" {
	local size exp=$((NOW + 600)) old=$((NOW - 60)) u
	size=$(stat -c %s "$BATS_FILE_TMPDIR/m.glb")
	check_error() {
		assert_line "Cache-Control: no-store"
		assert_line "Content-Type: text/plain; charset=utf-8"
		refute_line --partial "ETag"
		refute_line --partial "immutable"
		refute_line --partial "max-age"
		refute_line --partial "Accept-Ranges"
		[ "$(grep -c '^Cache-Control' <<<"$output")" -eq 1 ]
		[ "$(grep -c '^Content-Type' <<<"$output")" -eq 1 ]
	}
	run -0 resp -H "Authorization: Bearer $TOK_A" -H "Range: bytes=$size-" "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 416 Range Not Satisfiable"
	assert_line "Content-Range: bytes */$size"
	check_error
	u="$PATH_A?exp=$exp&sig=$(sig_for "$PATH_A" "$exp")"
	run -0 resp -H "Range: bytes=$size-" "$(A "$u")"
	assert_line --index 0 "HTTP/1.1 416 Range Not Satisfiable"
	check_error
	run -0 resp -H "Authorization: Bearer $TOK_A" "$(A "$PATH_M")"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
	check_error
	run -0 resp "$(A "$PATH_A?exp=$old&sig=$(sig_for "$PATH_A" "$old")")"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
	check_error
	run -0 resp -X DELETE -H "Authorization: Bearer $TOK_A" "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 405 Method Not Allowed"
	check_error
	raw() {
		python3 "$BATS_TEST_DIRNAME/lib/httpraw.py" "$PA" "$1" | tr -d '\r'
	}
	run -0 raw "GET $PATH_A HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
	assert_line --index 0 "HTTP/1.1 400 Bad Request"
	check_error
}

@test "Range: 206 for one range, 200 for several or a stale If-Range, 416 past the end" {
	local f="$BATS_FILE_TMPDIR/m.glb" size
	size=$(stat -c %s "$f")
	run -0 resp -H "Authorization: Bearer $TOK_A" -r 4-11 "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 206 Partial Content"
	assert_line "Content-Range: bytes 4-11/$size"
	assert_line "Content-Length: 8"
	assert_line "Content-Type: model/gltf-binary"
	curl -fs -H "Authorization: Bearer $TOK_A" -r 4-11 "$(A "$PATH_A")" \
	    >"$BATS_TEST_TMPDIR/part"
	cmp "$BATS_TEST_TMPDIR/part" <(tail -c +5 "$f" | head -c 8)
	# a suffix, an open end, an end past the size
	curl -fs -H "Authorization: Bearer $TOK_A" -r -15 "$(A "$PATH_A")" |
	    cmp - <(tail -c 15 "$f")
	curl -fs -H "Authorization: Bearer $TOK_A" -r 100- "$(A "$PATH_A")" |
	    cmp - <(tail -c +101 "$f")
	run -0 resp -H "Authorization: Bearer $TOK_A" -r "10-99999999" "$(A "$PATH_A")"
	assert_line "Content-Range: bytes 10-$((size - 1))/$size"
	# several ranges, a stale If-Range, a malformed Range: the whole file
	run -0 resp -H "Authorization: Bearer $TOK_A" -r 0-1,5-6 "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 200 OK"
	run -0 resp -H "Authorization: Bearer $TOK_A" -H "Range: bytes=0-1" \
	    -H 'If-Range: "other"' "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 200 OK"
	run -0 resp -H "Authorization: Bearer $TOK_A" -H "Range: bytes=0-1" \
	    -H "If-Range: \"$HA\"" "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 206 Partial Content"
	run -0 resp -H "Authorization: Bearer $TOK_A" -H "Range: pages=1-2" "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 200 OK"
	# unsatisfiable
	for r in "bytes=$size-" "bytes=99999999-100000000" "bytes=-0"; do
		run -0 resp -H "Authorization: Bearer $TOK_A" -H "Range: $r" "$(A "$PATH_A")"
		assert_line --index 0 "HTTP/1.1 416 Range Not Satisfiable"
		assert_line "Content-Range: bytes */$size"
		assert_line "X-Content-Type-Options: nosniff"
		assert_line "Cross-Origin-Resource-Policy: cross-origin"
	done
}

@test "404 for a missing file and 405 for other methods, with the common headers" {
	run -0 resp -H "Authorization: Bearer $TOK_A" "$(A "$PATH_M")"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
	assert_line "Content-Type: text/plain; charset=utf-8"
	assert_line "X-Content-Type-Options: nosniff"
	assert_line "Cross-Origin-Resource-Policy: cross-origin"
	assert_line "Cache-Control: no-store"
	assert_line "not found"
	for m in POST PUT DELETE PATCH; do
		run -0 resp -X "$m" -H "Authorization: Bearer $TOK_A" "$(A "$PATH_A")"
		assert_line --index 0 "HTTP/1.1 405 Method Not Allowed"
		assert_line "Allow: GET, HEAD, OPTIONS"
		assert_line "X-Content-Type-Options: nosniff"
		assert_line "Cross-Origin-Resource-Policy: cross-origin"
	done
	run -0 resp -X POST "$(A /healthz)"
	assert_line --index 0 "HTTP/1.1 405 Method Not Allowed"
	run -0 resp "$(A /)"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
	run -0 resp "$(A /api/assets/org_a/)"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
}

@test "a body sent with a request is answered and the connection closed" {
	run -0 resp -X POST --data 'abc' "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 405 Method Not Allowed"
	assert_line "Connection: close"
}

@test "Bearer refusals answer exactly as a missing file (HS256 server)" {
	local exp=$((NOW + 3600)) want
	want=$(resp -H "Authorization: Bearer $TOK_A" "$(A "$PATH_M")")
	[[ $want == "HTTP/1.1 404 Not Found"* ]]
	h_none=$(printf '{"alg":"none","typ":"JWT"}' | b64url)
	p_a=$(printf '{"org_id":"org_a","exp":%d}' "$exp" | b64url)
	p_b=$(printf '{"org_id":"org_b","exp":%d}' "$exp" | b64url)
	tampered="${TOK_B%%.*}.$p_a.${TOK_B##*.}"
	declare -A cases=(
		[no token]=""
		[garbage]="Authorization: Bearer not-a-token"
		[basic auth]="Authorization: Basic dXNlcjpwYXNz"
		[empty bearer]="Authorization: Bearer "
		[tampered payload]="Authorization: Bearer $tampered"
		[other secret]="Authorization: Bearer $(jwt_hs "{\"org_id\":\"org_a\",\"exp\":$exp}" other-secret)"
		[expired]="Authorization: Bearer $(jwt_hs "{\"org_id\":\"org_a\",\"exp\":$((NOW - 300))}")"
		[not yet valid]="Authorization: Bearer $(jwt_hs "{\"org_id\":\"org_a\",\"exp\":$exp,\"nbf\":$((NOW + 600))}")"
		[no exp]="Authorization: Bearer $(jwt_hs '{"org_id":"org_a"}')"
		[no tenant]="Authorization: Bearer $(jwt_hs "{\"sub\":\"u\",\"exp\":$exp}")"
		[alg none]="Authorization: Bearer $h_none.$p_a."
		[alg none signed]="Authorization: Bearer $h_none.$p_a.${TOK_A##*.}"
		[RS256 to an HS256 server]="Authorization: Bearer $RS_A"
		[HS512]="Authorization: Bearer $(jwt_hs "{\"org_id\":\"org_a\",\"exp\":$exp}" "$SECRET" '{"alg":"HS512"}')"
		[crit header]="Authorization: Bearer $(jwt_hs "{\"org_id\":\"org_a\",\"exp\":$exp}" "$SECRET" '{"alg":"HS256","crit":["x"],"x":1}')"
		[wrong tenant]="Authorization: Bearer $TOK_B"
		[two tokens]="Authorization: Bearer $TOK_A $TOK_A"
		[tenant with NUL]="Authorization: Bearer $(jwt_hs "{\"org_id\":\"org_a\\u0000x\",\"exp\":$exp}")"
		[tenant twice]="Authorization: Bearer $(jwt_hs "{\"org_id\":\"org_a\",\"org_id\":\"org_a\",\"exp\":$exp}")"
		[alg twice]="Authorization: Bearer $(jwt_hs "{\"org_id\":\"org_a\",\"exp\":$exp}" "$SECRET" '{"alg":"HS256","alg":"none"}')"
		[header not JSON]="Authorization: Bearer $(jwt_hs "{\"org_id\":\"org_a\",\"exp\":$exp}" "$SECRET" '{"alg":"HS256",}')"
		[header too long]="Authorization: Bearer $(jwt_hs "{\"org_id\":\"org_a\",\"exp\":$exp}" "$SECRET" "{\"alg\":\"HS256\",\"x\":\"$(printf 'x%.0s' $(seq 800))\"}")"
	)
	for c in "${!cases[@]}"; do
		if [ -n "${cases[$c]}" ]; then
			got=$(resp -H "${cases[$c]}" "$(A "$PATH_A")")
		else
			got=$(resp "$(A "$PATH_A")")
		fi
		[ "$got" = "$want" ] || { echo "case '$c' differs:"; diff <(echo "$want") <(echo "$got"); false; }
	done
	# Tenant B's existing file and a path B does not have, with A's token.
	got=$(resp -H "Authorization: Bearer $TOK_A" "$(A "$PATH_B")")
	[ "$got" = "$want" ]
	got=$(resp -H "Authorization: Bearer $TOK_A" "$(A "${PATH_B/$HB/$HA}")")
	[ "$got" = "$want" ]
	# and the same token does fetch its own file
	run -0 curl -fs -o /dev/null -H "Authorization: Bearer $TOK_A" "$(A "$PATH_A")"
	run -0 curl -fs -o /dev/null -H "Authorization: Bearer $TOK_B" "$(A "$PATH_B")"
}

@test "RS256 with o.id, issuer and audience; HS256 made with the public key is refused" {
	local exp=$((NOW + 3600)) want pubhex
	run -0 curl -fs -o "$BATS_TEST_TMPDIR/got" -H "Authorization: Bearer $RS_A" \
	    "$(B "$PATH_A")"
	cmp "$BATS_TEST_TMPDIR/got" "$BATS_FILE_TMPDIR/m.glb"
	# org_id is read too
	tok=$(jwt_rs "{\"org_id\":\"org_a\",\"iss\":\"https://clerk.example\",\"aud\":[\"x\",\"mi-games\"],\"exp\":$exp}")
	run -0 curl -fs -o /dev/null -H "Authorization: Bearer $tok" "$(B "$PATH_A")"

	want=$(resp -H "Authorization: Bearer $RS_A" "$(B "$PATH_M")")
	[[ $want == "HTTP/1.1 404 Not Found"* ]]
	# The classic confusion: HMAC keyed with the server's public key.
	pubhex=$(od -An -v -tx1 "$KEYDIR/pub.pem" | tr -d ' \n')
	h=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
	p=$(printf '{"o":{"id":"org_a"},"iss":"https://clerk.example","aud":"mi-games","exp":%d}' "$exp" | b64url)
	s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -mac HMAC \
	    -macopt "hexkey:$pubhex" -binary | b64url)
	for tok in "$h.$p.$s" \
	    "$(jwt_rs "{\"o\":{\"id\":\"org_a\"},\"iss\":\"https://evil.example\",\"aud\":\"mi-games\",\"exp\":$exp}")" \
	    "$(jwt_rs "{\"o\":{\"id\":\"org_a\"},\"iss\":\"https://clerk.example\",\"aud\":\"other\",\"exp\":$exp}")" \
	    "$(jwt_rs "{\"o\":{\"id\":\"org_a\"},\"iss\":\"https://clerk.example\",\"aud\":\"mi-games\",\"exp\":$((NOW - 120))}")" \
	    "$(jwt_rs "{\"o\":{\"id\":\"org_b\"},\"iss\":\"https://clerk.example\",\"aud\":\"mi-games\",\"exp\":$exp}")" \
	    "$TOK_A"; do
		got=$(resp -H "Authorization: Bearer $tok" "$(B "$PATH_A")")
		[ "$got" = "$want" ] || { diff <(echo "$want") <(echo "$got"); false; }
	done
}

@test "signed URL refusals answer exactly as a missing file" {
	local exp=$((NOW + 600)) old=$((NOW - 60)) want s
	want=$(resp -H "Origin: https://game.example" \
	    "$(A "$PATH_M?exp=$exp&sig=$(sig_for "$PATH_M" "$exp")")")
	[[ $want == "HTTP/1.1 404 Not Found"* ]]
	[[ $want == *"Access-Control-Allow-Origin: https://game.example"* ]]
	s=$(sig_for "$PATH_A" "$exp")
	run -0 curl -fs -o /dev/null "$(A "$PATH_A?exp=$exp&sig=$s")"
	flipped=$(echo "$s" | sed 's/^./x/; s/^x/0/')
	[ "$flipped" != "$s" ] || flipped=$(echo "$s" | sed 's/^./1/')
	for q in "exp=$exp&sig=$flipped" \
	    "exp=$((exp + 1))&sig=$s" \
	    "exp=$old&sig=$(sig_for "$PATH_A" "$old")" \
	    "exp=$exp" "sig=$s" "exp=$exp&sig=" \
	    "exp=$exp&sig=$s&sig=$s" "exp=$exp&exp=$exp&sig=$s" \
	    "exp=${exp}x&sig=$s" "exp=-1&sig=$s" \
	    "exp=$exp&sig=$(echo "$s" | tr a-f A-F)" \
	    "exp=$exp&sig=$(sig_for "$PATH_B" "$exp")"; do
		got=$(resp -H "Origin: https://game.example" "$(A "$PATH_A?$q")")
		[ "$got" = "$want" ] || { echo "query $q:"; diff <(echo "$want") <(echo "$got"); false; }
	done
	# A's signature on B's path, and B's signature on A's path.
	s=$(sig_for "$PATH_B" "$exp")
	got=$(resp -H "Origin: https://game.example" "$(A "$PATH_A?exp=$exp&sig=$s")")
	[ "$got" = "$want" ]
	# A server without a signing key refuses signed URLs the same way.
	want=$(resp "$(B "$PATH_M?exp=$exp&sig=$(sig_for "$PATH_M" "$exp")")")
	got=$(resp "$(B "$PATH_A?exp=$exp&sig=$(sig_for "$PATH_A" "$exp")")")
	[ "$got" = "$want" ]
}

@test "CORS: preflight, allowed and other origins, signed URLs default to *" {
	run -0 resp -X OPTIONS -H "Origin: https://game.example" \
	    -H "Access-Control-Request-Method: GET" \
	    -H "Access-Control-Request-Headers: authorization, range" \
	    "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 204 No Content"
	assert_line "Access-Control-Allow-Origin: https://game.example"
	assert_line "Access-Control-Allow-Methods: GET, HEAD, OPTIONS"
	assert_line "Access-Control-Allow-Headers: Authorization, Range, If-None-Match, If-Range"
	assert_line "Access-Control-Max-Age: 86400"
	assert_line "Vary: Origin"
	assert_line "X-Content-Type-Options: nosniff"
	assert_line "Cross-Origin-Resource-Policy: cross-origin"
	run -0 resp -X OPTIONS -H "Origin: https://evil.example" "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 204 No Content"
	refute_line --partial "Access-Control-Allow-Origin"

	run -0 resp -H "Origin: https://other.example" -H "Authorization: Bearer $TOK_A" "$(A "$PATH_A")"
	assert_line "Access-Control-Allow-Origin: https://other.example"
	assert_line "Timing-Allow-Origin: https://other.example"
	assert_line "Access-Control-Expose-Headers: Content-Length, Content-Range, Accept-Ranges, ETag"
	run -0 resp -H "Origin: https://evil.example" -H "Authorization: Bearer $TOK_A" "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 200 OK"
	refute_line --partial "Access-Control-Allow-Origin"
	refute_line --partial "Timing-Allow-Origin"
	# refusals carry the same CORS headers as answers
	run -0 resp -H "Origin: https://game.example" "$(A "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
	assert_line "Access-Control-Allow-Origin: https://game.example"

	# B has no origin list: signed URLs get *, Bearer requests nothing.
	run -0 resp -H "Origin: https://game.example" -H "Authorization: Bearer $RS_A" "$(B "$PATH_A")"
	assert_line --index 0 "HTTP/1.1 200 OK"
	refute_line --partial "Access-Control-Allow-Origin"
	run -0 resp -H "Origin: https://game.example" "$(B "$PATH_A?exp=1&sig=00")"
	assert_line "Access-Control-Allow-Origin: *"
	assert_line "Timing-Allow-Origin: *"
}

@test "traversal corpus: at least 40 hostile paths, all refused, nothing leaked" {
	local corpus="$BATS_TEST_DIRNAME/serve_traversal.txt" n
	n=$(grep -vc '^#' "$corpus")
	[ "$n" -ge 40 ]
	hau=$(echo "$HA" | tr a-f A-F)
	run -0 python3 "$BATS_TEST_DIRNAME/lib/httpraw.py" corpus "$PA" "$TOK_A" \
	    "$corpus" A=org_a B=org_b R="$R" RB="$RB" HA="$HA" HB="$HB" \
	    HS="$HS" RL="$RL" HAU="$hau"
	[ "${#lines[@]}" -eq "$n" ]
	notfound=$(printf 'not found\n' | sha256sum | cut -c1-64)
	badreq=$(printf 'bad request\n' | sha256sum | cut -c1-64)
	for l in "${lines[@]}"; do
		IFS=$'\t' read -r status body target <<<"$l"
		case "$status:$body" in
		"404:$notfound" | "400:$badreq") ;;
		*) echo "not refused: $l"; false ;;
		esac
	done
	# the files behind the links exist and the token is good
	[ -f "$BATS_FILE_TMPDIR/outside/secret" ]
	[ -f "$ASSET_STORAGE_DIR/org_a/.objects/$HA.glb" ]
	run -0 curl -fs -o /dev/null -H "Authorization: Bearer $TOK_A" "$(A "$PATH_A")"
	run -0 curl -fs "$(A /healthz)"
}

@test "malformed requests: 400, 414, 431, 505 with the common headers, then close" {
	raw() {
		python3 "$BATS_TEST_DIRNAME/lib/httpraw.py" "$PA" "$1" | tr -d '\r'
	}
	run -0 raw 'GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n'
	assert_line --index 0 "HTTP/1.1 505 HTTP Version Not Supported"
	assert_line "Connection: close"
	assert_line "X-Content-Type-Options: nosniff"
	assert_line "Cross-Origin-Resource-Policy: cross-origin"
	run -0 raw 'GET /healthz HTTP/1.1\r\nHost: t\r\n Folded: x\r\n\r\n'
	assert_line --index 0 "HTTP/1.1 400 Bad Request"
	run -0 raw 'GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc'
	assert_line --index 0 "HTTP/1.1 400 Bad Request"
	run -0 raw 'GET /healthz HTTP/1.1\r\n\r\n'
	assert_line --index 0 "HTTP/1.1 400 Bad Request"
	run -0 raw 'GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'
	assert_line --index 0 "HTTP/1.1 400 Bad Request"
	run -0 raw 'GET /healthz HTTP/1.1\r\nHost : t\r\n\r\n'
	assert_line --index 0 "HTTP/1.1 400 Bad Request"
	run -0 raw 'GET  /healthz HTTP/1.1\r\nHost: t\r\n\r\n'
	assert_line --index 0 "HTTP/1.1 400 Bad Request"
	run -0 raw "GET /$(printf 'a%.0s' $(seq 5000)) HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n"
	assert_line --index 0 "HTTP/1.1 414 URI Too Long"
	run -0 raw "GET /healthz HTTP/1.1\\r\\nHost: t\\r\\nX: $(printf 'a%.0s' $(seq 17000))\\r\\n\\r\\n"
	assert_line --index 0 "HTTP/1.1 431 Request Header Fields Too Large"
	# HTTP/1.0 closes unless asked to keep alive; bare LF line ends work
	run -0 raw 'GET /healthz HTTP/1.0\n\n'
	assert_line --index 0 "HTTP/1.1 200 OK"
	assert_line "Connection: close"
	run -0 raw 'GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n'
	assert_line "Connection: keep-alive"
	[ "$(grep -c '^HTTP/1.1 200 OK' <<<"$output")" -eq 2 ]
}

@test "/healthz, and /metrics by status, bytes, connections and tenant" {
	run -0 resp "$(A /healthz)"
	assert_line --index 0 "HTTP/1.1 200 OK"
	assert_line "ok"
	curl -fs -o /dev/null -H "Authorization: Bearer $TOK_A" "$(A "$PATH_A")"
	curl -s -o /dev/null "$(A "$PATH_A")"
	run -0 curl -fs "$(A /metrics)"
	assert_line --regexp '^mi_serve_requests_total\{status="200"\} [1-9][0-9]*$'
	assert_line --regexp '^mi_serve_requests_total\{status="404"\} [1-9][0-9]*$'
	assert_line --regexp '^mi_serve_bytes_sent_total [1-9][0-9]*$'
	assert_line --regexp '^mi_serve_open_connections [1-9][0-9]*$'
	assert_line --regexp '^mi_serve_tenant_bytes_sent_total\{tenant="org_a"\} [1-9][0-9]*$'
	assert_line --regexp '^mi_serve_refused_total\{reason="no_credentials"\} [1-9][0-9]*$'
	assert_line "# TYPE mi_serve_requests_total counter"
	assert_line "# TYPE mi_serve_open_connections gauge"
	assert_line --regexp '^mi_serve_connections_max [1-9][0-9]*$'
	# B wants its token for /metrics, from loopback too
	run -0 resp "$(B /metrics)"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
	run -0 resp -H "Authorization: Bearer wrong" "$(B /metrics)"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
	run -0 curl -fs -H "Authorization: Bearer metrics-secret" "$(B /metrics)"
	assert_line --partial "mi_serve_requests_total"
}

@test "/metrics without a token or MI_METRICS_LOOPBACK=1 is closed to loopback clients too" {
	local port pid
	port=$(free_port)
	env -u MI_METRICS_TOKEN -u MI_METRICS_LOOPBACK MI_JWT_SECRET="$SECRET" \
	    mi-serve --listen "127.0.0.1:$port" 3>&- &
	pid=$!
	wait_up "$port" "$pid"
	run -0 resp "http://127.0.0.1:$port/metrics"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
	run -0 resp -H "Authorization: Bearer " "http://127.0.0.1:$port/metrics"
	assert_line --index 0 "HTTP/1.1 404 Not Found"
	kill -TERM "$pid"
	wait "$pid"
}

@test "the access log has one line per request and no secrets" {
	curl -fs -o /dev/null "$(A "$(jq -r .signed_url "$BATS_FILE_TMPDIR/a.json")")"
	sleep 0.1
	grep -q "\"GET $PATH_A\" 200 " "$BATS_FILE_TMPDIR/a.log"
	grep -q " no_credentials$" "$BATS_FILE_TMPDIR/a.log"
	run grep -c -e "sig=" -e "${TOK_A##*.}" -e "$SECRET" "$BATS_FILE_TMPDIR/a.log"
	assert_output 0
}

@test "assets are still served after a restart" {
	stop_pid "$BATS_FILE_TMPDIR/a.pid"
	run curl -s "$(A /healthz)"
	[ "$status" -ne 0 ]
	start_a
	run -0 curl -fs -o "$BATS_TEST_TMPDIR/got" -H "Authorization: Bearer $TOK_A" \
	    "$(A "$PATH_A")"
	cmp "$BATS_TEST_TMPDIR/got" "$BATS_FILE_TMPDIR/m.glb"
}

@test "SIGTERM: stops accepting, finishes the download in flight, exits 0" {
	local port big pid cpid
	port=$(free_port)
	head -c $((24 * 1024 * 1024)) /dev/urandom >"$BATS_TEST_TMPDIR/big.glb"
	big=$(sha256sum "$BATS_TEST_TMPDIR/big.glb" | cut -c1-64)
	mkdir -p "$ASSET_STORAGE_DIR/org_a/$R/video"
	cp "$BATS_TEST_TMPDIR/big.glb" "$ASSET_STORAGE_DIR/org_a/$R/video/$big.mp4"
	env MI_JWT_SECRET="$SECRET" mi-serve --listen "127.0.0.1:$port" 3>&- &
	pid=$!
	wait_up "$port" "$pid"
	curl -fs --limit-rate 12M -H "Authorization: Bearer $TOK_A" \
	    -o "$BATS_TEST_TMPDIR/got" \
	    "http://127.0.0.1:$port/api/assets/org_a/$R/video/$big.mp4" &
	cpid=$!
	sleep 0.5
	kill -TERM "$pid"
	for i in $(seq 300); do		# (slow under valgrind)
		run curl -s "http://127.0.0.1:$port/healthz"
		[ "$status" -eq 7 ] && break
		sleep 0.1
	done
	[ "$status" -eq 7 ]		# connection refused: no longer accepting
	kill -0 "$pid"			# still sending
	wait "$cpid"
	cmp "$BATS_TEST_TMPDIR/got" "$BATS_TEST_TMPDIR/big.glb"
	st=0
	wait "$pid" || st=$?
	[ "$st" -eq 0 ]
}

# rss PID: resident set size in kB
rss() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# cpu PID: user + system time in clock ticks
cpu() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

valgrind_on() {
	[ -n "${VALGRIND:-}" ] && [ "$VALGRIND" != 0 ]
}

@test "bad tokens pipelined before any auth: no parser sees them, RSS stays flat" {
	local pid tok small before after n=5000
	pid=$(cat "$BATS_FILE_TMPDIR/a.pid")
	# Headers that a JSON parser chokes on: a long one and a short one.
	tok="$(printf '{"a""%s"}' "$(head -c 11000 /dev/zero | tr '\0' x)" | b64url).e30.AAAA"
	small="$(printf '{"a""x"}' | b64url).e30.AAAA"
	valgrind_on && n=500
	run -0 python3 "$BATS_TEST_DIRNAME/lib/serve_hostile.py" pipeline "$PA" \
	    500 "$PATH_A" "$tok" "$small"
	before=$(rss "$pid")
	run -0 python3 "$BATS_TEST_DIRNAME/lib/serve_hostile.py" pipeline "$PA" \
	    "$n" "$PATH_A" "$tok" "$small"
	[ "$output" -eq "$n" ]
	run -0 python3 "$BATS_TEST_DIRNAME/lib/serve_hostile.py" pipeline "$PA" \
	    "$n" "$PATH_A" "$tok" "$small"
	[ "$output" -eq "$n" ]
	after=$(rss "$pid")
	echo "RSS $before -> $after kB after $((2 * n)) bad tokens"
	# jq leaked about 10 kB for each: 100 MB here.  Valgrind's own
	# bookkeeping grows; its leak check watches this run instead.
	valgrind_on || [ $((after - before)) -lt 4096 ]
	grep -q " bad_token$" "$BATS_FILE_TMPDIR/a.log"
	run -0 curl -fs -o /dev/null -H "Authorization: Bearer $TOK_A" "$(A "$PATH_A")"
}

@test "at the fd limit (ulimit -n 64, 100 idle connections): /healthz answers, no core spins" {
	local port pid ipid t0 t1
	port=$(free_port)
	(ulimit -n 64 && exec env MI_JWT_SECRET="$SECRET" MI_METRICS_LOOPBACK=1 \
	    mi-serve --listen "127.0.0.1:$port" 2>"$BATS_TEST_TMPDIR/log") 3>&- &
	pid=$!
	wait_up "$port" "$pid" "$BATS_TEST_TMPDIR/log"
	python3 "$BATS_TEST_DIRNAME/lib/serve_hostile.py" idle "$port" 100 6 \
	    >"$BATS_TEST_TMPDIR/idle" &
	ipid=$!
	sleep 2
	t0=$(cpu "$pid")
	# A connection closed to make room may be this one when the idle
	# ones are still being accepted (a loaded machine, valgrind): a
	# client tries again.
	for i in 1 2 3 4 5; do
		run curl -fs -m 5 "http://127.0.0.1:$port/healthz"
		[ "$status" -eq 0 ] && break
		sleep 0.2
	done
	[ "$status" -eq 0 ]
	assert_output "ok"
	run -0 curl -fs -m 5 -H "Authorization: Bearer $TOK_A" -o /dev/null \
	    "http://127.0.0.1:$port$PATH_A"
	sleep 2
	t1=$(cpu "$pid")
	echo "CPU over 2 s at the limit: $((t1 - t0)) ticks"
	[ $((t1 - t0)) -lt 50 ]
	run -0 curl -fs "http://127.0.0.1:$port/metrics"
	assert_line --regexp '^mi_serve_connections_max [1-9][0-9]?$'
	assert_line --regexp '^mi_serve_connections_evicted_total [1-9][0-9]*$'
	wait "$ipid"
	# the idle ones were closed to make room, not left to pile up
	[ "$(cat "$BATS_TEST_TMPDIR/idle")" -ge 50 ]
	kill -TERM "$pid"
	wait "$pid"
}

@test "JWKS: RS256, PS256 and ES256 tokens minted by PyJWT, chosen by kid" {
	local port pid d="$BATS_TEST_TMPDIR" exp=$((NOW + 3600)) c
	PY=/usr/bin/python3
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/r1.pem" 2>/dev/null
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/r2.pem" 2>/dev/null
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/e1.pem"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$d/e384.pem"
	$PY "$BATS_TEST_DIRNAME/lib/jwks.py" jwks r1:"$d/r1.pem" e1:"$d/e1.pem" >"$d/jwks1"
	$PY "$BATS_TEST_DIRNAME/lib/jwks.py" jwks r2:"$d/r2.pem" e1:"$d/e1.pem" >"$d/jwks2"
	cp "$d/jwks1" "$d/jwks.json"
	c="{\"org_id\":\"org_a\",\"exp\":$exp}"
	mint() {
		$PY "$BATS_TEST_DIRNAME/lib/jwks.py" mint "$@"
	}
	rs1=$(mint RS256 "$d/r1.pem" r1 "$c")
	ps1=$(mint PS256 "$d/r1.pem" r1 "$c")
	es1=$(mint ES256 "$d/e1.pem" e1 "$c")
	nokid=$(mint PS256 "$d/r1.pem" "" "$c")
	rs2=$(mint RS256 "$d/r2.pem" r2 "$c")
	unknown=$(mint RS256 "$d/r1.pem" nope "$c")
	crossed=$(mint RS256 "$d/r1.pem" e1 "$c")
	es384=$(mint ES384 "$d/e384.pem" e1 "$c")
	port=$(free_port)
	env -u MI_JWT_SECRET -u MI_JWT_PUBLIC_KEY MI_JWT_JWKS="$d/jwks.json" \
	    mi-serve -v --listen "127.0.0.1:$port" 2>"$d/log" 3>&- &
	pid=$!
	wait_up "$port" "$pid" "$d/log"
	get() {
		curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" \
		    "http://127.0.0.1:$port$PATH_A"
	}
	[ "$(get "$rs1")" = 200 ]
	[ "$(get "$ps1")" = 200 ]
	[ "$(get "$es1")" = 200 ]
	[ "$(get "$nokid")" = 200 ]
	[ "$(get "$rs2")" = 404 ]
	[ "$(get "$unknown")" = 404 ]
	[ "$(get "$crossed")" = 404 ]
	[ "$(get "$es384")" = 404 ]
	[ "$(get "$TOK_A")" = 404 ]
	kill -TERM "$pid"
	wait "$pid"
	# a JWKS that cannot work is a configuration error
	echo '{"keys":[]}' >"$d/empty"
	run -78 --separate-stderr env -u MI_JWT_SECRET MI_JWT_JWKS="$d/empty" mi-serve
	[[ $stderr == *"holds no RSA or P-256 signing key"* ]]
	$PY "$BATS_TEST_DIRNAME/lib/jwks.py" jwks x:"$d/e384.pem" >"$d/p384"
	run -78 --separate-stderr env -u MI_JWT_SECRET MI_JWT_JWKS="$d/p384" mi-serve
	[[ $stderr == *"nor a P-256 key"* ]]
	echo '{"keys":[{"kty":"RSA","n":"AQAB"' >"$d/broken"
	run -78 --separate-stderr env -u MI_JWT_SECRET MI_JWT_PUBLIC_KEY="$d/broken" mi-serve
	[[ $stderr == *"is not valid JSON"* ]]
}

@test "SIGHUP reloads the keys without dropping a connection; old keys stop working" {
	local port pid d="$BATS_TEST_TMPDIR" exp=$((NOW + 3600)) c line
	PY=/usr/bin/python3
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/r1.pem" 2>/dev/null
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/r2.pem" 2>/dev/null
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/e1.pem"
	$PY "$BATS_TEST_DIRNAME/lib/jwks.py" jwks r1:"$d/r1.pem" e1:"$d/e1.pem" >"$d/jwks.json"
	c="{\"org_id\":\"org_a\",\"exp\":$exp}"
	rs1=$($PY "$BATS_TEST_DIRNAME/lib/jwks.py" mint RS256 "$d/r1.pem" r1 "$c")
	rs2=$($PY "$BATS_TEST_DIRNAME/lib/jwks.py" mint PS256 "$d/r2.pem" r2 "$c")
	es1=$($PY "$BATS_TEST_DIRNAME/lib/jwks.py" mint ES256 "$d/e1.pem" e1 "$c")
	port=$(free_port)
	env -u MI_JWT_SECRET -u MI_JWT_JWKS MI_JWT_PUBLIC_KEY="$d/jwks.json" \
	    mi-serve -v --listen "127.0.0.1:$port" 2>"$d/log" 3>&- &
	pid=$!
	wait_up "$port" "$pid" "$d/log"
	get() {
		curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" \
		    "http://127.0.0.1:$port$PATH_A"
	}
	healthz() {
		printf 'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n' >&5
		while IFS= read -r -t 5 -u 5 line; do
			[[ $line == ok ]] && return 0
		done
		return 1
	}
	exec 5<>"/dev/tcp/127.0.0.1/$port"
	healthz
	[ "$(get "$rs1")" = 200 ]	# now remembered as verified
	[ "$(get "$rs2")" = 404 ]
	$PY "$BATS_TEST_DIRNAME/lib/jwks.py" jwks r2:"$d/r2.pem" e1:"$d/e1.pem" >"$d/jwks.new"
	mv "$d/jwks.new" "$d/jwks.json"
	kill -HUP "$pid"
	for i in $(seq 300); do
		grep -q "keys reloaded: 2 public keys" "$d/log" && break
		sleep 0.05
	done
	grep -q "keys reloaded: 2 public keys" "$d/log"
	healthz				# the same connection, still open
	[ "$(get "$rs2")" = 200 ]
	[ "$(get "$es1")" = 200 ]
	[ "$(get "$rs1")" = 404 ]	# rotated out, remembered or not
	# a broken file leaves the keys in force
	echo 'not a key' >"$d/jwks.json"
	kill -HUP "$pid"
	for i in $(seq 300); do
		grep -q "keys not reloaded" "$d/log" && break
		sleep 0.05
	done
	grep -q "keys not reloaded: '$d/jwks.json' holds no PEM public key" "$d/log"
	[ "$(get "$rs2")" = 200 ]
	healthz
	exec 5>&-
	kill -TERM "$pid"
	wait "$pid"
}
