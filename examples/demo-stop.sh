#!/bin/sh
# Stops the servers that examples/demo.sh (make demo) started: mi-serve,
# the viewer and the demo's PostgreSQL.  Says what it stopped; exits 0
# when it stopped something, 1 when nothing of the demo was running.
#   sh examples/demo-stop.sh
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/test/lib/pg.sh"
dir=${MI_DEMO_DIR:-$top/demo}
stopped=0
say() { printf 'demo-stop: %s\n' "$*" >&2; }

# stop WHAT PIDFILE PATTERN: stops the process PIDFILE names when it still
# runs PATTERN (the pid may since belong to something else).
stop() {
	pid=$(cat "$2" 2>/dev/null) || return 0
	if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$3" &&
	    kill "$pid" 2>/dev/null; then
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		say "stopped $1 (pid $pid$(sed 's/^/, 127.0.0.1:/' "$dir/$4.port" 2>/dev/null))"
		stopped=$((stopped + 1))
	fi
	rm -f "$2"
}

stop mi-serve "$dir/mi-serve.pid" mi-serve mi-serve
stop "the viewer" "$dir/viewer.pid" http.server viewer
pgdir=${MI_DEMO_PG_DIR:-$(readlink -f "$dir/pg" 2>/dev/null)}
if [ -n "$pgdir" ] && pg_running "$pgdir"; then
	port=$(pg_port "$pgdir")
	pg_stop "$pgdir"
	say "stopped PostgreSQL (127.0.0.1:$port, cluster in $pgdir)"
	stopped=$((stopped + 1))
fi
if [ "$stopped" -eq 0 ]; then
	say "nothing was running (the demo in $dir)"
	exit 1
fi
exit 0
