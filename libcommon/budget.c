/*
 * budget.c - monthly spend limits (see budget.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "budget.h"
#include "banned.h"

/*
 * One definition of a budget's spend: this UTC month's recorded cost of
 * the tenant's jobs (with the budget's provider) that passed a check.
 * $3 is a job to leave out (the one being checked), or NULL.
 */
#define BUDGET_SELECT \
    "SELECT json_build_object('tenant_id', b.tenant_id," \
    " 'provider_id', b.provider_id," \
    " 'monthly_limit_usd', b.monthly_limit_usd," \
    " 'month', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')," \
    " 'spent_usd', s.spent," \
    " 'remaining_usd', b.monthly_limit_usd - s.spent," \
    " 'exceeded', s.spent + $4::numeric > b.monthly_limit_usd)" \
    " FROM app.tenant_budgets b" \
    " CROSS JOIN LATERAL (SELECT coalesce(sum(j.cost_usd), 0) AS spent" \
    "  FROM app.generation_jobs j" \
    "  WHERE j.tenant_id = b.tenant_id" \
    "   AND (b.provider_id IS NULL OR j.provider_id = b.provider_id)" \
    "   AND j.created_at >= date_trunc('month', now(), 'UTC')" \
    "   AND j.status <> 'pending'" \
    "   AND j.error_code IS DISTINCT FROM 'BUDGET_EXCEEDED'" \
    "   AND ($3::uuid IS NULL OR j.id <> $3::uuid)) s"

static const char lock_sql[] =
    "SELECT to_jsonb(b.id) FROM app.tenant_budgets b"
    " WHERE b.tenant_id = $1 AND (b.provider_id IS NULL OR b.provider_id = $2)"
    " ORDER BY b.id FOR UPDATE";

static const char check_sql[] = BUDGET_SELECT
    " WHERE b.tenant_id = $1 AND (b.provider_id IS NULL OR b.provider_id = $2)"
    " ORDER BY b.id";

static const char list_sql[] = BUDGET_SELECT
    " WHERE ($1::text IS NULL OR b.tenant_id = $1)"
    "  AND ($2::text IS NULL OR b.provider_id = $2)"
    " ORDER BY b.tenant_id, b.provider_id NULLS FIRST";

static const char one_sql[] = BUDGET_SELECT
    " WHERE b.tenant_id = $1 AND b.provider_id IS NOT DISTINCT FROM $2";

static double
num(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));
	double d = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : 0;

	jv_free(v);
	return d;
}

/* Fills err with the budget's figures; returns 1. */
static int
exceeded(jv b, const char *tenant, double estimate, struct mi_err *err)
{
	jv prov = jv_object_get(jv_copy(b), jv_string("provider_id"));
	jv month = jv_object_get(jv_copy(b), jv_string("month"));
	char scope[160];

	if (jv_get_kind(prov) == JV_KIND_STRING)
		snprintf(scope, sizeof(scope), "provider '%s'",
		    jv_string_value(prov));
	else
		snprintf(scope, sizeof(scope), "all providers");
	mi_err_set(err, EX_UNAVAILABLE,
	    "budget of tenant '%s' for %s in %s: limit %.4f USD, spent %.4f,"
	    " remaining %.4f, request %.4f",
	    tenant, scope,
	    jv_get_kind(month) == JV_KIND_STRING ? jv_string_value(month) : "",
	    num(b, "monthly_limit_usd"), num(b, "spent_usd"),
	    num(b, "remaining_usd"), estimate);
	jv_free(prov);
	jv_free(month);
	return 1;
}

int
mi_budget_lock(struct mi_db *db, const char *tenant, const char *provider,
    struct mi_err *err)
{
	const char *params[2] = { tenant, provider };
	jv rows = mi_db_json(db, lock_sql, 2, params, err);
	int n;

	if (!jv_is_valid(rows)) {
		jv_free(rows);
		return mi_err_prefix(err, "budget check");
	}
	n = jv_array_length(rows);
	return n;
}

int
mi_budget_check_locked(struct mi_db *db, const char *tenant,
    const char *provider, double estimate_usd, const char *job_id,
    struct mi_err *err)
{
	const char *params[4];
	char est[64];
	jv rows;
	int i, n, r = 0;

	if (!isfinite(estimate_usd) || estimate_usd < 0)
		estimate_usd = 0;
	snprintf(est, sizeof(est), "%.6f", estimate_usd);
	params[0] = tenant;
	params[1] = provider;
	params[2] = job_id;
	params[3] = est;
	rows = mi_db_json(db, check_sql, 4, params, err);
	if (!jv_is_valid(rows)) {
		jv_free(rows);
		return mi_err_prefix(err, "budget check");
	}
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n && r == 0; i++) {
		jv b = jv_array_get(jv_copy(rows), i);
		jv x = jv_object_get(jv_copy(b), jv_string("exceeded"));

		if (jv_get_kind(x) == JV_KIND_TRUE)
			r = exceeded(b, tenant, estimate_usd, err);
		jv_free(x);
		jv_free(b);
	}
	jv_free(rows);
	return r;
}

int
mi_budget_check(struct mi_db *db, const char *tenant, const char *provider,
    double estimate_usd, const char *job_id, struct mi_err *err)
{
	/*
	 * The lock comes first, in its own statement: the sum then gets a
	 * snapshot taken after the lock was granted, and so sees the job of
	 * the transaction that held the lock before.
	 */
	int n = mi_budget_lock(db, tenant, provider, err);

	if (n <= 0)
		return n;
	return mi_budget_check_locked(db, tenant, provider, estimate_usd,
	    job_id, err);
}

/* Drops the check's "exceeded" from each listed budget. */
static jv
strip(jv rows)
{
	jv out = jv_array();
	int i, n = jv_array_length(jv_copy(rows));

	for (i = 0; i < n; i++)
		out = jv_array_append(out, jv_object_delete(
		    jv_array_get(jv_copy(rows), i), jv_string("exceeded")));
	jv_free(rows);
	return out;
}

jv
mi_budget_list(struct mi_db *db, const char *tenant, const char *provider,
    struct mi_err *err)
{
	const char *params[4] = { tenant, provider, NULL, "0" };
	jv rows = mi_db_json(db, list_sql, 4, params, err);

	if (!jv_is_valid(rows))
		return rows;
	return strip(rows);
}

jv
mi_budget_set(struct mi_db *db, const char *tenant, const char *provider,
    const char *limit_usd, struct mi_err *err)
{
	const char *params[4] = { tenant, provider, NULL, NULL };
	char lim[64];
	double d;
	jv rows;

	if (limit_usd == NULL) {
		if (mi_db_exec(db, "DELETE FROM app.tenant_budgets"
		    " WHERE tenant_id = $1"
		    " AND provider_id IS NOT DISTINCT FROM $2", 2, params,
		    NULL, err) == -1)
			return jv_invalid();
		return jv_null();
	}
	if (mi_parse_double(limit_usd, &d) == -1 || !isfinite(d) || d < 0 ||
	    d >= 1e8) {
		mi_err_set(err, EX_USAGE, "invalid budget '%s': want USD,"
		    " 0 or more", limit_usd);
		return jv_invalid();
	}
	snprintf(lim, sizeof(lim), "%.4f", d);
	params[2] = lim;
	if (mi_db_exec(db, "INSERT INTO app.tenant_budgets"
	    " (tenant_id, provider_id, monthly_limit_usd) VALUES ($1, $2, $3)"
	    " ON CONFLICT (tenant_id, provider_id) DO UPDATE"
	    " SET monthly_limit_usd = EXCLUDED.monthly_limit_usd,"
	    " updated_at = now()", 3, params, NULL, err) == -1)
		return jv_invalid();
	params[2] = NULL;
	params[3] = "0";
	rows = mi_db_json(db, one_sql, 4, params, err);
	if (!jv_is_valid(rows))
		return rows;
	rows = strip(rows);
	return jv_array_get(rows, 0);
}
