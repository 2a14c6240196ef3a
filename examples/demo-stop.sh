#!/bin/sh
# Stops the servers that `make demo` started.
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/test/lib/pg.sh"
dir=${MI_DEMO_DIR:-$top/demo}
if [ -f "$dir/mi-serve.pid" ]; then
	kill "$(cat "$dir/mi-serve.pid")" 2>/dev/null
	rm -f "$dir/mi-serve.pid"
fi
if [ -f "$dir/viewer.pid" ]; then
	kill "$(cat "$dir/viewer.pid")" 2>/dev/null
	rm -f "$dir/viewer.pid"
fi
pg_stop "$dir/pg"
