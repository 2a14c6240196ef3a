# Start and stop the fake provider server from a bats file:
#
#	load fake/fake
#	setup_file() { fake_start --job-ms 200; }
#	teardown_file() { fake_stop; }
#
# fake_start [provider.py options...] starts the server on a free port and
# exports FAKE_URL (http://127.0.0.1:PORT), FAKE_PORT, FAKE_LOG (the request
# log), FAKE_KEY (the accepted key) and FAKE_PID.  Pass --key to change the
# key.  fake_stop ends it.  fake_stats prints GET /_fake/stats, fake_reset
# clears jobs and counters.

fake_start() {
	local dir out i key=test-key-123 prev=
	for i in "$@"; do
		[ "$prev" = --key ] && key=$i
		prev=$i
	done
	dir=${BATS_FILE_TMPDIR:-${TMPDIR:-/tmp}}
	out=$(mktemp "$dir/fake.out.XXXXXX")
	export FAKE_LOG="$dir/fake.log"
	export FAKE_KEY="$key"
	python3 "${BASH_SOURCE[0]%/*}/provider.py" --port 0 --log "$FAKE_LOG" \
	    --key "$key" "$@" >"$out" 2>"$out.err" 3>&- &
	export FAKE_PID=$!
	for i in $(seq 1 300); do
		if grep -q '^ready ' "$out" 2>/dev/null; then
			export FAKE_PORT=$(awk '/^ready /{print $2; exit}' "$out")
			export FAKE_URL="http://127.0.0.1:$FAKE_PORT"
			return 0
		fi
		kill -0 "$FAKE_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "fake provider did not start:" >&2
	cat "$out.err" >&2
	return 1
}

fake_stop() {
	if [ -n "${FAKE_PID:-}" ]; then
		kill "$FAKE_PID" 2>/dev/null || true
		wait "$FAKE_PID" 2>/dev/null || true
		unset FAKE_PID
	fi
}

fake_stats() {
	curl -sS "$FAKE_URL/_fake/stats"
}

fake_reset() {
	curl -sS -X POST "$FAKE_URL/_fake/reset" >/dev/null
}
