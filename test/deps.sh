#!/bin/sh
# Installs what mi needs to build, test and run its demo, from Debian
# packages (and npm modules for the browser tests).  Does nothing when
# everything is present.  Must run as root on Debian 12 to install.
set -eu

PKGS="build-essential pkg-config libpq-dev libcurl4-openssl-dev libssl-dev
libjq-dev libonig-dev libarchive-dev libmagic-dev libmicrohttpd-dev libpng-dev
zlib1g-dev postgresql-15 postgresql-client-15 bats bats-assert bats-support jq
ffmpeg sox file nginx wrk python3 curl mandoc chromium nodejs npm"

# Further package lists, one file per part of the suite.
here=$(cd "$(dirname "$0")" && pwd)
for f in "$here"/deps.d/*.txt; do
	[ -f "$f" ] && PKGS="$PKGS $(grep -v '^#' "$f")"
done
have_node=
if command -v node >/dev/null && command -v npm >/dev/null; then
	have_node=1
fi
missing=
for p in $(echo $PKGS | tr ' ' '\n' | sort -u); do
	# Node.js may come from another source than Debian; any will do.
	case $p in
	nodejs|npm) [ -n "$have_node" ] && continue ;;
	esac
	s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case $s in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing packages:$missing (run as root to install)" >&2
		exit 69
	fi
	echo "deps: installing$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || apt-get update >&2
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >&2
fi

# npm modules for the browser tests and the viewer (three, playwright-core,
# gltf-validator), kept in test/node_modules and out of version control.
if [ -f "$here/package.json" ] && [ ! -d "$here/node_modules/three" ]; then
	echo "deps: installing npm modules in test/" >&2
	(cd "$here" && npm install --no-audit --no-fund --loglevel=error >&2)
fi
exit 0
