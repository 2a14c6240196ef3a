#!/bin/sh
# Benchmark (not a test): median wall time of mi-store on a 1 GiB file
# against `openssl dgst -sha256` of the same file (hashing alone, SHA-NI),
# alternating the two in one run, and the ratio between them.
#   test/bench/store.sh [SIZE_MIB [ROUNDS]]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
top=$(dirname "$here")
. "$here/lib/pg.sh"
size=${1:-1024} rounds=${2:-5}
bin=${MI_BIN_DIR:-$top/bin}

tmp=$(mktemp -d /tmp/mi-bench.XXXXXX)
chmod 755 "$tmp"
port=$((30000 + $$ % 20000))
trap 'pg_stop "$tmp/pg"; rm -rf "$tmp"' EXIT INT TERM
pg_start "$tmp/pg" "$port"
"$PGBIN/psql" -q -X "postgresql://postgres@127.0.0.1:$port/postgres" -c "CREATE DATABASE bench"
export DATABASE_URL="postgresql://postgres@127.0.0.1:$port/bench"
export ASSET_STORAGE_DIR="$tmp/store" MI_MIGRATIONS_DIR="$top/migrations"
"$bin/mi-migrate" -q >/dev/null

# A WAV header followed by random bytes: a real media type to sniff.
python3 "$here/lib/mkmedia.py" wav "$tmp/head.wav" 1 1
{ cat "$tmp/head.wav"; head -c $((size * 1048576)) /dev/urandom; } > "$tmp/big.wav"
cat "$tmp/big.wav" > /dev/null	# into the page cache, as for both runs
sync				# and no writeback left over from making it

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$tmp/t.openssl"; : > "$tmp/t.store"
i=0
while [ $i -lt "$rounds" ]; do
	sync; t0=$(now); openssl dgst -sha256 "$tmp/big.wav" >/dev/null; t1=$(now)
	echo "$t1 - $t0" | bc >> "$tmp/t.openssl"
	run=$(cat /proc/sys/kernel/random/uuid); sync
	t0=$(now)
	"$bin/mi-store" -t bench -r "$run" -y audio "$tmp/big.wav" >/dev/null
	t1=$(now)
	echo "$t1 - $t0" | bc >> "$tmp/t.store"
	rm -rf "$ASSET_STORAGE_DIR/bench"	# each round stores new bytes
	i=$((i + 1))
done
o=$(median < "$tmp/t.openssl"); s=$(median < "$tmp/t.store")
printf 'size %d MiB, %d rounds, median wall seconds\n' "$size" "$rounds"
printf '  openssl dgst -sha256  %.3f s  (%.0f MB/s)\n' "$o" "$(echo "$size * 1.048576 / $o" | bc -l)"
printf '  mi-store              %.3f s  (%.0f MB/s)\n' "$s" "$(echo "$size * 1.048576 / $s" | bc -l)"
printf '  ratio mi-store/openssl %.3f\n' "$(echo "$s / $o" | bc -l)"
