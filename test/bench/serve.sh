#!/bin/sh
# Benchmark: mi-serve against nginx on the same files (4 KiB, 256 KiB,
# 16 MiB) over loopback, with wrk -t2 -c64, alternating nginx / mi-serve
# runs.  Prints req/s per run and the ratio mi-serve/nginx per size.
# mi-serve runs with authentication on (a Bearer JWT on every request).
#
# usage: sh test/bench/serve.sh [seconds-per-run] [rounds]
# Environment: MI_SERVE (the binary, default bin/mi-serve), NGINX, WRK.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=${1:-5}
rounds=${2:-2}
: "${MI_SERVE:=$top/bin/mi-serve}" "${NGINX:=/usr/sbin/nginx}" "${WRK:=wrk}"

tmp=$(mktemp -d /tmp/mi-bench.XXXXXX)
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	[ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null
	sleep 0.2
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
b64url() {
	openssl base64 -A | tr '+/' '-_' | tr -d '='
}

# The files: the store layout, named by their hashes.
tenant=org_bench
run=6f1c8d2e-4b7a-4c1e-9a53-0d2f6b8e7c10
root="$tmp/store"
mkdir -p "$root/$tenant/$run/model_3d"
for spec in 4K:4 256K:256 16M:16384; do
	name=${spec%%:*}
	kib=${spec#*:}
	head -c $((kib * 1024)) /dev/urandom > "$tmp/f"
	h=$(openssl dgst -sha256 -r "$tmp/f" | cut -d' ' -f1)
	mv "$tmp/f" "$root/$tenant/$run/model_3d/$h.glb"
	eval "file_$name=/api/assets/$tenant/$run/model_3d/$h.glb"
done

# nginx: sendfile on, 2 workers, no access log, tcp_nopush off (its faster
# setting on loopback), long keep-alive, the same security headers.
np=$(port)
mkdir -p "$tmp/nginx"
cat > "$tmp/nginx.conf" <<CONF
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/nginx/error.log;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush off;
	keepalive_requests 1000000;
	client_body_temp_path $tmp/nginx;
	proxy_temp_path $tmp/nginx;
	fastcgi_temp_path $tmp/nginx;
	uwsgi_temp_path $tmp/nginx;
	scgi_temp_path $tmp/nginx;
	types { model/gltf-binary glb; }
	server {
		listen 127.0.0.1:$np;
		location /api/assets/ {
			alias $root/;
			add_header Cache-Control "private, max-age=31536000, immutable";
			add_header Cross-Origin-Resource-Policy cross-origin;
			add_header X-Content-Type-Options nosniff;
		}
	}
}
CONF
"$NGINX" -c "$tmp/nginx.conf" -e "$tmp/nginx/error.log" -g 'daemon on; user root;'

# mi-serve with an HS256 key; wrk sends the same token every time.
mp=$(port)
MI_JWT_SECRET=$(openssl rand -hex 32)
export MI_JWT_SECRET
hdr=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
pay=$(printf '{"sub":"user_1","org_id":"%s","exp":%d}' "$tenant" \
    $(($(date +%s) + 3600)) | b64url)
sig=$(printf '%s.%s' "$hdr" "$pay" |
    openssl dgst -sha256 -hmac "$MI_JWT_SECRET" -binary | b64url)
token="$hdr.$pay.$sig"
"$MI_SERVE" --listen "127.0.0.1:$mp" --root "$root" &
pids="$pids $!"

for i in $(seq 50); do
	curl -fs -o /dev/null "http://127.0.0.1:$mp/healthz" &&
	    curl -fs -o /dev/null "http://127.0.0.1:$np$file_4K" && break
	sleep 0.1
done
# Both must serve the same bytes before they are compared.
for name in ${SIZES:-4K 256K 16M}; do
	eval "u=\$file_$name"
	a=$(curl -fs "http://127.0.0.1:$np$u" | openssl dgst -sha256 -r)
	b=$(curl -fs -H "Authorization: Bearer $token" \
	    "http://127.0.0.1:$mp$u" | openssl dgst -sha256 -r)
	[ "$a" = "$b" ] || { echo "bench: $name differs" >&2; exit 1; }
done

rps() {
	"$WRK" -t2 -c64 -d"${secs}s" "$@" | awk '/^Requests\/sec:/ { print $2 }'
}

printf '%-6s %-9s %12s\n' size server req/s
for name in ${SIZES:-4K 256K 16M}; do
	eval "u=\$file_$name"
	n=0 ntot=0 mtot=0
	# Warm both up (page cache, connections) before measuring.
	"$WRK" -t2 -c64 -d1s "http://127.0.0.1:$np$u" >/dev/null
	"$WRK" -t2 -c64 -d1s -H "Authorization: Bearer $token" \
	    "http://127.0.0.1:$mp$u" >/dev/null
	while [ $n -lt "$rounds" ]; do
		a=$(rps "http://127.0.0.1:$np$u")
		printf '%-6s %-9s %12s\n' "$name" nginx "$a"
		b=$(rps -H "Authorization: Bearer $token" "http://127.0.0.1:$mp$u")
		printf '%-6s %-9s %12s\n' "$name" mi-serve "$b"
		ntot=$(awk "BEGIN { print $ntot + $a }")
		mtot=$(awk "BEGIN { print $mtot + $b }")
		n=$((n + 1))
	done
	awk "BEGIN { printf \"%-6s ratio mi-serve/nginx %.2f\\n\", \"$name\", $mtot / $ntot }"
done
