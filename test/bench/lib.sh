# What the benchmarks share: a working directory that goes away, a
# private PostgreSQL cluster with mi's schema, the fake provider server.
# Source it after setting `top` (the checkout); then:
#   bench_init NAME         $tmp, and a trap that stops what was started
#   bench_pg [fsync]        a cluster (fsync on unless "off"), database
#                           "bench" migrated; exports DATABASE_URL
#   bench_fake [options]    the fake provider; sets $url and $fakepid
#   bench_port              a free TCP port on 127.0.0.1
# $bin is the programs' directory ($MI_BIN_DIR, else $top/bin);
# MI_BENCH_KEEP=1 keeps the working directory.

. "$top/test/lib/pg.sh"
bin=${MI_BIN_DIR:-$top/bin}
bench_pids=

bench_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

bench_cleanup() {
	for _p in $bench_pids; do kill "$_p" 2>/dev/null || true; done
	[ -d "$tmp/pg" ] && pg_stop "$tmp/pg"
	if [ -n "${MI_BENCH_KEEP:-}" ]; then
		echo "kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}

bench_init() {
	tmp=$(mktemp -d "/tmp/mi-bench-$1.XXXXXX")
	chmod 755 "$tmp"
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_pg() {
	_port=$(bench_port)
	if [ "${1:-on}" = off ]; then
		PG_FSYNC=off pg_start "$tmp/pg" "$_port"
	else
		pg_start "$tmp/pg" "$_port"
	fi
	"$PGBIN/psql" -q -X "postgresql://postgres@127.0.0.1:$_port/postgres" \
	    -c "CREATE DATABASE bench" >/dev/null
	export DATABASE_URL="postgresql://postgres@127.0.0.1:$_port/bench"
	MI_MIGRATIONS_DIR=$top/migrations "$bin/mi-migrate" -q >/dev/null
}

bench_fake() {
	python3 "$top/test/fake/provider.py" --port 0 "$@" \
	    >"$tmp/fake.out" 2>"$tmp/fake.err" &
	fakepid=$!
	bench_pids="$bench_pids $fakepid"
	_i=0
	until grep -q '^ready ' "$tmp/fake.out" 2>/dev/null; do
		_i=$((_i + 1))
		[ $_i -lt 100 ] || { cat "$tmp/fake.err" >&2; exit 1; }
		sleep 0.1
	done
	url="http://127.0.0.1:$(awk '/^ready /{print $2}' "$tmp/fake.out")"
}
