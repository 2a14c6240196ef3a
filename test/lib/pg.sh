# Private PostgreSQL clusters for tests and the demo.
# PostgreSQL refuses to run as root: when root, the server runs as the
# 'postgres' user the Debian package creates, in directories it owns.  That
# user must be able to reach the cluster's directory: a directory under
# /root (mode 0700) never works, so clusters live under /tmp or /var/tmp
# (pg_home), never where a clone happens to be.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

# as_pg CMD...: run CMD as the cluster's owner.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# pg_owner: the user the clusters run as.
pg_owner() {
	if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

# pg_blocker DIR: the first directory on DIR's path that the cluster's
# owner cannot enter (empty when there is none).
pg_blocker() {
	_b=
	_rest=${1#/}
	while [ -n "$_rest" ]; do
		_b="$_b/${_rest%%/*}"
		case $_rest in */*) _rest=${_rest#*/} ;; *) _rest= ;; esac
		[ -d "$_b" ] || break
		as_pg test -x "$_b" || { echo "$_b"; return 0; }
	done
}

# pg_reach DIR: succeeds when the cluster's owner can enter and write DIR;
# otherwise says which directory is in the way.
pg_reach() {
	as_pg test -x "$1" -a -w "$1" 2>/dev/null && return 0
	_b=$(pg_blocker "$1")
	if [ -n "$_b" ]; then
		echo "pg: the $(pg_owner) user cannot enter $_b" \
		    "($(stat -c '%A, owner %U' "$_b")), so it cannot reach $1." \
		    "PostgreSQL runs as $(pg_owner) here; keep the cluster in a" \
		    "directory it can reach, such as one under /var/tmp or /tmp" >&2
	else
		echo "pg: the $(pg_owner) user cannot write $1" \
		    "($(stat -c '%A, owner %U' "$1"))" >&2
	fi
	return 1
}

# pg_home NAME: a directory for a cluster, /var/tmp/NAME.UID, that only
# the cluster's owner may write; made when missing.  Refuses one that is a
# symbolic link or belongs to someone else.
pg_home() {
	_h=/var/tmp/$1.$(id -u)
	if [ -e "$_h" ] || [ -L "$_h" ]; then
		if [ -L "$_h" ] || [ ! -d "$_h" ] ||
		    [ "$(stat -c %U "$_h")" != "$(pg_owner)" ]; then
			echo "pg: $_h exists and is not a directory of $(pg_owner);" \
			    "remove it or choose another place" >&2
			return 1
		fi
	else
		mkdir -m 700 "$_h" || return 1
		if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$_h"; fi
	fi
	echo "$_h"
}

# pg_start DIR PORT: create (if needed) and start a cluster in DIR with its
# socket in DIR/sock, listening on 127.0.0.1:PORT.
pg_start() {
	_d=$1 _p=$2
	mkdir -p "$_d"
	if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$_d"; fi
	pg_reach "$_d" || return 1
	if [ ! -f "$_d/data/PG_VERSION" ]; then
		as_pg mkdir -p "$_d/data" "$_d/sock"
		as_pg "$PGBIN/initdb" -D "$_d/data" -U postgres --auth=trust \
		    -E UTF8 --no-locale >"$_d/initdb.log" 2>&1 ||
		    { cat "$_d/initdb.log" >&2; return 1; }
	fi
	as_pg "$PGBIN/pg_ctl" -D "$_d/data" -l "$_d/server.log" -w -t 60 \
	    -o "-p $_p -k $_d/sock -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-on} -c max_connections=300 ${PG_EXTRA_OPTS:-}" \
	    start >/dev/null || { cat "$_d/server.log" >&2; return 1; }
}

# pg_running DIR: succeeds when DIR's cluster runs.
pg_running() {
	[ -f "$1/data/postmaster.pid" ] &&
	    as_pg "$PGBIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1
}

# pg_port DIR: the port DIR's running cluster listens on.
pg_port() {
	sed -n 4p "$1/data/postmaster.pid" 2>/dev/null
}

# pg_stop DIR
pg_stop() {
	as_pg "$PGBIN/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}

# pg_url DIR PORT DB
pg_url() {
	echo "postgresql://postgres@127.0.0.1:$2/$3"
}
