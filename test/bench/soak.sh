#!/bin/sh
# Soak: mi-serve under wrk -t2 -c128 for SECONDS (default 60) on a 4 KiB
# asset with a Bearer JWT on every request, while hostile clients run in
# parallel for the same time: bad tokens pipelined (headers a JSON parser
# chokes on), malformed and hostile requests each on its own connection,
# and bursts of idle connections.  Prints the requests wrk made, its
# errors (socket errors and answers other than 2xx/3xx), the hostile
# requests answered, and mi-serve's RSS before, at the end and after 5 s
# of rest.  Exits 1 when wrk saw an error or mi-serve died.
#
# usage: sh test/bench/soak.sh [seconds]
# Environment: MI_SERVE (the binary, default bin/mi-serve), WRK.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=${1:-60}
: "${MI_SERVE:=$top/bin/mi-serve}" "${WRK:=wrk}"
hostile="python3 $top/test/lib/serve_hostile.py"

tmp=$(mktemp -d /tmp/mi-soak.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

b64url() {
	openssl base64 -A | tr '+/' '-_' | tr -d '='
}
rss() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"
}

tenant=org_soak
run=6f1c8d2e-4b7a-4c1e-9a53-0d2f6b8e7c10
root="$tmp/store"
mkdir -p "$root/$tenant/$run/model_3d"
head -c 4096 /dev/urandom >"$tmp/f"
h=$(openssl dgst -sha256 -r "$tmp/f" | cut -d' ' -f1)
mv "$tmp/f" "$root/$tenant/$run/model_3d/$h.glb"
path=/api/assets/$tenant/$run/model_3d/$h.glb

MI_JWT_SECRET=$(openssl rand -hex 32)
export MI_JWT_SECRET
hdr=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
pay=$(printf '{"org_id":"%s","exp":%d}' "$tenant" \
    $(($(date +%s) + 3600 + secs)) | b64url)
sig=$(printf '%s.%s' "$hdr" "$pay" |
    openssl dgst -sha256 -hmac "$MI_JWT_SECRET" -binary | b64url)
token="$hdr.$pay.$sig"
bad1="$(printf '{"a""%s"}' "$(head -c 11000 /dev/zero | tr '\0' x)" | b64url).e30.AAAA"
bad2="$(printf '{"a""x"}' | b64url).e30.AAAA"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$MI_SERVE" --listen "127.0.0.1:$port" --root "$root" 2>"$tmp/log" &
pid=$!
for i in $(seq 50); do
	curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break
	sleep 0.1
done
url="http://127.0.0.1:$port$path"
curl -fs -H "Authorization: Bearer $token" -o /dev/null "$url"
"$WRK" -t2 -c128 -d2s -H "Authorization: Bearer $token" "$url" >/dev/null
$hostile pipeline "$port" 500 "$path" "$bad1" "$bad2" >/dev/null
rss0=$(rss)

# The hostile side: rounds until the time is up, each bounded.
end=$(($(date +%s) + secs))
(
	n=0
	while [ "$(date +%s)" -lt "$end" ]; do
		a=$($hostile pipeline "$port" 2000 "$path" "$bad1" "$bad2")
		b=$($hostile junk "$port" 200 "$path")
		$hostile idle "$port" 200 0.5 >/dev/null
		n=$((n + a + b))
	done
	echo "$n" >"$tmp/hostile"
) &
hpid=$!
"$WRK" -t2 -c128 -d"${secs}s" -H "Authorization: Bearer $token" "$url" \
    >"$tmp/wrk"
wait "$hpid"
rss1=$(rss)
sleep 5
rss2=$(rss)
kill -0 "$pid"

reqs=$(awk '/requests in/ { print $1 }' "$tmp/wrk")
serr=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' \
    "$tmp/wrk")
non2xx=$(awk '/Non-2xx/ { print $5 }' "$tmp/wrk")
errors=$((${serr:-0} + ${non2xx:-0}))
printf 'soak %ss: %s requests (%s/s), %d errors; %s hostile requests answered\n' \
    "$secs" "$reqs" "$(awk '/^Requests\/sec/ { print $2 }' "$tmp/wrk")" \
    "$errors" "$(cat "$tmp/hostile")"
printf 'mi-serve RSS: %s kB before, %s kB at the end, %s kB after 5 s\n' \
    "$rss0" "$rss1" "$rss2"
[ "$errors" -eq 0 ]
