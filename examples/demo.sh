#!/bin/sh
# The demo (make demo): installs what is missing and builds, starts a
# private PostgreSQL and mi-serve, migrates, generates a whole campaign's
# media set offline with the built-in local providers, starts the viewer
# and prints the URLs.  Plain POSIX sh: it runs on a bare Debian 12 before
# make is installed.  The servers keep running so that the URLs work;
# examples/demo-stop.sh (make demo-stop) stops them.
#
# Its files are under ./demo (MI_DEMO_DIR).  Its PostgreSQL cluster is
# under /var/tmp/mi-demo.UID/ (MI_DEMO_PG_DIR), linked as demo/pg: the
# postgres user the server runs as cannot enter a clone under /root.
#
# Ports: mi-serve 8088 (MI_DEMO_PORT), the viewer 8089
# (MI_DEMO_VIEWER_PORT), PostgreSQL 55432 (MI_DEMO_PG_PORT); a second run
# uses those of the first.  A server already answering on a port is reused
# only when it proves to be this demo's own: it serves the demo's token
# (demo/token.json).  Otherwise the demo takes the next free port, or, for
# a port set in the environment, says what is in the way and exits 69.
#   sh examples/demo.sh
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/test/lib/pg.sh"

dir=${MI_DEMO_DIR:-$top/demo}
export PATH="$top/bin:$PATH" MI_SHAREDIR="$top/share"
export MI_MIGRATIONS_DIR="$top/migrations"
# Where the token lives in the store: tenant _demo, a fixed run, type check.
check_run=d3e40000-0000-4000-8000-000000000000

say() { printf 'demo: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 69
}

# --- ports ---------------------------------------------------------------

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() {
	python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

# next_free PORT: the first free port after PORT that no step of the demo
# wants by default or took already.
next_free() {
	# shellcheck disable=SC2086
	python3 -c 'import socket, sys
skip = set(map(int, sys.argv[2:]))
for p in range(int(sys.argv[1]) + 1, 65536):
    if p in skip:
        continue
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break' "$1" 8088 8089 55432 $taken
}

# port_user PORT: what listens on 127.0.0.1:PORT, as far as can be told.
port_user() {
	_u=$(ss -Hltnp "sport = :$1" 2>/dev/null |
	    sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\),.*/\1 (pid \2)/p' | head -n 1)
	_s=$(curl -sI --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null |
	    tr -d '\r' | sed -n 's/^[Ss]erver: *//p' | head -n 1)
	echo "${_u:-another program}${_s:+, an HTTP server that says \"Server: $_s\"}"
}

# pick_port WHAT VAR DEFAULT IS_OURS: sets $port to the port for WHAT and
# $ours to 1 when this demo's own WHAT answers there already.  The port is
# $VAR when set, else the one of the last run (demo/WHAT.port), else
# DEFAULT.
taken=
pick_port() {
	_what=$1 _var=$2 _file=$dir/$1.port
	eval "_set=\${$_var:-}"
	_want=${_set:-$(cat "$_file" 2>/dev/null || echo "$3")}
	ours=
	if "$4" "$_want"; then
		port=$_want ours=1
	elif port_free "$_want"; then
		port=$_want
	elif [ -n "$_set" ]; then
		die "127.0.0.1:$_want ($_var) is in use by $(port_user "$_want")," \
		    "not by this demo's $_what: stop that, or set $_var to a free port"
	else
		port=$(next_free "$_want")
		[ -n "$port" ] || die "no free port for $_what"
		say "127.0.0.1:$_want is in use by $(port_user "$_want")," \
		    "not by this demo's $_what; $_what takes 127.0.0.1:$port"
	fi
	taken="$taken $port"
	echo "$port" >"$_file"
}

# stop_pidfile FILE NAME: stops the process FILE names when it still runs
# NAME (a process of an earlier run that is no longer wanted).
stop_pidfile() {
	_pid=$(cat "$1" 2>/dev/null) || return 0
	if tr '\0' ' ' 2>/dev/null <"/proc/$_pid/cmdline" | grep -q -- "$2"; then
		kill "$_pid" 2>/dev/null || true
		while kill -0 "$_pid" 2>/dev/null; do sleep 0.1; done
	fi
	rm -f "$1"
}

# wait_for WHAT LOG CHECK ARGS...: waits up to 10 s for CHECK ARGS.
wait_for() {
	_what=$1 _log=$2
	shift 2
	_i=0
	until "$@"; do
		_i=$((_i + 1))
		[ $_i -lt 100 ] || { cat "$_log" >&2; die "$_what did not start"; }
		sleep 0.1
	done
}

# --- steps ---------------------------------------------------------------

# Debian packages and npm modules (quiet when present), then the programs.
setup() {
	sh "$top/test/deps.sh" || exit
	make -C "$top" -s --no-print-directory -j"$(nproc)" all
}

# The demo's directory, its signing key and its token.
prepare() {
	mkdir -p "$dir"
	chmod 755 "$dir"
	[ -f "$dir/signing.key" ] ||
	    (umask 077 && openssl rand -hex 32 >"$dir/signing.key")
	MI_URL_SIGNING_KEY=$(cat "$dir/signing.key")
	[ -f "$dir/token.json" ] ||
	    printf '{"mi_demo":"%s"}\n' "$(openssl rand -hex 16)" >"$dir/token.json"
	export MI_URL_SIGNING_KEY ASSET_STORAGE_DIR="$dir/store"
	mkdir -p "$ASSET_STORAGE_DIR"
}

pg_ours() { pg_running "$pgdir" && [ "$(pg_port "$pgdir")" = "$1" ]; }

# A private PostgreSQL cluster and the database mi, migrated.
start_postgres() {
	if [ -n "${MI_DEMO_PG_DIR:-}" ]; then
		pgdir=$MI_DEMO_PG_DIR
	elif [ -d "$dir/pg" ] && [ ! -L "$dir/pg" ]; then
		pgdir=$dir/pg # made by an earlier version of the demo
	else
		pgdir=$(pg_home mi-demo) || exit 69
		pgdir=$pgdir/$(printf %s "$dir" | cksum | cut -d' ' -f1)
		ln -sfn "$pgdir" "$dir/pg"
	fi
	if pg_running "$pgdir" && [ -z "${MI_DEMO_PG_PORT:-}" ]; then
		pg_port "$pgdir" >"$dir/postgres.port"
	fi
	pick_port postgres MI_DEMO_PG_PORT 55432 pg_ours
	pgport=$port
	if [ -z "$ours" ]; then
		pg_running "$pgdir" && die "this demo's PostgreSQL runs on" \
		    "127.0.0.1:$(pg_port "$pgdir"), not on $pgport: stop it first" \
		    "(sh examples/demo-stop.sh)"
		say "starting PostgreSQL on 127.0.0.1:$pgport (cluster in $pgdir)"
		pg_start "$pgdir" "$pgport" ||
		    die "PostgreSQL did not start (cluster in $pgdir)"
	fi
	_base="postgresql://postgres@127.0.0.1:$pgport"
	"$PGBIN/psql" -q -X "$_base/postgres" \
	    -tAc "SELECT 1 FROM pg_database WHERE datname = 'mi'" | grep -q 1 ||
	    "$PGBIN/psql" -q -X "$_base/postgres" -c "CREATE DATABASE mi"
	export DATABASE_URL="$_base/mi"
	mi-migrate -q >/dev/null
}

# serve_ours PORT: the mi-serve on PORT serves this demo's store with its
# signing key: it answers the token, stored under _demo, by signed URL.
serve_ours() {
	_h=$(sha256sum "$dir/token.json" | cut -c1-64)
	_f=$ASSET_STORAGE_DIR/_demo/$check_run/check/$_h.json
	[ -f "$_f" ] || { mkdir -p "${_f%/*}" && cp "$dir/token.json" "$_f"; }
	_url=$(env -u MI_PUBLIC_URL mi-serve --sign "/api/assets/_demo/$check_run/check/$_h.json" --ttl 60) &&
	    curl -fsS --max-time 3 "http://127.0.0.1:$1$_url" 2>/dev/null |
	    cmp -s - "$dir/token.json"
}

# mi-serve for the store, signed URLs only.
start_serve() {
	pick_port mi-serve MI_DEMO_PORT 8088 serve_ours
	serve_port=$port
	export MI_PUBLIC_URL="http://127.0.0.1:$serve_port"
	[ -z "$ours" ] || return 0
	stop_pidfile "$dir/mi-serve.pid" mi-serve
	say "starting mi-serve on 127.0.0.1:$serve_port"
	MI_CORS_ORIGINS='*' nohup mi-serve --listen "127.0.0.1:$serve_port" \
	    --root "$ASSET_STORAGE_DIR" >"$dir/mi-serve.log" 2>&1 &
	echo $! >"$dir/mi-serve.pid"
	wait_for mi-serve "$dir/mi-serve.log" serve_ours "$serve_port"
}

# The campaign, through the real pipeline; prints the cost and the URLs.
campaign() {
	sh "$top/examples/campaign.sh" "$dir"
}

viewer_ours() {
	curl -fsS --max-time 3 "http://127.0.0.1:$1/demo-token.json" 2>/dev/null |
	    cmp -s - "$dir/token.json"
}

# The viewer: a Three.js page with the run's model, HDRI, floor, music and
# sound effects, served from its own origin like a game would be.
start_viewer() {
	mkdir -p "$dir/viewer"
	cp "$top/examples/viewer/index.html" "$top/examples/viewer/viewer.js" \
	    "$dir/viewer/"
	cp "$dir/token.json" "$dir/viewer/demo-token.json"
	if [ -d "$top/test/node_modules/three" ]; then
		ln -sfn "$top/test/node_modules/three" "$dir/viewer/three"
	fi
	jq -s 'map(select(.error == null) | {(.type): (.signed_url // .uri)}) | add' \
	    "$dir/artifacts.ndjson" >"$dir/viewer/assets.json"
	pick_port viewer MI_DEMO_VIEWER_PORT 8089 viewer_ours
	viewer_port=$port
	if [ -z "$ours" ]; then
		stop_pidfile "$dir/viewer.pid" http.server
		(cd "$dir/viewer" && exec nohup python3 -m http.server \
		    "$viewer_port" --bind 127.0.0.1 >"$dir/viewer.log" 2>&1) &
		echo $! >"$dir/viewer.pid"
		wait_for viewer "$dir/viewer.log" viewer_ours "$viewer_port"
	fi
	echo "viewer: http://127.0.0.1:$viewer_port/index.html"
}

setup
prepare
start_postgres
start_serve
campaign
start_viewer
sh "$top/examples/demo-bundle.sh" "$dir"
say "the servers keep running; stop them with: sh examples/demo-stop.sh (make demo-stop)"
