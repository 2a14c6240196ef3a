#!/usr/bin/env bats
# Budgets: mi-cost --set-budget / --budgets, the month's spend, and
# mi_budget_check (libcommon/budget.c) under concurrent claims, driven by a
# small C program linked with libcommon that takes a job the way a
# submitter does: persist it pending at its estimate, then in one
# transaction check the budget and take it to processing (or refuse it).

load test_helper
load fake/fake

setup_file() {
	mi_setup_db
	mi_setup_store
	# mi-submit spends through a priced provider: Gemini image on the fake.
	fake_start --job-ms 100
	export MI_NANO_BANANA_BASE_URL="$FAKE_URL/gemini" GEMINI_API_KEY="$FAKE_KEY"
	local top cc_libs
	top=$(dirname "$BATS_TEST_DIRNAME")	# the tree (MI_BIN_DIR may be valgrind wrappers)
	cc_libs=$(make -s -C "$top" print-libs)
	cat >"$BATS_FILE_TMPDIR/claim.c" <<'EOF'
/* claim MODE TENANT PROVIDER USD COUNT SLEEP_MS START_MS: takes COUNT jobs
 * one after another, sleeping SLEEP_MS inside each claim transaction;
 * MODE "check" uses mi_budget_check, "naive" sums without any lock.
 * Prints "granted" or "refused: why" per job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "budget.h"
#include "db.h"
#include "err.h"

static int
naive(struct mi_db *db, const char *tenant, const char *est)
{
	const char *p[2] = { tenant, est };
	struct mi_err err = MI_ERR_INIT;
	jv v = mi_db_json1(db, "SELECT to_jsonb(coalesce(sum(cost_usd), 0)"
	    " + $2::numeric > (SELECT monthly_limit_usd FROM app.tenant_budgets"
	    " WHERE tenant_id = $1 AND provider_id IS NULL))"
	    " FROM app.generation_jobs WHERE tenant_id = $1"
	    " AND status <> 'pending'", 2, p, &err);
	int r;

	if (!jv_is_valid(v))
		mi_die_err(&err);
	r = jv_get_kind(v) == JV_KIND_TRUE;
	jv_free(v);
	return r;
}

int
main(int argc, char **argv)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_db *db;
	const char *p[4];
	char sleep_s[32];
	long long start;
	int i, n, r;
	jv id;

	mi_setprogname("claim");
	if (argc != 8)
		mi_die(64, "usage: claim mode tenant provider usd count"
		    " sleep_ms start_ms");
	n = atoi(argv[5]);
	snprintf(sleep_s, sizeof(sleep_s), "%.3f", atoi(argv[6]) / 1000.0);
	start = atoll(argv[7]);
	if ((db = mi_db_open(NULL, &err)) == NULL)
		mi_die_err(&err);
	while (mi_wall_ms() < start)
		mi_sleep_ms(1);
	for (i = 0; i < n; i++) {
		p[0] = argv[2];
		p[1] = argv[3];
		p[2] = argv[4];
		id = mi_db_json1(db, "INSERT INTO app.generation_jobs (tenant_id,"
		    " run_id, run_step_id, provider_id, media_type,"
		    " poll_interval_ms, timeout_ms, input_params, cost_usd,"
		    " cost_source) VALUES ($1, gen_random_uuid(),"
		    " gen_random_uuid(), $2, 'image', 2000, 60000,"
		    " '{\"width\":512,\"height\":512}', $3, 'estimate')"
		    " RETURNING to_jsonb(id)", 3, p, &err);
		if (!jv_is_valid(id))
			mi_die_err(&err);
		p[3] = jv_string_value(id);
	retry:
		if (mi_db_begin(db, &err) == -1)
			mi_die_err(&err);
		if (strcmp(argv[1], "naive") == 0)
			r = naive(db, argv[2], argv[4]);
		else
			r = mi_budget_check(db, argv[2], argv[3],
			    atof(argv[4]), p[3], &err);
		if (r == -1) {
			mi_db_rollback(db);
			if (err.code == EX_TEMPFAIL)
				goto retry;
			mi_die_err(&err);
		}
		p[0] = sleep_s;
		p[1] = r ? MI_BUDGET_EXCEEDED : NULL;
		p[2] = r ? err.msg : NULL;
		if (mi_db_exec(db, "SELECT pg_sleep($1::float8)", 1, p, NULL,
		    &err) == -1 ||
		    mi_db_exec(db, r ?
		    "UPDATE app.generation_jobs SET status = 'failed',"
		    " error_code = $1, error_message = $2, cost_usd = 0"
		    " WHERE id = $3" :
		    "UPDATE app.generation_jobs SET status = 'processing',"
		    " provider_job_id = 'p-' || id, started_at = now()"
		    " WHERE id = $3 AND $1::text IS NULL AND $2::text IS NULL",
		    3, p + 1, NULL, &err) == -1 ||
		    mi_db_commit(db, &err) == -1)
			mi_die_err(&err);
		if (r)
			printf("refused: %s\n", err.msg);
		else
			printf("granted\n");
		jv_free(id);
	}
	mi_db_close(db);
	return 0;
}
EOF
	cc -std=c11 -D_GNU_SOURCE -I"$top/libcommon" \
	    -o "$BATS_FILE_TMPDIR/claim" "$BATS_FILE_TMPDIR/claim.c" \
	    "$top/libcommon/libcommon.a" $cc_libs
}

claim() {
	"$BATS_FILE_TMPDIR/claim" "$@"
}

# Jobs of a tenant outside the claims: provider, status, cost, age.
job() {
	sql "INSERT INTO app.generation_jobs (tenant_id, run_id, run_step_id,
	    provider_id, provider_job_id, media_type, status, poll_interval_ms,
	    timeout_ms, input_params, cost_usd, cost_source, created_at,
	    result_uri, error_code)
	    VALUES ('$1', gen_random_uuid(), gen_random_uuid(), '$2', 'pj',
	    'video', '$3', 1000, 60000, '{}', $4, 'provider', $5,
	    CASE WHEN '$3' = 'completed' THEN 'https://x/y' END, ${6:-NULL})"
}

@test "--set-budget sets, updates and removes; --budgets lists" {
	run -0 --separate-stderr mi-cost --set-budget org_a 10
	run -0 jq -e '.tenant_id == "org_a" and .provider_id == null and
	    .monthly_limit_usd == 10 and .spent_usd == 0 and .remaining_usd == 10
	    and (.month | test("^[0-9]{4}-[0-9]{2}$"))' <<<"$output"
	run -0 --separate-stderr mi-cost --set-budget org_a 12.5
	run -0 --separate-stderr mi-cost --set-budget --provider veo org_a 3
	run -0 --separate-stderr mi-cost --set-budget org_b 1
	[ "$(sql "SELECT count(*) FROM app.tenant_budgets")" -eq 3 ]
	run -0 --separate-stderr mi-cost --budgets
	run -0 jq -s -e 'map([.tenant_id, .provider_id, .monthly_limit_usd]) ==
	    [["org_a", null, 12.5], ["org_a", "veo", 3], ["org_b", null, 1]]' <<<"$output"
	run -0 --separate-stderr mi-cost --budgets --tenant org_a --provider veo
	run -0 jq -s -e 'length == 1 and .[0].provider_id == "veo"' <<<"$output"
	run -0 --separate-stderr mi-cost --budgets --format csv
	[ "${lines[0]}" = "tenant_id,provider_id,month,monthly_limit_usd,spent_usd,remaining_usd" ]
	[[ ${lines[1]} == org_a,,*,12.5,0,12.5 ]]
	run -0 --separate-stderr mi-cost --budgets --format table
	[ "${#lines[@]}" -eq 4 ]
	run -0 --separate-stderr mi-cost --set-budget org_b none
	[ -z "$output" ]
	[ "$(sql "SELECT count(*) FROM app.tenant_budgets WHERE tenant_id = 'org_b'")" -eq 0 ]
	run -64 --separate-stderr mi-cost --set-budget org_a -- -1
	[[ $stderr == *"invalid budget '-1'"* ]]
	run -64 mi-cost --set-budget org_a ten
	run -64 mi-cost --set-budget org_a
	run -64 --separate-stderr mi-cost --set-budget 'bad tenant' 5
	[[ $stderr == *"invalid tenant"* ]]
	run -64 mi-cost --set-budget --tenant org_a org_a 5
}

@test "the month's spend: this UTC month, checked jobs only, per provider" {
	mi-cost --set-budget org_s 100 >/dev/null
	mi-cost --set-budget --provider veo org_s 50 >/dev/null
	job org_s veo completed 2.5 "now()"
	job org_s veo failed 0.75 "now()"
	job org_s meshy processing 1.25 "now()"
	job org_s meshy pending 9 "now()"
	job org_s veo failed 7 "now()" "'BUDGET_EXCEEDED'"
	job org_s veo completed 40 "date_trunc('month', now(), 'UTC') - interval '1 second'"
	job org_other veo completed 5 "now()"
	run -0 --separate-stderr mi-cost --budgets --tenant org_s
	run -0 jq -s -e 'map([.provider_id, .spent_usd, .remaining_usd]) ==
	    [[null, 4.5, 95.5], ["veo", 3.25, 46.75]]' <<<"$output"
	# The same figure by SQL over this month's checked jobs.
	[ "$(sql "SELECT sum(cost_usd) FROM app.generation_jobs WHERE tenant_id = 'org_s'
	    AND created_at >= date_trunc('month', now(), 'UTC') AND status <> 'pending'
	    AND error_code IS DISTINCT FROM 'BUDGET_EXCEEDED'")" = 4.5000 ]
}

@test "mi_budget_check: fits up to the last cent, refuses beyond, names the budget" {
	mi-cost --set-budget org_c 1 >/dev/null
	run -0 claim check org_c local 0.4 2 0 0
	assert_output $'granted\ngranted'
	# 0.8 spent: 0.2 fits exactly, then nothing more does.
	run -0 claim check org_c local 0.2 2 0 0
	[ "${lines[0]}" = granted ]
	[ "${lines[1]}" = "refused: budget of tenant 'org_c' for all providers in $(date -u +%Y-%m): limit 1.0000 USD, spent 1.0000, remaining 0.0000, request 0.2000" ]
	[ "$(sql "SELECT count(*) FROM app.generation_jobs WHERE tenant_id = 'org_c'
	    AND status = 'failed' AND error_code = 'BUDGET_EXCEEDED'")" -eq 1 ]
	# A provider budget refuses its provider only.
	mi-cost --set-budget org_c 100 >/dev/null
	mi-cost --set-budget --provider veo org_c 0.5 >/dev/null
	run -0 claim check org_c veo 0.3 2 0 0
	[ "${lines[0]}" = granted ]
	[[ ${lines[1]} == "refused: budget of tenant 'org_c' for provider 'veo' in "*"limit 0.5000 USD, spent 0.3000, remaining 0.2000, request 0.3000" ]]
	run -0 claim check org_c meshy 0.3 2 0 0
	assert_output $'granted\ngranted'
	# No budget: no limit.
	run -0 claim check org_free veo 1000 2 0 0
	assert_output $'granted\ngranted'
}

# COUNT processes, each claiming PER jobs at USD, starting together.
race() {
	local mode=$1 tenant=$2 usd=$3 procs=$4 per=$5 i start
	start=$(($(date +%s%3N) + 400))
	for ((i = 0; i < procs; i++)); do
		claim "$mode" "$tenant" local "$usd" "$per" 30 "$start" \
		    >"$BATS_TEST_TMPDIR/$tenant.$i" &
	done
	wait
	cat "$BATS_TEST_TMPDIR/$tenant".*
}

@test "concurrent claims never exceed the budget" {
	mi-cost --set-budget org_race 5 >/dev/null
	# 8 processes x 6 jobs of 0.25 USD against 5 USD: exactly 20 fit.
	run -0 race check org_race 0.25 8 6
	[ "$(grep -c '^granted$' <<<"$output")" -eq 20 ]
	[ "$(grep -c '^refused: ' <<<"$output")" -eq 28 ]
	[ "$(sql "SELECT sum(cost_usd) FROM app.generation_jobs
	    WHERE tenant_id = 'org_race' AND status = 'processing'")" = 5.0000 ]
	run -0 --separate-stderr mi-cost --budgets --tenant org_race
	run -0 jq -e '.spent_usd == 5 and .remaining_usd == 0' <<<"$output"
}

@test "the same race without the budget lock overspends (the test has teeth)" {
	mi-cost --set-budget org_naive 0.25 >/dev/null
	run -0 race naive org_naive 0.25 6 1
	[ "$(grep -c '^granted$' <<<"$output")" -gt 1 ]
	mi-cost --set-budget org_locked 0.25 >/dev/null
	run -0 race check org_locked 0.25 6 1
	[ "$(grep -c '^granted$' <<<"$output")" -eq 1 ]
}

teardown_file() {
	fake_stop
}

# Requests for mi-submit: N images of tenant $1 with provider $2.
requests() {
	local i
	for ((i = 0; i < $3; i++)); do
		printf '{"tenant_id":"%s","run_id":"%s","run_step_id":"%s","media_type":"image","artifact_type":"image","prompt":"budget %d","params":{"width":512,"height":512},"provider_id":"%s"}\n' \
		    "$1" "$(uuid)" "$(uuid)" "$i" "$2"
	done
}

@test "concurrent mi-submit processes never exceed the budget" {
	command -v mi-submit >/dev/null ||
	    { echo "mi-submit is not built: bin/mi-submit is needed"; false; }
	local provider=${MI_BUDGET_TEST_PROVIDER:-nano-banana} est n=5 i
	# The provider's estimate for one request, from a job without budget.
	requests org_est "$provider" 1 | mi-submit >/dev/null
	est=$(sql "SELECT cost_usd FROM app.generation_jobs WHERE tenant_id = 'org_est'")
	[ -n "$est" ] && awk -v e="$est" 'BEGIN { exit !(e > 0) }' ||
	    { echo "provider '$provider' estimates no cost ($est)"; false; }
	# Room for n requests and half of another.
	mi-cost --set-budget org_sub "$(awk -v e="$est" -v n=$n 'BEGIN { printf "%.4f", e * (n + 0.5) }')" >/dev/null
	for i in 0 1 2 3; do
		requests org_sub "$provider" 4 >"$BATS_TEST_TMPDIR/req.$i"
	done
	for i in 0 1 2 3; do
		mi-submit <"$BATS_TEST_TMPDIR/req.$i" >"$BATS_TEST_TMPDIR/out.$i" 2>/dev/null &
	done
	wait
	run -0 jq -s -e --argjson n $n '
	    length == 16 and
	    (map(select(.error == null)) | length) == $n and
	    (map(select(.error.code == "BUDGET_EXCEEDED")) | length) == 16 - $n and
	    all(.[] | select(.error); .error.message | test("budget of tenant .org_sub.*spent.*remaining"))' \
	    <(cat "$BATS_TEST_TMPDIR"/out.*)
	# The database agrees: n jobs went to the provider, within the limit.
	[ "$(sql "SELECT count(*) FROM app.generation_jobs WHERE tenant_id = 'org_sub'
	    AND error_code IS DISTINCT FROM 'BUDGET_EXCEEDED'")" -eq $n ]
	run -0 --separate-stderr mi-cost --budgets --tenant org_sub
	run -0 jq -e '.spent_usd <= .monthly_limit_usd and .remaining_usd >= 0' <<<"$output"
}
