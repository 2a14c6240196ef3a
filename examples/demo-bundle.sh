#!/bin/sh
# The campaign's game and its manifest, after campaign.sh: the
# spin-the-wheel template (examples/game) with the run's model, HDRI,
# floor texture, music and sound effects as one reproducible bundle, the
# CampaignManifest over the intro, win and lose videos and that bundle,
# both checked by mi-bundle --verify; prints the game's URL.
#   examples/demo-bundle.sh DIR
# DIR holds campaign.sh's artifacts.ndjson.  Needs DATABASE_URL,
# ASSET_STORAGE_DIR, MI_PUBLIC_URL and MI_URL_SIGNING_KEY.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: demo-bundle.sh DIR}
tenant=${MI_DEMO_TENANT:-org_demo}

rm -rf "$dir/game"
sh "$top/examples/game/template.sh" "$dir/game"
# The game takes everything but the videos, which the manifest points at.
ok='select(.error == null)'
jq -c "$ok | select(.metadata.mime_type | startswith(\"video/\") | not)" \
    "$dir/artifacts.ndjson" | mi-bundle --template "$dir/game" \
    > "$dir/bundle.ndjson"
cat > "$dir/campaign.json" <<JSON
{"campaign_id": "spin-the-wheel-demo", "campaign_name": "Neon spin the wheel",
 "tenant_id": "$tenant",
 "branding": {"brand_name": "Neon Arcade",
   "colors": {"primary": "#ff2fb3", "secondary": "#2fd5ff"}},
 "analytics": {"enabled": false, "events": ["intro_start", "spin", "outcome"]}}
JSON
{
	jq -c "$ok | select(.metadata.mime_type | startswith(\"video/\"))" \
	    "$dir/artifacts.ndjson"
	cat "$dir/bundle.ndjson"
} | mi-bundle --manifest "$dir/campaign.json" > "$dir/manifest.ndjson"
mi-bundle --verify < "$dir/manifest.ndjson" > "$dir/verify.ndjson"

# The bundle's signed query as the first path segment: the page's
# relative URLs (scripts, model, sounds) carry it.
signed=$(jq -r .signed_url "$dir/bundle.ndjson")
[ "$signed" != null ] ||
    signed=$(mi-serve --sign "$(jq -r .uri "$dir/bundle.ndjson")")
echo "game ($(jq -r .metadata.file_count "$dir/bundle.ndjson") files," \
    "$(jq -r .size_bytes "$dir/bundle.ndjson") bytes," \
    "$(jq -r .checked "$dir/verify.ndjson") checks passed):"
echo "  ${signed%%\?*}/${signed#*\?}/index.html"
echo "campaign manifest: $(jq -r '.signed_url // .uri' "$dir/manifest.ndjson")"
