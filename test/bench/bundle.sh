#!/bin/sh
# Benchmark: game bundles.  (1) mi-bundle's build time for the
# spin-the-wheel template plus a model, an HDRI, a texture, music and a
# sound (first build, then rebuilds that the store deduplicates), against
# python3 -m zipfile -c of the same files as a reference.  (2) mi-serve's
# req/s for a bundle entry against the same bytes served as a plain
# asset, wrk -t2 -c64 alternating plain / entry runs: a stored entry (the
# GLB, sent with sendfile from its offset in the zip) and a deflated one
# (game_config.json, inflated per request).  Prints each run, the ratio
# entry/plain of the summed req/s and the median of the per-round ratios.
# Needs a throwaway PostgreSQL (test/lib/pg.sh), like make check.
#
# usage: sh test/bench/bundle.sh [seconds-per-run [rounds]]   (default 4 5)
# Environment: MI_BIN_DIR (default bin/), WRK.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=${1:-4}
rounds=${2:-5}
: "${MI_BIN_DIR:=$top/bin}" "${WRK:=wrk}"
export PATH="$MI_BIN_DIR:$PATH" MI_SHAREDIR="$top/share"
export MI_MIGRATIONS_DIR="$top/migrations"
. "$top/test/lib/pg.sh"

tmp=$(mktemp -d /tmp/mi-bench.XXXXXX)
chmod 755 "$tmp"
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	pg_stop "$tmp/pg" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
b64url() {
	openssl base64 -A | tr '+/' '-_' | tr -d '='
}
ms() {
	date +%s%N | cut -c1-13
}
median() {
	sort -n | awk '{ r[NR] = $1 }
	    END { m = int((NR + 1) / 2); print NR % 2 ? r[m] : (r[m] + r[m + 1]) / 2 }'
}

pgport=$(port)
PG_FSYNC=off pg_start "$tmp/pg" "$pgport" >/dev/null
"$PGBIN/psql" -q -X "postgresql://postgres@127.0.0.1:$pgport/postgres" \
    -c "CREATE DATABASE bench" >/dev/null
export DATABASE_URL="postgresql://postgres@127.0.0.1:$pgport/bench"
export ASSET_STORAGE_DIR="$tmp/store"
mi-migrate -q >/dev/null

tenant=org_bench
run=7a2c9e4f-1b3d-4e5f-8a6b-9c0d1e2f3a4b
g="$tmp/gen"
mkdir -p "$g"
mi-generate -t model_3d -p 'prize wheel' -o "$g/wheel.glb" >/dev/null
mi-generate -t environment_map -p sky -P width=1024 -o "$g/sky.hdr" >/dev/null
mi-generate -t texture -p floor -P width=1024 -P height=1024 \
    -o "$g/floor.png" >/dev/null
mi-generate -t audio_bgm -p music -P duration_sec=30 -o "$g/music.wav" >/dev/null
mi-generate -t audio_sfx -p spin -P sfx_type=spin -P duration_sec=1 \
    -o "$g/spin.wav" >/dev/null
{
	mi-store -t $tenant -r $run -y model_3d "$g/wheel.glb"
	mi-store -t $tenant -r $run -y environment_map "$g/sky.hdr"
	mi-store -t $tenant -r $run -y texture "$g/floor.png"
	mi-store -t $tenant -r $run -y audio_bgm "$g/music.wav"
	mi-store -t $tenant -r $run -y audio_sfx "$g/spin.wav"
} >"$tmp/assets.ndjson"
sh "$top/examples/game/template.sh" "$tmp/game"

# (1) Build time.
t0=$(ms)
mi-bundle --template "$tmp/game" <"$tmp/assets.ndjson" >"$tmp/bundle.json"
first=$(($(ms) - t0))
: >"$tmp/builds"
for i in $(seq 5); do
	t0=$(ms)
	mi-bundle --template "$tmp/game" <"$tmp/assets.ndjson" >/dev/null
	echo $(($(ms) - t0)) >>"$tmp/builds"
done
zip=$ASSET_STORAGE_DIR/$(jq -r '.uri | sub(".*/api/assets/"; "")' "$tmp/bundle.json")
mkdir -p "$tmp/tree"
(cd "$tmp/tree" && unzip -q "$zip")
: >"$tmp/pybuilds"
for i in $(seq 5); do
	t0=$(ms)
	(cd "$tmp/tree" && python3 -m zipfile -c "$tmp/ref.zip" .)
	echo $(($(ms) - t0)) >>"$tmp/pybuilds"
	rm -f "$tmp/ref.zip"
done
b=$(median <"$tmp/builds")
p=$(median <"$tmp/pybuilds")
echo "bundle: $(jq -r .metadata.file_count "$tmp/bundle.json") files," \
    "$(jq -r .size_bytes "$tmp/bundle.json") bytes"
echo "mi-bundle first build ${first} ms, rebuild median ${b} ms;" \
    "python3 -m zipfile -c median ${p} ms; ratio $(awk -v a="$b" -v b="$p" \
    'BEGIN { printf "%.2f", a / b }')"

# (2) Serving: the same bytes as an entry and as a plain asset.
mi-store -t $tenant -r $run -y json "$tmp/game/game_config.json" \
    >"$tmp/config.json"
MI_JWT_SECRET=$(openssl rand -hex 32)
export MI_JWT_SECRET
hdr=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
pay=$(printf '{"sub":"user_1","org_id":"%s","exp":%d}' "$tenant" \
    $(($(date +%s) + 3600)) | b64url)
sig=$(printf '%s.%s' "$hdr" "$pay" |
    openssl dgst -sha256 -hmac "$MI_JWT_SECRET" -binary | b64url)
auth="Authorization: Bearer $hdr.$pay.$sig"
mp=$(port)
mi-serve --listen "127.0.0.1:$mp" &
pid=$!
for i in $(seq 50); do
	curl -fs -o /dev/null "http://127.0.0.1:$mp/healthz" && break
	sleep 0.1
done
base="http://127.0.0.1:$mp"
bundle=$(jq -r .uri "$tmp/bundle.json")
glb=$(jq -r .uri "$tmp/assets.ndjson" | grep /model_3d/)
cfg=$(jq -r .uri "$tmp/config.json")

run() {
	name=$1
	shift
	r=$("$WRK" -t2 -c64 -d"${secs}s" -H "$auth" "$@" |
	    awk '/^Requests\/sec:/ { print $2 }')
	printf '%-12s %-6s %12s\n' "$what" "$name" "$r"
	echo "$r" >>"$tmp/res.$name"
}

printf '%-12s %-6s %12s\n' file form req/s
for what in glb-stored json-deflated; do
	case $what in
	glb-*) plain=$glb entry=$bundle/assets/models/wheel.glb ;;
	*) plain=$cfg entry=$bundle/game_config.json ;;
	esac
	a=$(curl -fs -H "$auth" "$base$plain" | openssl dgst -sha256 -r)
	e=$(curl -fs -H "$auth" "$base$entry" | openssl dgst -sha256 -r)
	[ "$a" = "$e" ] || { echo "bench: $what differs" >&2; exit 1; }
	rm -f "$tmp/res.plain" "$tmp/res.entry"
	"$WRK" -t2 -c64 -d1s -H "$auth" "$base$plain" >/dev/null
	"$WRK" -t2 -c64 -d1s -H "$auth" "$base$entry" >/dev/null
	n=0
	while [ $n -lt "$rounds" ]; do
		run plain "$base$plain"
		run entry "$base$entry"
		n=$((n + 1))
	done
	med=$(paste "$tmp/res.plain" "$tmp/res.entry" |
	    awk '{ printf "%.4f\n", $2 / $1 }' | median)
	paste "$tmp/res.plain" "$tmp/res.entry" | awk -v w="$what" -v med="$med" '
	    { p += $1; e += $2 }
	    END { printf "%-12s ratio entry/plain %.2f (median of rounds %.2f)\n",
		w, e / p, med }'
done
