#!/bin/sh
# make demo: start a private PostgreSQL and mi-serve, migrate, generate a
# whole campaign's media set offline with the built-in local providers,
# and print the URLs.  Everything lives under ./demo (MI_DEMO_DIR); the
# servers keep running so the URLs work: `make demo-stop` stops them.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/test/lib/pg.sh"

dir=${MI_DEMO_DIR:-$top/demo}
pgport=${MI_DEMO_PG_PORT:-55432}
port=${MI_DEMO_PORT:-8088}
export PATH="$top/bin:$PATH" MI_SHAREDIR="$top/share"
export MI_MIGRATIONS_DIR="$top/migrations"
mkdir -p "$dir"
chmod 755 "$dir"

if ! as_pg "$PGBIN/pg_ctl" -D "$dir/pg/data" status >/dev/null 2>&1; then
	echo "demo: starting PostgreSQL on 127.0.0.1:$pgport" >&2
	pg_start "$dir/pg" "$pgport"
fi
"$PGBIN/psql" -q -X "postgresql://postgres@127.0.0.1:$pgport/postgres" \
    -tAc "SELECT 1 FROM pg_database WHERE datname = 'mi'" | grep -q 1 ||
    "$PGBIN/psql" -q -X "postgresql://postgres@127.0.0.1:$pgport/postgres" \
    -c "CREATE DATABASE mi"
export DATABASE_URL="postgresql://postgres@127.0.0.1:$pgport/mi"
export ASSET_STORAGE_DIR="$dir/store"
mkdir -p "$ASSET_STORAGE_DIR"
export MI_PUBLIC_URL="http://127.0.0.1:$port"
[ -f "$dir/signing.key" ] ||
    (umask 077; openssl rand -hex 32 > "$dir/signing.key")
MI_URL_SIGNING_KEY=$(cat "$dir/signing.key")
export MI_URL_SIGNING_KEY
mi-migrate -q >/dev/null

if [ -x "$top/bin/mi-serve" ] &&
    ! curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
	echo "demo: starting mi-serve on 127.0.0.1:$port" >&2
	MI_CORS_ORIGINS='*' nohup mi-serve --listen "127.0.0.1:$port" \
	    --root "$ASSET_STORAGE_DIR" >"$dir/mi-serve.log" 2>&1 &
	echo $! > "$dir/mi-serve.pid"
	i=0
	until curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -lt 50 ] || { cat "$dir/mi-serve.log" >&2; exit 69; }
		sleep 0.1
	done
fi

sh "$top/examples/campaign.sh" "$dir"

# The viewer: a Three.js page with the run's model, HDRI, floor, music and
# sound effects, served from its own origin like a game would be.
vport=${MI_DEMO_VIEWER_PORT:-8089}
mkdir -p "$dir/viewer"
cp "$top/examples/viewer/index.html" "$top/examples/viewer/viewer.js" "$dir/viewer/"
if [ -d "$top/test/node_modules/three" ]; then
	ln -sfn "$top/test/node_modules/three" "$dir/viewer/three"
fi
jq -s 'map(select(.error == null) | {(.type): (.signed_url // .uri)}) | add' \
    "$dir/artifacts.ndjson" > "$dir/viewer/assets.json"
if ! curl -fsS "http://127.0.0.1:$vport/index.html" >/dev/null 2>&1; then
	(cd "$dir/viewer" && nohup python3 -m http.server "$vport" \
	    --bind 127.0.0.1 >"$dir/viewer.log" 2>&1 &
	    echo $! > "$dir/viewer.pid")
fi
echo "viewer: http://127.0.0.1:$vport/index.html"
sh "$top/examples/demo-bundle.sh" "$dir"
