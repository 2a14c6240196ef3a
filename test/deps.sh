#!/bin/sh
# The dependency step (make deps): installs what mi needs to build, test
# and run its demo on Debian 12 -- make and the compiler included, so it
# runs on a bare machine before anything else -- from Debian packages, and
# the npm modules of the browser tests exactly as test/package-lock.json
# pins them.  Every test/deps.d/*.txt adds packages (one a line, # starts
# a comment).  Quiet: one line per step it takes, saying what it installs
# and how long it took; the whole apt and npm output goes to a log it names
# (MI_DEPS_LOG, default .build/deps.log), shown when a step fails.  Does
# nothing, in a fraction of a second, when everything is present.
# Installing needs root.  Exits 69 when something is missing and cannot
# be installed, 1 when an installation fails.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

PKGS="make build-essential pkg-config libpq-dev libcurl4-openssl-dev libssl-dev
libjq-dev libonig-dev libarchive-dev libmagic-dev libpng-dev
libavformat-dev libavcodec-dev libavutil-dev
zlib1g-dev postgresql-15 postgresql-client-15 bats bats-assert bats-support jq
ffmpeg sox file nginx wrk python3 curl openssl iproute2 mandoc chromium nodejs
npm"
for f in "$here"/deps.d/*.txt; do
	[ -f "$f" ] && PKGS="$PKGS $(sed 's/#.*//' "$f")"
done
PKGS=$(printf '%s\n' $PKGS | sort -u)

log=${MI_DEPS_LOG:-$top/.build/deps.log}
started=
say() { printf 'deps: %s\n' "$*" >&2; }

# step WHAT CMD...: runs CMD with its output in the log, on one line of
# its own: "deps: WHAT ... N s".  A failure shows the end of the log.
step() {
	_what=$1
	shift
	if [ -z "$started" ]; then
		mkdir -p "$(dirname "$log")" 2>/dev/null && : >"$log" 2>/dev/null ||
		    { log=${TMPDIR:-/tmp}/mi-deps.log; : >"$log"; }
		started=1
	fi
	printf 'deps: %s ... ' "$_what" >&2
	printf '== %s\n$ %s\n' "$_what" "$*" >>"$log"
	_t=$(date +%s)
	if "$@" >>"$log" 2>&1 </dev/null; then
		echo "$(($(date +%s) - _t)) s" >&2
		return 0
	else
		_rc=$?
	fi
	echo "failed after $(($(date +%s) - _t)) s (exit $_rc)" >&2
	say "the last lines of $log:"
	tail -n 40 "$log" | sed 's/^/    /' >&2
	say "failed; the whole output is in $log"
	exit 1
}

# Debian packages.  Node.js may come from another source than Debian (a
# node and an npm on PATH); then Debian's nodejs and npm are not wanted.
have_node=
if command -v node >/dev/null && command -v npm >/dev/null; then
	have_node=1
fi
# shellcheck disable=SC2086
installed=" $(dpkg-query -W -f='${Status} ${Package}\n' $PKGS 2>/dev/null |
    sed -n 's/^install ok installed //p' | tr '\n' ' ') "
missing=
for p in $PKGS; do
	case $p in
	nodejs | npm) [ -n "$have_node" ] && continue ;;
	esac
	case $installed in
	*" $p "*) ;;
	*) missing="$missing $p" ;;
	esac
done
missing=${missing# }

if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		say "missing Debian packages: $missing"
		say "run as root to install them: sh test/deps.sh"
		exit 69
	fi
	export DEBIAN_FRONTEND=noninteractive
	step "apt-get update" apt-get update
	# shellcheck disable=SC2086
	step "installing $(echo $missing | wc -w) Debian packages and what they need ($missing)" \
	    apt-get install -y --no-install-recommends $missing
fi

# npm modules for the browser tests and the viewer, in test/node_modules
# (out of version control), exactly as test/package-lock.json pins them.
# Installed again when the lock file or the node changes.
if [ -f "$here/package-lock.json" ]; then
	command -v node >/dev/null || { say "no node on PATH"; exit 69; }
	stamp="$(cksum <"$here/package-lock.json") node $(node --version)"
	if [ "$(cat "$here/node_modules/.mi-deps" 2>/dev/null)" != "$stamp" ]; then
		# Refuse, loudly, a node older than a module's engines require:
		# npm only warns, and the module then fails at run time.
		what=$(node "$here/lib/engines.js" "$here/package-lock.json") || {
			say "Node.js $(node --version) is too old for test/package-lock.json:"
			node "$here/lib/engines.js" --why "$here/package-lock.json" |
			    sed 's/^/    /' >&2
			say "install a newer Node.js, or pin older modules in test/package.json"
			exit 69
		}
		step "npm modules ($what) into test/node_modules" \
		    env -C "$here" npm ci --engine-strict --no-audit --no-fund
		echo "$stamp" >"$here/node_modules/.mi-deps"
	fi
fi
[ -z "$started" ] || say "done; the whole output is in $log"
exit 0
