# Private PostgreSQL clusters for tests and the demo.
# PostgreSQL refuses to run as root: when root, the server runs as the
# 'postgres' user the Debian package creates, in directories it owns.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

# as_pg CMD...: run CMD as the cluster's owner.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# pg_start DIR PORT: create (if needed) and start a cluster in DIR with its
# socket in DIR/sock, listening on 127.0.0.1:PORT.
pg_start() {
	_d=$1 _p=$2
	mkdir -p "$_d"
	if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$_d"; fi
	if [ ! -f "$_d/data/PG_VERSION" ]; then
		as_pg mkdir -p "$_d/data" "$_d/sock"
		as_pg "$PGBIN/initdb" -D "$_d/data" -U postgres --auth=trust \
		    -E UTF8 --no-locale >"$_d/initdb.log" 2>&1 ||
		    { cat "$_d/initdb.log" >&2; return 1; }
	fi
	as_pg "$PGBIN/pg_ctl" -D "$_d/data" -l "$_d/server.log" -w -t 60 \
	    -o "-p $_p -k $_d/sock -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-on} -c max_connections=300" \
	    start >/dev/null || { cat "$_d/server.log" >&2; return 1; }
}

# pg_stop DIR
pg_stop() {
	as_pg "$PGBIN/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}

# pg_url DIR PORT DB
pg_url() {
	echo "postgresql://postgres@127.0.0.1:$2/$3"
}
