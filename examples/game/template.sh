#!/bin/sh
# Lays out the spin-the-wheel template in OUT: this folder's files plus
# the three.js modules the game imports, copied from the npm package
# (test/node_modules/three, or THREE_DIR), with its licence.  No CDN: the
# bundle carries everything the page loads.
#   sh examples/game/template.sh OUT
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:?usage: template.sh OUT}
three=${THREE_DIR:-$top/test/node_modules/three}
[ -f "$three/build/three.module.js" ] || {
	echo "template.sh: no three.js in '$three' (run make deps)" >&2
	exit 69
}
mkdir -p "$out/js/three/addons/loaders" "$out/js/three/addons/utils"
cp "$here/index.html" "$here/style.css" "$here/game_config.json" "$out/"
cp "$here/js/game.js" "$out/js/"
cp "$three/build/three.module.js" "$three/build/three.core.js" \
    "$three/LICENSE" "$out/js/three/"
cp "$three/examples/jsm/loaders/GLTFLoader.js" \
    "$three/examples/jsm/loaders/HDRLoader.js" "$out/js/three/addons/loaders/"
cp "$three/examples/jsm/utils/BufferGeometryUtils.js" \
    "$three/examples/jsm/utils/SkeletonUtils.js" "$out/js/three/addons/utils/"
