#!/bin/sh
# Benchmark: mi-serve against nginx on the same files (4 KiB, 256 KiB,
# 16 MiB) over loopback, with wrk -t2 -c64, alternating nginx / mi-serve
# runs.  Prints req/s and server CPU microseconds per request for each
# run, and per size the ratio mi-serve/nginx of the summed req/s, the
# median of the per-round ratios and the ratio of CPU per request.
# mi-serve runs with authentication on (a Bearer JWT on every request).
#
# usage: sh test/bench/serve.sh [seconds-per-run [rounds]]   (default 4 5)
# SIZES="4K 256K" limits the sizes.
# Environment: MI_SERVE (the binary, default bin/mi-serve), NGINX, WRK.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=${1:-4}
rounds=${2:-5}
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

# CPU time (clock ticks) of a set of processes, all threads.
ticks() {
	for p in "$@"; do
		cat /proc/"$p"/task/*/stat 2>/dev/null
	done | awk '{ t += $14 + $15 } END { print t + 0 }'
}

# run NAME PIDS WRK-ARGS...: one measured run; prints req/s and CPU
# microseconds per request, and appends "req/s us" to $tmp/res.NAME.
run() {
	name=$1 who=$2
	shift 2
	t0=$(ticks $who)
	r=$("$WRK" -t2 -c64 -d"${secs}s" "$@" |
	    awk '/^Requests\/sec:/ { print $2 }')
	t1=$(ticks $who)
	us=$(awk -v r="$r" -v t=$((t1 - t0)) -v s="$secs" -v hz="$hz" \
	    'BEGIN { printf "%.1f", t * 1e6 / hz / (r * s) }')
	printf '%-6s %-9s %12s %10s\n' "$size" "$name" "$r" "$us"
	echo "$r $us" >>"$tmp/res.$name"
}

hz=$(getconf CLK_TCK)
ngx=$(pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' ')
mi=$(echo $pids)
printf '%-6s %-9s %12s %10s\n' size server req/s cpu-us/req
for size in ${SIZES:-4K 256K 16M}; do
	eval "u=\$file_$size"
	rm -f "$tmp/res.nginx" "$tmp/res.mi-serve"
	# Warm both up (page cache, connections) before measuring.
	"$WRK" -t2 -c64 -d1s "http://127.0.0.1:$np$u" >/dev/null
	"$WRK" -t2 -c64 -d1s -H "Authorization: Bearer $token" \
	    "http://127.0.0.1:$mp$u" >/dev/null
	n=0
	while [ $n -lt "$rounds" ]; do
		run nginx "$ngx" "http://127.0.0.1:$np$u"
		run mi-serve "$mi" -H "Authorization: Bearer $token" \
		    "http://127.0.0.1:$mp$u"
		n=$((n + 1))
	done
	# Ratio of the summed req/s, the median of the per-round ratios
	# (steadier when the machine is shared), and of CPU per request.
	med=$(paste "$tmp/res.nginx" "$tmp/res.mi-serve" |
	    awk '{ printf "%.4f\n", $3 / $1 }' | sort -n |
	    awk '{ r[NR] = $1 }
		END { m = int((NR + 1) / 2); print NR % 2 ? r[m] : (r[m] + r[m + 1]) / 2 }')
	paste "$tmp/res.nginx" "$tmp/res.mi-serve" | awk -v size="$size" -v med="$med" '
	    { na += $1; ma += $3; nc += $2; mc += $4 }
	    END {
		printf "%-6s ratio mi-serve/nginx %.2f (median of rounds %.2f;" \
		    " CPU per request %.2f)\n", size, ma / na, med, mc / nc
	    }'
done
