#!/bin/sh
# One run of a "spin the wheel" campaign through the real pipeline:
# requests -> mi-route -> mi-submit -> mi-poll -> mi-fetch.  No request
# names a provider: the routing table does (the built-in local providers
# by default, so that the demo runs offline; MI_ROUTING_FILE=share's
# routing.json sends the same requests to the real providers), then a
# cost report and the URLs.
#   examples/campaign.sh [OUTDIR]
# Needs DATABASE_URL and ASSET_STORAGE_DIR; a second run with the same
# tenant and run id stores nothing new.
set -eu
out=${1:-.}
tenant=${MI_DEMO_TENANT:-org_demo}
# A fixed run id, so that running the demo twice is the same run.
run=${MI_DEMO_RUN:-5e1d0c2a-7b7e-4c39-9d0f-2b8a4c6e1f00}
step() { printf '%08x-0000-4000-8000-%012x' "$1" "$1"; }

req() {	# media_type artifact_type step prompt params
	jq -nc --arg t "$tenant" --arg r "$run" --arg s "$(step "$3")" \
	    --arg m "$1" --arg a "$2" --arg p "$4" --argjson params "$5" \
	    '{tenant_id:$t, run_id:$r, run_step_id:$s, media_type:$m,
	      artifact_type:$a, prompt:$p, params:$params}'
}

{
	req video intro_video 1 "neon arcade prize wheel spinning, slow dolly" \
	    '{"duration_sec":6,"resolution":"720p","aspect_ratio":"16:9","loop":true}'
	req video outcome_win_video 2 "golden confetti burst over the prize wheel, you win" \
	    '{"duration_sec":4,"resolution":"720p","aspect_ratio":"16:9"}'
	req video outcome_lose_video 3 "wheel slows to a stop, try again tomorrow" \
	    '{"duration_sec":4,"resolution":"720p","aspect_ratio":"16:9"}'
	req model_3d prize_wheel 4 "metallic gold prize wheel with eight segments" \
	    '{"max_triangles":20000,"pbr":true}'
	req texture floor_texture 5 "polished dark marble arcade floor" \
	    '{"width":1024,"height":1024,"seamless":true}'
	req environment_map environment_map 6 "neon city night sky with a bright moon" \
	    '{"width":2048,"format":"hdr"}'
	req audio_bgm bgm 10 "upbeat synthwave arcade loop" \
	    '{"duration_sec":30,"genre":"electronic","instrumental":true}'
	n=11
	for sfx in click spin win lose; do
		req audio_sfx "sfx_$sfx" $n "arcade $sfx sound" \
		    "{\"duration_sec\":1.5,\"sfx_type\":\"$sfx\"}"
		n=$((n + 1))
	done
} > "$out/requests.ndjson"

# The demo runs offline: every media type is routed to the local
# generators, each request still checked by the provider it goes to.
MI_ROUTING_FILE=${MI_ROUTING_FILE:-$(dirname "$0")/routing-local.json}
export MI_ROUTING_FILE

mi-route < "$out/requests.ndjson" | mi-submit | mi-poll | mi-fetch \
    > "$out/artifacts.ndjson"

# The brand's own logo, uploaded rather than generated.
mi-store -t "$tenant" -r "$run" -y brand_logo \
    "$(dirname "$0")/assets/brand-logo.png" >> "$out/artifacts.ndjson"

echo "cost of this run:"
mi-cost --tenant "$tenant" --by provider,media_type --format table || true
echo
jq -r 'if .error then "FAILED \(.error.code): \(.error.message)"
       else "\(.type)\t\(if .deduplicated then "(deduplicated) " else "" end)\(.signed_url // .uri)" end' \
    "$out/artifacts.ndjson"
n=$(jq -s 'length' "$out/artifacts.ndjson")
dedup=$(jq -s 'map(select(.deduplicated == true)) | length' "$out/artifacts.ndjson")
failed=$(jq -s 'map(select(.error)) | length' "$out/artifacts.ndjson")
echo
echo "$n artifacts, $dedup deduplicated, $failed failed"
[ "$failed" -eq 0 ]
