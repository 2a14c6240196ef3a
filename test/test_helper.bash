# Common setup for every bats file: the binaries under test, a database of
# this file's own (a copy of the migrated template) and a store directory.

bats_require_minimum_version 1.5.0
bats_load_library bats-support
bats_load_library bats-assert

PATH="$MI_BIN_DIR:$PATH"
# The factor for wall-clock bounds (test/run.sh: 10 under valgrind).
: "${MI_TEST_SLOW:=1}"
PSQL=/usr/lib/postgresql/15/bin/psql

# Each file gets a fresh database cloned from mi_template.
mi_setup_db() {
	local name
	name="t_$(basename "$BATS_TEST_FILENAME" .bats | tr -c 'a-z0-9_\n' _)_$$"
	$PSQL -q -X "$MI_PG_BASE/postgres" \
	    -c "CREATE DATABASE \"$name\" TEMPLATE mi_template" >/dev/null
	export DATABASE_URL="$MI_PG_BASE/$name"
}

# sql 'SELECT ...': one value per line, no headers.
sql() {
	$PSQL -X -q -A -t -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "$1"
}

mi_setup_store() {
	export ASSET_STORAGE_DIR="$BATS_FILE_TMPDIR/store"
	mkdir -p "$ASSET_STORAGE_DIR"
}

# A fresh UUID without depending on uuidgen.
uuid() {
	cat /proc/sys/kernel/random/uuid
}

# Free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
