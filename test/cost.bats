#!/usr/bin/env bats
# mi-cost: the cost report checked against totals computed independently
# with SQL, every grouping and format, date filters, and the storage report
# checked against du(1) of the store.

load test_helper

setup_file() {
	mi_setup_db
	mi_setup_store
	# 240 jobs: 3 tenants x 8 provider/media pairs x 5 states over 10
	# days of March 2025, some costs missing, costs reported or estimated.
	sql "
	INSERT INTO app.generation_jobs (tenant_id, run_id, run_step_id,
	    provider_id, provider_job_id, media_type, status, poll_interval_ms,
	    timeout_ms, input_params, cost_usd, cost_source, created_at,
	    result_uri)
	SELECT t, md5(t || (i % 4))::uuid, gen_random_uuid(), prov,
	    CASE WHEN st = 'pending' THEN NULL ELSE 'pj' || i END, mt, st,
	    1000, 60000,
	    CASE WHEN mt = 'video' THEN jsonb_build_object('duration_sec', 4 + i % 12)
	         WHEN mt = 'audio_sfx' THEN jsonb_build_object('duration_sec', 0.5 + (i % 9) * 0.5)
	         WHEN mt = 'audio_bgm' THEN jsonb_build_object('duration_sec', 30 + i % 91)
	         WHEN i % 2 = 0 THEN '{\"model\":\"m-large\",\"width\":1024}'::jsonb
	         ELSE '{\"width\":512}'::jsonb END,
	    CASE WHEN i % 11 = 0 THEN NULL ELSE round((i % 13) * 0.0375 + 0.01, 4) END,
	    (ARRAY['provider', 'estimate', NULL])[1 + i % 3],
	    '2025-03-01T00:30:00Z'::timestamptz + (i % 10) * interval '1 day'
	        + (i % 24) * interval '1 hour',
	    CASE WHEN st = 'completed' THEN 'https://cdn.example/' || i END
	FROM generate_series(0, 239) i,
	LATERAL (SELECT (ARRAY['org_a', 'org_b', 'org_c'])[1 + i % 3] AS t,
	    (ARRAY['veo', 'meshy', 'nano-banana', 'nano-banana', 'suno',
	           'elevenlabs-sfx', 'blockade', 'local'])[1 + i % 8] AS prov,
	    (ARRAY['video', 'model_3d', 'image', 'texture', 'audio_bgm',
	           'audio_sfx', 'environment_map', 'image'])[1 + i % 8] AS mt,
	    (ARRAY['completed', 'completed', 'failed', 'timed_out',
	           'processing', 'pending', 'completed'])[1 + i % 7] AS st) a"
	# Fallback chains: half of the failed and timed-out jobs were replaced
	# by a job with 'local'; the replacements of timed-out jobs failed
	# too and were replaced again.
	sql "
	INSERT INTO app.generation_jobs (tenant_id, run_id, run_step_id,
	    provider_id, provider_job_id, media_type, status, poll_interval_ms,
	    timeout_ms, input_params, cost_usd, cost_source, created_at,
	    previous_job_id, result_uri)
	SELECT tenant_id, run_id, run_step_id, 'local', 'fb-' || id,
	    media_type, CASE status WHEN 'failed' THEN 'completed' ELSE 'failed' END,
	    1000, 60000, input_params, 0.001, 'estimate',
	    created_at + interval '1 minute', id,
	    CASE WHEN status = 'failed' THEN 'file:///spool/' || id END
	FROM app.generation_jobs
	WHERE status IN ('failed', 'timed_out') AND provider_job_id ~ '[02468]\$'"
	sql "
	INSERT INTO app.generation_jobs (tenant_id, run_id, run_step_id,
	    provider_id, provider_job_id, media_type, status, poll_interval_ms,
	    timeout_ms, input_params, cost_usd, cost_source, created_at,
	    previous_job_id, result_uri)
	SELECT tenant_id, run_id, run_step_id, 'local', 'fb2-' || id,
	    media_type, 'completed', 1000, 60000, input_params, 0.002,
	    'provider', created_at + interval '1 minute', id, 'file:///s/' || id
	FROM app.generation_jobs
	WHERE previous_job_id IS NOT NULL AND status = 'failed'"
	# org_d: jobs of today and of ten days ago, for relative dates.
	sql "
	INSERT INTO app.generation_jobs (tenant_id, run_id, run_step_id,
	    provider_id, provider_job_id, media_type, status, poll_interval_ms,
	    timeout_ms, input_params, cost_usd, cost_source, created_at,
	    result_uri)
	SELECT 'org_d', gen_random_uuid(), gen_random_uuid(), 'veo', 'd' || i,
	    'video', 'completed', 1000, 60000, '{\"duration_sec\":8}', 0.4,
	    'provider',
	    CASE WHEN i < 6 THEN date_trunc('day', now(), 'UTC')
	              + (now() - date_trunc('day', now(), 'UTC')) / 2
	         ELSE now() - interval '10 days' END, 'https://cdn.example/d'
	FROM generate_series(0, 8) i"
}

# The report's figures, computed another way: CASE sums over a plain
# scan, fallback found with EXISTS.  $1: comma list of keys, $2: WHERE.
expected() {
	local keys=$1 where=${2:-true} k sel= grp=
	local -A col=([tenant]=tenant_id [provider]=provider_id
	    [media_type]=media_type [model]=model [day]=day [run]=run_id)
	IFS=, read -ra ks <<<"$keys"
	for k in "${ks[@]}"; do
		sel+="'${col[$k]}', ${col[$k]}, "
		grp+="${grp:+, }${col[$k]}"
	done
	sql "
	WITH x AS (
	  SELECT g.*, to_char(g.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
	    coalesce(g.input_params->>'model', g.provider_id) AS model,
	    g.status IN ('failed', 'timed_out') AND EXISTS (SELECT 1
	        FROM app.generation_jobs n WHERE n.previous_job_id = g.id) AS fb,
	    coalesce((g.input_params->>'duration_sec')::numeric, 0) AS d,
	    coalesce(g.cost_usd, 0) AS c
	  FROM app.generation_jobs g WHERE $where)
	SELECT json_build_object($sel
	  'jobs', count(*),
	  'completed', sum(CASE WHEN status = 'completed' THEN 1 ELSE 0 END),
	  'failed', sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END),
	  'timed_out', sum(CASE WHEN status = 'timed_out' THEN 1 ELSE 0 END),
	  'open', sum(CASE WHEN status IN ('pending', 'processing') THEN 1 ELSE 0 END),
	  'fallen_back', sum(CASE WHEN fb THEN 1 ELSE 0 END),
	  'cost_usd', sum(c),
	  'cost_completed_usd', sum(CASE WHEN status = 'completed' THEN c ELSE 0 END),
	  'cost_failed_usd', sum(CASE WHEN status IN ('failed', 'timed_out') AND NOT fb THEN c ELSE 0 END),
	  'cost_fallback_usd', sum(CASE WHEN fb THEN c ELSE 0 END),
	  'cost_open_usd', sum(CASE WHEN status IN ('pending', 'processing') THEN c ELSE 0 END),
	  'cost_provider_usd', sum(CASE WHEN cost_source = 'provider' THEN c ELSE 0 END),
	  'cost_estimate_usd', sum(CASE WHEN cost_source = 'provider' THEN 0 ELSE c END),
	  'video_sec', sum(CASE WHEN status = 'completed' AND media_type = 'video' THEN d ELSE 0 END),
	  'audio_sec', sum(CASE WHEN status = 'completed' AND media_type LIKE 'audio%' THEN d ELSE 0 END),
	  'models', sum(CASE WHEN status = 'completed' AND media_type = 'model_3d' THEN 1 ELSE 0 END),
	  'images', sum(CASE WHEN status = 'completed' AND media_type IN ('image', 'texture', 'environment_map') THEN 1 ELSE 0 END))
	FROM x ${grp:+GROUP BY $grp}" | jq -S -c . | sort
}

# mi-cost's JSON, normalised the same way.
report() {
	mi-cost "$@" | jq -S -c . | sort
}

@test "--help, --version and bad usage" {
	run -0 mi-cost --help
	assert_line --index 0 --partial 'usage: mi-cost'
	run -0 mi-cost --version
	assert_output 'mi-cost 0.1.0'
	run -64 --separate-stderr mi-cost --bogus
	[[ $stderr == *"mi-cost: unknown option '--bogus'"* ]]
	run -64 --separate-stderr mi-cost --format xml
	[[ $stderr == *"unknown format 'xml'"* ]]
	run -64 --separate-stderr mi-cost --by tenant,color
	[[ $stderr == *"invalid --by 'tenant,color'"* ]]
	run -64 mi-cost --by tenant,tenant
	run -64 mi-cost --by tenant,
	run -64 mi-cost --storage --by provider
	run -64 mi-cost --storage --since 7d
	run -64 mi-cost --storage --budgets
	run -64 mi-cost --budgets --by tenant
	run -64 mi-cost extra
	run -64 --separate-stderr mi-cost --since 'not a date'
	[[ $stderr == *"invalid date 'not a date'"* ]]
	run -64 mi-cost --until 2025-13-45
	[ -z "$output" ] || [[ $output != *'{'* ]]
}

@test "no database: 78 without DATABASE_URL, 69 when it cannot be reached" {
	DATABASE_URL= run -78 --separate-stderr mi-cost
	[[ $stderr == *"DATABASE_URL"* ]]
	DATABASE_URL="postgresql://postgres@127.0.0.1:$(free_port)/x" \
	    run -69 --separate-stderr mi-cost
	[ -z "$output" ]
}

@test "no grouping: one total row equal to the SQL totals" {
	run -0 diff <(report --by '') <(expected '')
	run -0 jq -e --argjson n "$(sql 'SELECT count(*) FROM app.generation_jobs')" \
	    '.jobs == $n and .jobs > 240 and .cost_usd > 0' <<<"$(mi-cost --by '')"
}

@test "each single grouping matches SQL" {
	local k
	for k in tenant provider media_type model day run; do
		run -0 diff <(report --by "$k") <(expected "$k")
		[ "$(mi-cost --by "$k" | wc -l)" -gt 1 ]
	done
	# The default grouping is by tenant.
	run -0 diff <(report) <(expected tenant)
}

@test "combined groupings match SQL, in the order asked" {
	run -0 diff <(report --by tenant,provider,day) <(expected tenant,provider,day)
	run -0 diff <(report --by day,media_type,model,run) <(expected day,media_type,model,run)
	run -0 diff <(report -b provider_id,tenant_id,run_id) <(expected provider,tenant,run)
	run -0 --separate-stderr mi-cost --by media_type,tenant
	run -0 jq -s -e '.[0] | keys_unsorted[0:3] == ["media_type","tenant_id","jobs"]' <<<"$output"
}

@test "failed, fallen-back and successful costs are apart and add up" {
	local out
	out=$(mi-cost --by provider)
	run -0 jq -s -e 'all(.[]; (.cost_completed_usd + .cost_failed_usd +
	    .cost_fallback_usd + .cost_open_usd - .cost_usd | fabs) < 1e-9
	    and (.cost_provider_usd + .cost_estimate_usd - .cost_usd | fabs) < 1e-9
	    and .jobs == .completed + .failed + .timed_out + .open)' <<<"$out"
	run -0 jq -s -e 'map(.fallen_back) | add > 0' <<<"$out"
	# Every fallen-back attempt in the data, by SQL.
	local n
	n=$(sql "SELECT count(*) FROM app.generation_jobs g WHERE status IN ('failed','timed_out')
	    AND id IN (SELECT previous_job_id FROM app.generation_jobs)")
	run -0 jq -s -e "map(.fallen_back) | add == $n" <<<"$out"
}

@test "tenant and provider filters match SQL" {
	run -0 diff <(report --tenant org_b --by provider) \
	    <(expected provider "tenant_id = 'org_b'")
	run -0 diff <(report -p nano-banana -b tenant,media_type) \
	    <(expected tenant,media_type "provider_id = 'nano-banana'")
	run -0 --separate-stderr mi-cost --tenant org_nobody
	[ -z "$output" ]
}

@test "dates: a day as --until includes that day, months and ISO timestamps" {
	run -0 diff <(report --since 2025-03-03 --until 2025-03-05 --by day) \
	    <(expected day "created_at >= '2025-03-03Z' AND created_at < '2025-03-06Z'")
	[ "$(mi-cost --since 2025-03-03 --until 2025-03-05 --by day | wc -l)" -eq 3 ]
	run -0 diff <(report --since 2025-03 --until 2025-03 --by tenant) \
	    <(expected tenant "created_at >= '2025-03-01Z' AND created_at < '2025-04-01Z'")
	run -0 diff <(report --since 2025-03-04T12:00:00Z --until 2025-03-06T06:30:00+02:00 --by provider) \
	    <(expected provider "created_at >= '2025-03-04T12:00:00Z' AND created_at < '2025-03-06T04:30:00Z'")
	# No jobs in range: one row of zeros.
	run -0 --separate-stderr mi-cost --since 2025-02-01 --until 2025-02-28 --by ''
	run -0 jq -e '[.[]] | length == 17 and all(. == 0)' <<<"$output"
}

@test "relative dates: today, 7d" {
	run -0 --separate-stderr mi-cost --since today --by tenant
	run -0 jq -s -e 'length == 1 and .[0].tenant_id == "org_d" and .[0].jobs == 6
	    and .[0].video_sec == 48 and .[0].cost_usd == 2.4' <<<"$output"
	run -0 --separate-stderr mi-cost --since 7d --by tenant
	run -0 jq -s -e 'length == 1 and .[0].jobs == 6' <<<"$output"
	run -0 --separate-stderr mi-cost --since 11d --until yesterday --tenant org_d
	run -0 jq -e '.jobs == 3' <<<"$output"
	run -0 --separate-stderr mi-cost --until today --tenant org_d
	run -0 jq -e '.jobs == 9' <<<"$output"
}

@test "CSV has a header and the same figures as JSON" {
	local json csv
	json=$(mi-cost --by tenant,provider)
	csv=$(mi-cost --by tenant,provider --format csv)
	[ "$(head -1 <<<"$csv")" = "tenant_id,provider_id,jobs,completed,failed,timed_out,open,fallen_back,cost_usd,cost_completed_usd,cost_failed_usd,cost_fallback_usd,cost_open_usd,cost_provider_usd,cost_estimate_usd,video_sec,audio_sec,models,images" ]
	[ "$(wc -l <<<"$csv")" -eq $(($(wc -l <<<"$json") + 1)) ]
	run -0 python3 -c '
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
recs = [json.loads(l) for l in open(sys.argv[2])]
assert len(rows) == len(recs) and len(rows) > 10
for r, j in zip(rows, recs):
    assert list(r.keys()) == list(j.keys()), (r.keys(), j.keys())
    for k, v in j.items():
        if isinstance(v, str):
            assert r[k] == v, (k, r[k], v)
        else:
            assert abs(float(r[k]) - v) < 1e-9, (k, r[k], v)
' <(echo "$csv") <(echo "$json")
	# No groups: a header and the total row.
	run -0 mi-cost --by '' --format csv --tenant org_nobody
	[ "${#lines[@]}" -eq 2 ]
	[[ ${lines[1]} == 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0 ]]
}

@test "the table is aligned: a header, one line per group, equal widths" {
	run -0 mi-cost --by tenant,day --format table
	local n
	n=$(mi-cost --by tenant,day | wc -l)
	[ "${#lines[@]}" -eq $((n + 1)) ]
	[[ ${lines[0]} == "tenant_id  day  "*"cost_usd"*"images" ]]
	# Numbers are right-aligned, so every line ends at the same column,
	# and each column starts where its header does.
	local len=${#lines[0]} i
	for i in "${!lines[@]}"; do
		[ "${#lines[$i]}" -eq "$len" ]
	done
	[[ ${lines[1]} == "org_a      2025-03-01  "* ]]
	# Costs are shown with 4 decimals.
	[[ ${lines[1]} =~ \ [0-9]+\.[0-9]{4}\  ]]
}

# A PNG of random pixels (incompressible): python3 with zlib.
mkpng() {
	python3 -c '
import random, struct, sys, zlib
w, h, seed = 64, 48, int(sys.argv[2])
random.seed(seed)
raw = b"".join(b"\0" + bytes(random.getrandbits(8) for _ in range(w * 3)) for _ in range(h))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" +
    chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
    chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
' "$1" "$2"
}

# Bytes of the regular files under $1, each inode once (du -b / du -B1).
du_files() {
	find "$1" -type f -print0 | du -c "$2" --files0-from=- | tail -1 | cut -f1
}

@test "storage: figures match du of the store; shared assets save >= 20%" {
	local d=$BATS_TEST_TMPDIR i r1 r2 r3
	for i in 0 1 2 3 4; do mkpng "$d/img$i.png" "$i"; done
	sox -n -r 22050 -c 1 "$d/coin.wav" synth 0.4 sine 880
	sox -n -r 22050 -c 1 "$d/whoosh.wav" synth 0.7 pinknoise
	sox -n -r 22050 -c 1 "$d/loop.wav" synth 1.5 sine 220
	r1=$(uuid) r2=$(uuid) r3=$(uuid)
	# A campaign in two runs reusing its logo, textures and sounds.
	mi-store -t org_a -r "$r1" -y image "$d"/img{0,1,2}.png >/dev/null
	mi-store -t org_a -r "$r1" -y audio_sfx "$d"/coin.wav "$d"/whoosh.wav >/dev/null
	mi-store -t org_a -r "$r1" -y audio_bgm "$d"/loop.wav >/dev/null
	run -0 mi-store -t org_a -r "$r2" -y image "$d"/img{0,1,3}.png
	run -0 jq -s -e 'map(.deduplicated) == [true, true, false]' <<<"$output"
	mi-store -t org_a -r "$r2" -y audio_sfx "$d"/coin.wav "$d"/whoosh.wav >/dev/null
	mi-store -t org_a -r "$r2" -y audio_bgm "$d"/loop.wav >/dev/null
	# The same logo as a texture too: one more path, no more bytes.
	mi-store -t org_a -r "$r2" -y texture "$d"/img0.png >/dev/null
	mi-store -t org_b -r "$r3" -y image "$d"/img0.png "$d"/img4.png >/dev/null

	run -0 --separate-stderr mi-cost --storage
	local out=$output t
	[ "$(jq -s length <<<"$out")" -eq 2 ]
	for t in org_a org_b; do
		run -0 jq -e --arg t "$t" \
		    --argjson n "$(sql "SELECT count(*) FROM app.artifacts WHERE tenant_id = '$t'")" \
		    --argjson l "$(sql "SELECT sum(size_bytes) FROM app.artifacts WHERE tenant_id = '$t'")" \
		    --argjson p "$(du_files "$ASSET_STORAGE_DIR/$t" -b)" \
		    --argjson a "$(du_files "$ASSET_STORAGE_DIR/$t" -B1)" \
		    --argjson f "$(find "$ASSET_STORAGE_DIR/$t" -type f -printf '%i\n' | sort -u | wc -l)" \
		    '.[] | select(.tenant_id == $t) | .artifacts == $n and .logical_bytes == $l
		     and .physical_bytes == $p and .allocated_bytes == $a and .files == $f
		     and .saved_bytes == $l - $p' <<<"$(jq -s . <<<"$out")"
	done
	# org_a: 13 artifacts over 7 distinct files.
	run -0 jq -s -e '.[] | select(.tenant_id == "org_a") | .artifacts == 13 and .files == 7
	    and .saved_pct >= 20 and (.saved_pct - 100 * .saved_bytes / .logical_bytes | fabs) < 0.01' <<<"$out"
	run -0 jq -s -e '.[] | select(.tenant_id == "org_b") | .saved_bytes == 0 and .saved_pct == 0' <<<"$out"

	# By type: each type's files, once per inode, against du.
	run -0 --separate-stderr mi-cost --storage --by tenant,type
	out=$output
	[ "$(jq -s length <<<"$out")" -eq 5 ]
	local y
	for y in image audio_sfx audio_bgm texture; do
		run -0 jq -e --arg y "$y" \
		    --argjson p "$(find "$ASSET_STORAGE_DIR"/org_a/*/"$y" -type f -print0 |
		        du -cb --files0-from=- | tail -1 | cut -f1)" \
		    --argjson l "$(sql "SELECT sum(size_bytes) FROM app.artifacts WHERE tenant_id = 'org_a' AND type = '$y'")" \
		    '.[] | select(.tenant_id == "org_a" and .type == $y) | .physical_bytes == $p and .logical_bytes == $l' <<<"$(jq -s . <<<"$out")"
	done
	# A tenant, a table, and a storage total across tenants.
	run -0 --separate-stderr mi-cost --storage --tenant org_b --format table
	[ "${#lines[@]}" -eq 2 ]
	[[ ${lines[0]} == "tenant_id  artifacts  files  logical_bytes  physical_bytes  allocated_bytes  saved_bytes  saved_pct" ]]
	run -0 --separate-stderr mi-cost --storage --by ''
	run -0 jq -e --argjson p "$(du_files "$ASSET_STORAGE_DIR" -b)" \
	    '.physical_bytes == $p and .artifacts == 15' <<<"$output"
}

@test "storage without a store directory is a configuration error" {
	ASSET_STORAGE_DIR= run -78 --separate-stderr mi-cost --storage
	[[ $stderr == *"ASSET_STORAGE_DIR"* ]]
}

@test "examples/cost-report.cron: each line writes its day's CSV" {
	local dir=$BATS_TEST_TMPDIR/reports d line
	mkdir -p "$dir"
	d=$(date -u -d yesterday +%F)
	# Yesterday's jobs, so that the nightly report has rows.
	sql "INSERT INTO app.generation_jobs (tenant_id, run_id, run_step_id,
	    provider_id, provider_job_id, media_type, status, poll_interval_ms,
	    timeout_ms, input_params, cost_usd, cost_source, created_at, result_uri)
	    VALUES ('org_y', gen_random_uuid(), gen_random_uuid(), 'meshy', 'y',
	    'model_3d', 'completed', 1000, 60000, '{}', 0.2, 'provider',
	    '${d}T12:00:00Z', 'https://x/y')"
	# The command part of each cron line, as cron's sh would run it.
	while read -r line; do
		MI_REPORT_DIR=$dir run -0 sh -c "$line"
	done < <(grep -E '^[0-9*]' "$BATS_TEST_DIRNAME/../examples/cost-report.cron" |
	    cut -d' ' -f6- | sed 's/\\%/%/g')
	[ -f "$dir/cost-$d.csv" ]
	[ -f "$dir/storage-$d.csv" ]
	[ -z "$(find "$dir" -name '.*.csv')" ]
	run -0 cat "$dir/cost-$d.csv"
	[ "${#lines[@]}" -eq 2 ]
	[[ ${lines[0]} == tenant_id,provider_id,media_type,model,jobs,* ]]
	[[ ${lines[1]} == org_y,meshy,model_3d,meshy,1,1,0,0,0,0,0.2,0.2,* ]]
	run -0 head -1 "$dir/storage-$d.csv"
	assert_output tenant_id,type,artifacts,files,logical_bytes,physical_bytes,allocated_bytes,saved_bytes,saved_pct
}
