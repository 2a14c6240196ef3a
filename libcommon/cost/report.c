/*
 * cost/report.c - the cost report: the jobs in range grouped by the
 * --by keys with each group's counts, costs and durations, or the step
 * report with one row per run step.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cost/cost.h"
#include "banned.h"

/* Grouping keys of the cost report: option word, column, SQL. */
static const struct mi_cost_key report_keys[] = {
	{ "tenant", "tenant_id", "tenant_id" },
	{ "provider", "provider_id", "provider_id" },
	{ "media_type", "media_type", "media_type" },
	{ "model", "model", "model" },
	{ "day", "day", "day" },
	{ "run", "run_id", "run_id" },
	{ NULL, NULL, NULL }
};

/*
 * The figures of each group.  A failed or timed-out job that another job
 * replaced (previous_job_id) is a fallen-back attempt; its cost is shown
 * apart from that of failures that ended their chain.
 */
static const struct metric {
	const char *col, *sql;
} metrics[] = {
	{ "jobs", "count(*)" },
	{ "completed", "count(*) FILTER (WHERE status = 'completed')" },
	{ "failed", "count(*) FILTER (WHERE status = 'failed')" },
	{ "timed_out", "count(*) FILTER (WHERE status = 'timed_out')" },
	{ "open", "count(*) FILTER (WHERE status IN ('pending', 'processing'))" },
	{ "fallen_back", "count(*) FILTER (WHERE fell_back)" },
	{ "cost_usd", "coalesce(sum(cost_usd), 0)" },
	{ "cost_completed_usd", "coalesce(sum(cost_usd)"
	    " FILTER (WHERE status = 'completed'), 0)" },
	{ "cost_failed_usd", "coalesce(sum(cost_usd) FILTER (WHERE status IN"
	    " ('failed', 'timed_out') AND NOT fell_back), 0)" },
	{ "cost_fallback_usd", "coalesce(sum(cost_usd)"
	    " FILTER (WHERE fell_back), 0)" },
	{ "cost_open_usd", "coalesce(sum(cost_usd) FILTER (WHERE status IN"
	    " ('pending', 'processing')), 0)" },
	{ "cost_provider_usd", "coalesce(sum(cost_usd)"
	    " FILTER (WHERE cost_source = 'provider'), 0)" },
	{ "cost_estimate_usd", "coalesce(sum(cost_usd)"
	    " FILTER (WHERE cost_source IS DISTINCT FROM 'provider'), 0)" },
	{ "video_sec", "coalesce(sum(dur) FILTER (WHERE status = 'completed'"
	    " AND media_type = 'video'), 0)" },
	{ "audio_sec", "coalesce(sum(dur) FILTER (WHERE status = 'completed'"
	    " AND media_type IN ('audio_sfx', 'audio_bgm')), 0)" },
	{ "models", "count(*) FILTER (WHERE status = 'completed'"
	    " AND media_type = 'model_3d')" },
	{ "images", "count(*) FILTER (WHERE status = 'completed'"
	    " AND media_type IN ('image', 'texture', 'environment_map'))" },
	{ NULL, NULL }
};

/* The jobs in range, with the derived columns the report groups on. */
static const char jobs_sql[] =
    "WITH j AS (SELECT g.tenant_id, g.provider_id, g.media_type, g.run_id,"
    " g.status, g.cost_usd, g.cost_source,"
    " to_char(g.created_at, 'YYYY-MM-DD') AS day,"
    " coalesce(g.input_params->>'model', g.request->>'model',"
    "  g.request->'params'->>'model', g.provider_id) AS model,"
    " (g.status IN ('failed', 'timed_out') AND r.previous_job_id IS NOT NULL)"
    "  AS fell_back,"
    " coalesce(CASE WHEN jsonb_typeof(g.input_params->'duration_sec')"
    "  = 'number' THEN (g.input_params->>'duration_sec')::numeric END,"
    "  CASE WHEN jsonb_typeof(g.input_params->'params'->'duration_sec')"
    "  = 'number' THEN (g.input_params->'params'->>'duration_sec')::numeric"
    "  END, 0) AS dur"
    " FROM app.generation_jobs g"
    " LEFT JOIN (SELECT DISTINCT previous_job_id FROM app.generation_jobs"
    "  WHERE previous_job_id IS NOT NULL) r ON r.previous_job_id = g.id"
    " WHERE ($1::text IS NULL OR g.tenant_id = $1)"
    " AND ($2::text IS NULL OR g.provider_id = $2)"
    " AND ($3::timestamptz IS NULL OR g.created_at >= $3::timestamptz)"
    " AND ($4::timestamptz IS NULL OR g.created_at < $4::timestamptz))"
    " SELECT json_build_object(";


static int
is_relative(const char *s, const char **unit)
{
	size_t n = strspn(s, "0123456789");

	if (n == 0 || n > 6 || s[n + 1] != '\0')
		return 0;
	switch (s[n]) {
	case 'h': *unit = "hours"; return 1;
	case 'd': *unit = "days"; return 1;
	case 'w': *unit = "weeks"; return 1;
	}
	return 0;
}

/* A day, month or PostgreSQL's day words: as an upper bound, a whole one. */
static int
is_day(const char *s, int *month)
{
	size_t n = strlen(s);

	*month = n == 7 && strspn(s, "0123456789-") == 7 && s[4] == '-';
	if (*month)
		return 1;
	if (n == 10 && strspn(s, "0123456789-") == 10 && s[4] == '-' &&
	    s[7] == '-')
		return 1;
	return strcmp(s, "today") == 0 || strcmp(s, "yesterday") == 0 ||
	    strcmp(s, "tomorrow") == 0;
}

/*
 * Resolves a --since/--until DATE to a timestamp text, letting PostgreSQL
 * parse ISO 8601 in the session's time zone.  Returns a malloc'd string;
 * NULL and err when the date is not one (EX_USAGE) or the database is
 * out of reach (EX_UNAVAILABLE, EX_TEMPFAIL).
 */
static char *
resolve_date(struct mi_db *db, const char *s, int upper, struct mi_err *err)
{
	struct mi_err dberr = MI_ERR_INIT;
	char text[128];
	const char *unit, *sql, *params[1];
	jv v;
	char *out;
	int month;

	params[0] = text;
	if (strlen(s) > 64)
		goto bad;
	if (is_relative(s, &unit)) {
		snprintf(text, sizeof(text), "%.*s %s", (int)strlen(s) - 1, s,
		    unit);
		sql = "SELECT to_json(now() - $1::interval)";
	} else if (is_day(s, &month)) {
		snprintf(text, sizeof(text), "%s%s", s, month ? "-01" : "");
		if (!upper)
			sql = "SELECT to_json($1::date::timestamptz)";
		else if (month)
			sql = "SELECT to_json(($1::date + interval '1 month')"
			    "::timestamptz)";
		else
			sql = "SELECT to_json(($1::date + 1)::timestamptz)";
	} else {
		snprintf(text, sizeof(text), "%s", s);
		sql = "SELECT to_json($1::timestamptz)";
	}
	/* Any other failure is PostgreSQL refusing the text. */
	v = mi_db_json1(db, sql, 1, params, &dberr);
	if (!jv_is_valid(v)) {
		jv_free(v);
		if (dberr.code == EX_UNAVAILABLE || dberr.code == EX_TEMPFAIL) {
			if (err)
				*err = dberr;
			return NULL;
		}
		goto bad;
	}
	if (jv_get_kind(v) != JV_KIND_STRING) {
		jv_free(v);
		goto bad;
	}
	out = strdup(jv_string_value(v));
	jv_free(v);
	if (out == NULL)
		mi_err_set(err, EX_OSERR, "out of memory");
	return out;
bad:
	mi_err_set(err, EX_USAGE, "invalid date '%s'", s);
	return NULL;
}

/* Both bounds of q, or -1 with err (and neither). */
static int
resolve_range(struct mi_db *db, const struct mi_cost_query *q, char **since,
    char **until, struct mi_err *err)
{
	*since = *until = NULL;
	if (q->since && (*since = resolve_date(db, q->since, 0, err)) == NULL)
		return -1;
	if (q->until && (*until = resolve_date(db, q->until, 1, err)) == NULL) {
		free(*since);
		*since = NULL;
		return -1;
	}
	return 0;
}

/*
 * The step report (--by step): one row per app.run_steps row, with its
 * jobs' counts, creates and costs, and for a step served from the step
 * cache what the hit saved: the cost of the job that made the artifact.
 */
static const char *const step_cols[] = { "tenant_id", "run_id",
    "workflow_name", "step_id", "run_step_id", "status", "attempt",
    "jobs", "creates", "completed", "failed", "timed_out", "open",
    "fallen_back", "cost_usd", "cost_fallback_usd", "cost_provider_usd",
    "cost_estimate_usd", "cache_hits", "cache_saved_usd" };

static const char steps_sql[] =
    "WITH s AS (SELECT s.* FROM app.run_steps s"
    "  WHERE ($1::text IS NULL OR s.tenant_id = $1)"
    "  AND ($3::timestamptz IS NULL OR s.created_at >= $3::timestamptz)"
    "  AND ($4::timestamptz IS NULL OR s.created_at < $4::timestamptz)"
    "  AND ($2::text IS NULL OR s.debug->>'provider' = $2 OR EXISTS ("
    "   SELECT 1 FROM app.generation_jobs g WHERE g.run_step_id = s.id"
    "   AND g.provider_id = $2))),"
    " j AS (SELECT g.run_step_id, g.id, g.status, g.cost_usd,"
    "  g.cost_source, g.submit_count,"
    "  g.status IN ('failed', 'timed_out') AND EXISTS (SELECT 1"
    "   FROM app.generation_jobs n WHERE n.previous_job_id = g.id)"
    "   AS fell_back"
    "  FROM app.generation_jobs g WHERE g.run_step_id IN (SELECT id FROM s)"
    "  AND ($2::text IS NULL OR g.provider_id = $2))"
    " SELECT json_build_object('tenant_id', s.tenant_id,"
    "  'run_id', s.run_id, 'workflow_name', s.workflow_name,"
    "  'step_id', s.step_id, 'run_step_id', s.id, 'status', s.status,"
    "  'attempt', s.attempt, 'jobs', count(j.id),"
    "  'creates', coalesce(sum(j.submit_count), 0),"
    "  'completed', count(j.id) FILTER (WHERE j.status = 'completed'),"
    "  'failed', count(j.id) FILTER (WHERE j.status = 'failed'),"
    "  'timed_out', count(j.id) FILTER (WHERE j.status = 'timed_out'),"
    "  'open', count(j.id) FILTER (WHERE j.status IN ('pending',"
    "   'processing')),"
    "  'fallen_back', count(j.id) FILTER (WHERE j.fell_back),"
    "  'cost_usd', coalesce(sum(j.cost_usd), 0),"
    "  'cost_fallback_usd', coalesce(sum(j.cost_usd)"
    "   FILTER (WHERE j.fell_back), 0),"
    "  'cost_provider_usd', coalesce(sum(j.cost_usd)"
    "   FILTER (WHERE j.cost_source = 'provider'), 0),"
    "  'cost_estimate_usd', coalesce(sum(j.cost_usd)"
    "   FILTER (WHERE j.cost_source IS DISTINCT FROM 'provider'), 0),"
    "  'cache_hits', CASE WHEN s.cache_hit THEN 1 ELSE 0 END,"
    "  'cache_saved_usd', CASE WHEN s.cache_hit THEN coalesce((SELECT"
    "   g.cost_usd FROM app.artifacts a JOIN app.generation_jobs g"
    "   ON g.id = a.job_id WHERE jsonb_typeof(s.output_artifact_ids) ="
    "   'array' AND a.id = (s.output_artifact_ids->>0)::uuid),"
    "   (s.debug->'cache'->>'saved_usd')::numeric, 0) ELSE 0 END)"
    " FROM s LEFT JOIN j ON j.run_step_id = s.id"
    " GROUP BY s.id, s.tenant_id, s.run_id, s.workflow_name, s.step_id,"
    "  s.status, s.attempt, s.cache_hit, s.output_artifact_ids, s.debug,"
    "  s.created_at"
    " ORDER BY s.tenant_id, s.run_id, s.created_at, s.step_id";

static jv
steps_report(struct mi_db *db, const struct mi_cost_query *q,
    struct mi_cost_cols *c, struct mi_err *err)
{
	const char *params[4];
	char *since, *until;
	size_t i;
	jv rows;

	for (i = 0; i < sizeof(step_cols) / sizeof(step_cols[0]); i++)
		mi_cost_cols_add(c, step_cols[i]);
	if (resolve_range(db, q, &since, &until, err) == -1)
		return jv_invalid();
	params[0] = q->tenant;
	params[1] = q->provider;
	params[2] = since;
	params[3] = until;
	rows = mi_db_json(db, steps_sql, 4, params, err);
	free(since);
	free(until);
	return rows;
}

jv
mi_cost_report(struct mi_db *db, const struct mi_cost_query *q,
    struct mi_cost_cols *c, struct mi_err *err)
{
	const struct mi_cost_key *sel[8];
	struct mi_buf sql = MI_BUF_INIT;
	const char *params[4];
	char *since, *until;
	int i;
	jv rows;

	if (q->by && strcmp(q->by, "step") == 0)
		return steps_report(db, q, c, err);
	if (mi_cost_parse_by(q->by ? q->by : "tenant", report_keys, c, sel,
	    err) == -1)
		return jv_invalid();
	if (resolve_range(db, q, &since, &until, err) == -1)
		return jv_invalid();
	mi_buf_adds(&sql, jobs_sql);
	for (i = 0; sel[i]; i++)
		mi_buf_addf(&sql, "'%s', %s, ", sel[i]->col, sel[i]->sql);
	for (i = 0; metrics[i].col; i++) {
		mi_buf_addf(&sql, "%s'%s', %s", i ? ", " : "", metrics[i].col,
		    metrics[i].sql);
		mi_cost_cols_add(c, metrics[i].col);
	}
	mi_buf_adds(&sql, ") FROM j");
	/* No keys: one total row, even over no jobs at all. */
	for (i = 0; sel[i]; i++)
		mi_buf_addf(&sql, "%s%s", i ? ", " : " GROUP BY ", sel[i]->sql);
	for (i = 0; sel[i]; i++)
		mi_buf_addf(&sql, "%s%s", i ? ", " : " ORDER BY ", sel[i]->sql);
	params[0] = q->tenant;
	params[1] = q->provider;
	params[2] = since;
	params[3] = until;
	rows = mi_db_json(db, sql.buf, 4, params, err);
	mi_buf_release(&sql);
	free(since);
	free(until);
	return rows;
}
