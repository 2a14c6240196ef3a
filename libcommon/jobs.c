/*
 * jobs.c - the SQL of generation jobs.  Each operation is one statement
 * (the claim is one transaction) whose parameters are text: jsonb for
 * rows and patches, array literals for batches, so a batch of thousands
 * of jobs costs one round trip.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "budget.h"
#include "buf.h"
#include "jobs.h"
#include "json.h"
#include "banned.h"

static char owner[256];

const char *
mi_jobs_owner(void)
{
	char host[128];
	unsigned nonce;
	FILE *fp;

	if (owner[0])
		return owner;
	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	nonce = (unsigned)mi_now_ms() ^ (unsigned)getpid();
	if ((fp = fopen("/dev/urandom", "r")) != NULL) {
		if (fread(&nonce, sizeof(nonce), 1, fp) != 1)
			nonce ^= (unsigned)time(NULL);
		fclose(fp);
	}
	snprintf(owner, sizeof(owner), "%s@%s:%ld:%08x", mi_getprogname(),
	    host, (long)getpid(), nonce);
	return owner;
}

long
mi_jobs_lease_ms(void)
{
	static long lease;
	const char *s;
	unsigned long long v;

	if (lease == 0) {
		s = getenv("MI_LEASE_MS");
		lease = s && mi_parse_uint(s, 100, 86400000ULL, &v) == 0 ?
		    (long)v : 30000;
	}
	return lease;
}

long long
mi_jobs_time_ms(const char *ts)
{
	int y, mo, d, h, mi, n = 0, oh = 0, om = 0;
	double sec;
	struct tm tm;
	const char *p;
	long long ms;
	char sign;

	if (ts == NULL || sscanf(ts, "%d-%d-%dT%d:%d:%lf%n", &y, &mo, &d, &h,
	    &mi, &sec, &n) < 6)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	ms = (long long)timegm(&tm) * 1000 + (long long)(sec * 1000);
	p = ts + n;
	sign = *p;
	if ((sign == '+' || sign == '-') &&
	    sscanf(p + 1, "%d:%d", &oh, &om) >= 1) {
		long long off = ((long long)oh * 60 + om) * 60000;

		ms += sign == '+' ? -off : off;
	}
	return ms;
}

/* A PostgreSQL array literal of the strings, numbers and nulls of a. */
static char *
array_literal(jv a)
{
	struct mi_buf b = MI_BUF_INIT;
	int i, n = jv_array_length(jv_copy(a));

	mi_buf_adds(&b, "{");
	for (i = 0; i < n; i++) {
		jv v = jv_array_get(jv_copy(a), i);
		const char *s;

		if (i > 0)
			mi_buf_adds(&b, ",");
		if (jv_get_kind(v) == JV_KIND_STRING) {
			mi_buf_adds(&b, "\"");
			for (s = jv_string_value(v); *s; s++) {
				if (*s == '"' || *s == '\\')
					mi_buf_adds(&b, "\\");
				mi_buf_add(&b, s, 1);
			}
			mi_buf_adds(&b, "\"");
		} else if (jv_get_kind(v) == JV_KIND_NUMBER)
			mi_buf_addf(&b, "%.0f", jv_number_value(v));
		else
			mi_buf_adds(&b, "NULL");
		jv_free(v);
	}
	if (mi_buf_adds(&b, "}") == -1) {
		mi_buf_release(&b);
		return NULL;
	}
	return mi_buf_detach(&b, NULL);
}

/* The job's columns from its fields f ($2 the lease owner or '', $3 the
 * lease in ms). */
#define INSERT_JOB \
    " INSERT INTO app.generation_jobs AS j (tenant_id, run_id, run_step_id," \
    " provider_id, media_type, poll_interval_ms, timeout_ms, input_params," \
    " artifact_type, skill_id, request, fallback, previous_job_id," \
    " cost_usd, cost_source, lease_owner, lease_expires_at, created_at," \
    " step_attempt, estimate_usd, provider_model)" \
    " SELECT f->>'tenant_id', (f->>'run_id')::uuid," \
    "  (f->>'run_step_id')::uuid, f->>'provider_id', f->>'media_type'," \
    "  (f->>'poll_interval_ms')::int, (f->>'timeout_ms')::int," \
    "  coalesce(f->'input_params', '{}'), f->>'artifact_type'," \
    "  f->>'skill_id', coalesce(f->'request', '{}')," \
    "  coalesce(f->'fallback', '[]'), (f->>'previous_job_id')::uuid," \
    "  (f->>'cost_usd')::numeric, 'estimate'," \
    "  CASE WHEN $2 <> '' THEN $2 END," \
    "  CASE WHEN $2 <> '' THEN now() + $3::int * interval '1 ms' END," \
    "  clock_timestamp(), coalesce((f->>'step_attempt')::int, 1)," \
    "  (f->>'cost_usd')::numeric, f->>'model'"

/*
 * The insert takes the lock the claims of its tenant and provider take,
 * and stamps created_at once it holds it: so the order of created_at is
 * the order in which claims see the jobs, and first come, first served is
 * exact even for jobs written at the same moment by different processes.
 */
static const char insert_sql[] =
    "WITH x AS MATERIALIZED (SELECT $1::jsonb AS f),"
    " l AS (SELECT pg_advisory_xact_lock(hashtextextended("
    "  (x.f->>'tenant_id') || '/' || (x.f->>'provider_id'), 0)) FROM x)"
    INSERT_JOB
    " FROM l, x"
    " RETURNING to_jsonb(j)";

jv
mi_jobs_insert(struct mi_db *db, jv f, int owned, struct mi_err *err)
{
	const char *params[3];
	char lease[32], *text = mi_json_dump(f);
	jv row;

	jv_free(f);
	if (text == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return jv_invalid();
	}
	snprintf(lease, sizeof(lease), "%ld", mi_jobs_lease_ms());
	params[0] = text;
	params[1] = owned ? mi_jobs_owner() : "";
	params[2] = lease;
	row = mi_db_json1(db, insert_sql, 3, params, err);
	free(text);
	return row;
}

/*
 * The same for many jobs in one statement: $4 the groups' lock keys, in
 * the order every process takes them; created_at is stamped once all are
 * held, in the order the jobs are given.
 */
static const char insert_many_sql[] =
    "WITH x AS MATERIALIZED (SELECT e.f, e.k"
    "  FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(f, k)),"
    " l AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended(g,"
    "  0)) FROM unnest($4::text[]) AS g)"
    INSERT_JOB
    " FROM x WHERE (SELECT count(*) FROM l) >= 0 ORDER BY x.k"
    " RETURNING to_jsonb(j)";

static int
by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

jv
mi_jobs_insert_many(struct mi_db *db, jv fs, int owned, struct mi_err *err)
{
	const char *params[4];
	char lease[32], *text = NULL, *locks = NULL, **keys;
	int i, j, n = jv_array_length(jv_copy(fs)), m = 0;
	jv rows = jv_invalid(), out = jv_invalid(), lk = jv_array();

	if ((keys = calloc((size_t)n + 1, sizeof(*keys))) == NULL)
		goto oom;
	for (i = 0; i < n; i++) {
		jv f = jv_array_get(jv_copy(fs), i);
		const char *t = NULL, *p = NULL;
		struct mi_buf b = MI_BUF_INIT;

		mi_json_str(f, "tenant_id", &t, 0, NULL);
		mi_json_str(f, "provider_id", &p, 0, NULL);
		mi_buf_addf(&b, "%s/%s", t ? t : "", p ? p : "");
		jv_free(f);
		if (b.buf == NULL)
			goto oom;
		keys[m++] = b.buf;
	}
	qsort(keys, (size_t)m, sizeof(*keys), by_str);
	for (i = 0; i < m; i++)
		if (i == 0 || strcmp(keys[i], keys[i - 1]) != 0)
			lk = jv_array_append(lk, jv_string(keys[i]));
	if ((locks = array_literal(lk)) == NULL ||
	    (text = mi_json_dump(fs)) == NULL)
		goto oom;
	snprintf(lease, sizeof(lease), "%ld", mi_jobs_lease_ms());
	params[0] = text;
	params[1] = owned ? mi_jobs_owner() : "";
	params[2] = lease;
	params[3] = locks;
	rows = mi_db_json(db, insert_many_sql, 4, params, err);
	if (!jv_is_valid(rows))
		goto done;
	/* In the order given, each found by its step. */
	out = jv_array();
	for (i = 0; i < n && jv_is_valid(out); i++) {
		jv f = jv_array_get(jv_copy(fs), i), found = jv_invalid();
		const char *want = NULL;

		mi_json_str(f, "run_step_id", &want, 0, NULL);
		for (j = 0; want && j < jv_array_length(jv_copy(rows)); j++) {
			jv r = jv_array_get(jv_copy(rows), j);
			const char *got = NULL;

			if (mi_json_str(r, "run_step_id", &got, 0, NULL) == 1 &&
			    strcmp(got, want) == 0 && !jv_is_valid(found))
				found = r;
			else
				jv_free(r);
		}
		jv_free(f);
		if (jv_is_valid(found))
			out = jv_array_append(out, found);
		else {
			jv_free(out);
			out = jv_invalid();
			mi_err_set(err, EX_SOFTWARE, "database: a job of the "
			    "batch was not written");
		}
	}
	goto done;
oom:
	mi_err_set(err, EX_OSERR, "out of memory");
done:
	for (i = 0; keys && i < m; i++)
		free(keys[i]);
	free(keys);
	free(locks);
	free(text);
	jv_free(lk);
	jv_free(rows);
	jv_free(fs);
	return out;
}

static const char claim_sql[] =
    "SELECT json_build_object('id', c.job_id, 'estimate', c.estimate)"
    " FROM app.mi_claim_slots($1, $2, $3::int, $4, $5::int) c";

static const char take_slot_sql[] =
    "UPDATE app.generation_jobs j SET status = 'processing',"
    " started_at = clock_timestamp(), cost_source = 'estimate',"
    " lease_expires_at = now() + $3::int * interval '1 ms',"
    " updated_at = now()"
    " WHERE j.id = $1::uuid AND j.lease_owner = $2"
    " RETURNING to_jsonb(j)";

/* The same for many jobs (no budget applies), in the claim's order. */
static const char take_slots_sql[] =
    "WITH u AS (UPDATE app.generation_jobs j SET status = 'processing',"
    "  started_at = clock_timestamp(), cost_source = 'estimate',"
    "  lease_expires_at = now() + $3::int * interval '1 ms',"
    "  updated_at = now()"
    "  FROM unnest($1::uuid[]) WITH ORDINALITY AS c(id, k)"
    "  WHERE j.id = c.id AND j.lease_owner = $2"
    "  RETURNING to_jsonb(j) AS r, c.k)"
    " SELECT r FROM u ORDER BY k";

static const char over_budget_sql[] =
    "UPDATE app.generation_jobs j SET status = 'failed',"
    " error_code = 'BUDGET_EXCEEDED', error_message = $3,"
    " completed_at = now(), lease_owner = NULL, lease_expires_at = NULL,"
    " updated_at = now()"
    " WHERE j.id = $1::uuid AND j.lease_owner = $2"
    " RETURNING to_jsonb(j)";

jv
mi_jobs_claim(struct mi_db *db, const char *tenant, const char *provider,
    int limit, int most, struct mi_err *err)
{
	const char *params[5];
	char lim[16], lease[32], mostv[16];
	jv cand, out = jv_array();
	int i, n, budgets = 0;

	snprintf(lim, sizeof(lim), "%d", limit);
	snprintf(mostv, sizeof(mostv), "%d", most > 0 ? most : limit);
	snprintf(lease, sizeof(lease), "%ld", mi_jobs_lease_ms());
	if (mi_db_begin(db, err) == -1) {
		jv_free(out);
		return jv_invalid();
	}
	params[0] = tenant;
	params[1] = provider;
	params[2] = lim;
	params[3] = mi_jobs_owner();
	params[4] = mostv;
	cand = mi_db_json(db, claim_sql, 5, params, err);
	if (!jv_is_valid(cand))
		goto fail;
	n = jv_array_length(jv_copy(cand));
	/* The oldest of them, when the caller can start only so many: the
	 * rest wait, in their order, for its next claim. */
	if (most > 0 && n > most)
		n = most;
	/* The budget rows are locked once for the whole claim. */
	if (n > 0 && (budgets = mi_budget_lock(db, tenant, provider,
	    err)) == -1)
		goto fail;
	if (n > 0 && budgets == 0) {
		/* No budget applies: every slot in one statement. */
		struct mi_buf ids = MI_BUF_INIT;
		jv rows;

		mi_buf_add(&ids, "{", 1);
		for (i = 0; i < n; i++) {
			jv c = jv_array_get(jv_copy(cand), i);
			const char *id = "";

			mi_json_str(c, "id", &id, 1, NULL);
			if (i)
				mi_buf_add(&ids, ",", 1);
			mi_buf_add(&ids, id, strlen(id));
			jv_free(c);
		}
		mi_buf_add(&ids, "}", 2);
		params[0] = ids.buf;
		params[1] = mi_jobs_owner();
		params[2] = lease;
		rows = mi_db_json(db, take_slots_sql, 3, params, err);
		mi_buf_release(&ids);
		if (!jv_is_valid(rows))
			goto fail;
		jv_free(out);
		out = rows;
		n = 0;
	}
	for (i = 0; i < n; i++) {
		jv c = jv_array_get(jv_copy(cand), i), row;
		struct mi_err berr = MI_ERR_INIT;
		const char *id = NULL;
		double est = 0;
		int b;

		mi_json_str(c, "id", &id, 1, NULL);
		mi_json_num(c, "estimate", &est, 0, NULL);
		b = mi_budget_check_locked(db, tenant, provider, est, id,
		    &berr);
		if (b == -1) {
			*err = berr;
			jv_free(c);
			goto fail;
		}
		params[0] = id;
		params[1] = mi_jobs_owner();
		params[2] = b == 1 ? berr.msg : lease;
		row = mi_db_json1(db, b == 1 ? over_budget_sql : take_slot_sql,
		    3, params, err);
		jv_free(c);
		if (!jv_is_valid(row))
			goto fail;
		if (jv_get_kind(row) == JV_KIND_OBJECT)
			out = jv_array_append(out, row);
		else
			jv_free(row);
	}
	jv_free(cand);
	if (mi_db_commit(db, err) == -1) {
		jv_free(out);
		return jv_invalid();
	}
	return out;
fail:
	jv_free(cand);
	jv_free(out);
	mi_db_rollback(db);
	return jv_invalid();
}

/*
 * The patch expression P is used some thirty times a row.  Each JSON
 * parameter is therefore read once, in a MATERIALIZED CTE: written
 * inline (or in a FROM subquery, which the planner pulls up), $2::jsonb
 * was parsed again at every use, for every row of a prepared statement's
 * generic plan; a batch of n patches cost 30 n parses of the text of all
 * n (a 256-job batch: tens of milliseconds).
 */
#define PATCH_SET(P) \
    "UPDATE app.generation_jobs j SET" \
    " status = coalesce(" P "->>'status', j.status)," \
    " provider_job_id = CASE WHEN " P " ? 'provider_job_id'" \
    "  THEN " P "->>'provider_job_id' ELSE j.provider_job_id END," \
    " provider_state = CASE WHEN jsonb_typeof(" P "->'provider_state') =" \
    "  'object' THEN j.provider_state || (" P "->'provider_state')" \
    "  ELSE j.provider_state END," \
    " progress = coalesce((" P "->>'progress')::int, j.progress)," \
    " attempts = coalesce((" P "->>'attempts')::int, j.attempts)," \
    " result_uri = coalesce(" P "->>'result_uri', j.result_uri)," \
    " result_expires_at = CASE WHEN " P " ? 'result_expires_ms' THEN" \
    "  to_timestamp((" P "->>'result_expires_ms')::double precision / 1000)" \
    "  ELSE j.result_expires_at END," \
    " cost_usd = CASE WHEN " P " ? 'cost_usd' THEN (" P "->>'cost_usd')::numeric" \
    "  ELSE j.cost_usd END," \
    " cost_source = coalesce(" P "->>'cost_source', j.cost_source)," \
    " error_code = CASE WHEN " P " ? 'error_code' THEN " P "->>'error_code'" \
    "  ELSE j.error_code END," \
    " error_message = CASE WHEN " P " ? 'error_message'" \
    "  THEN " P "->>'error_message' ELSE j.error_message END," \
    " submit_unknown = coalesce((" P "->>'submit_unknown')::boolean," \
    "  j.submit_unknown)," \
    " submit_count = j.submit_count + coalesce((" P "->>'submit_add')::int, 0)," \
    " started_at = CASE WHEN " P " ? 'started' THEN coalesce(j.started_at," \
    "  now()) ELSE j.started_at END," \
    " completed_at = CASE WHEN " P "->>'status' IN ('completed', 'failed'," \
    "  'timed_out') THEN now() ELSE j.completed_at END," \
    " next_poll_at = CASE WHEN " P " ? 'next_poll_ms' THEN" \
    "  to_timestamp((" P "->>'next_poll_ms')::double precision / 1000)" \
    "  ELSE j.next_poll_at END," \
    " late = coalesce((" P "->>'late')::boolean, j.late)," \
    " artifact_id = CASE WHEN " P " ? 'artifact_id'" \
    "  THEN (" P "->>'artifact_id')::uuid ELSE j.artifact_id END," \
    " lease_owner = CASE WHEN (" P "->>'release')::boolean THEN NULL" \
    "  ELSE j.lease_owner END," \
    " lease_expires_at = CASE WHEN (" P "->>'release')::boolean THEN NULL" \
    "  ELSE now() + $3::int * interval '1 ms' END," \
    " updated_at = now()"

static const char patch_sql[] =
    "WITH x AS MATERIALIZED (SELECT $2::jsonb AS p) "
    PATCH_SET("x.p")
    " FROM x"
    " WHERE j.id = $1::uuid AND j.lease_owner = $4"
    " RETURNING to_jsonb(j)";

/*
 * The same for many jobs: $1 their ids, $2 {id: patch}.  No join, as for
 * take_sql below: each row is reached by its primary key (joined with the
 * patches as a set, the planner scanned the whole table for each batch).
 */
static const char patch_many_sql[] =
    "WITH x AS MATERIALIZED (SELECT $2::jsonb AS m) "
    PATCH_SET("(x.m -> j.id::text)")
    " FROM x"
    " WHERE j.id = ANY($1::uuid[]) AND j.lease_owner = $4"
    " RETURNING to_jsonb(j)";

jv
mi_jobs_patch(struct mi_db *db, const char *id, jv patch, struct mi_err *err)
{
	const char *params[4];
	char lease[32], *text = mi_json_dump(patch);
	jv row;

	jv_free(patch);
	if (text == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return jv_invalid();
	}
	snprintf(lease, sizeof(lease), "%ld", mi_jobs_lease_ms());
	params[0] = id;
	params[1] = text;
	params[2] = lease;
	params[3] = mi_jobs_owner();
	row = mi_db_json1(db, patch_sql, 4, params, err);
	free(text);
	return row;
}

jv
mi_jobs_patch_many(struct mi_db *db, jv items, struct mi_err *err)
{
	const char *params[4];
	char lease[32], *a, *text;
	jv rows, out = jv_object(), ids = jv_array(), byid = jv_object();
	int i, n = jv_array_length(jv_copy(items));

	/* One job: the single-row statement, which costs a quarter of the
	 * many-row one (0.12 against 0.49 ms at best in
	 * test/bench/pipeline.sh). */
	if (n == 1) {
		jv it = jv_array_get(items, 0);
		jv id = jv_object_get(jv_copy(it), jv_string("id"));

		jv_free(ids);
		jv_free(byid);
		if (jv_get_kind(id) != JV_KIND_STRING) {
			jv_free(id);
			jv_free(it);
			return out;
		}
		rows = mi_jobs_patch(db, jv_string_value(id),
		    jv_object_get(it, jv_string("p")), err);
		if (!jv_is_valid(rows)) {
			jv_free(id);
			jv_free(out);
			return rows;
		}
		if (jv_get_kind(rows) == JV_KIND_OBJECT)
			out = jv_object_set(out, id, rows);
		else {
			jv_free(id);
			jv_free(rows);
		}
		return out;
	}
	for (i = 0; i < n; i++) {
		jv it = jv_array_get(jv_copy(items), i);
		jv id = jv_object_get(jv_copy(it), jv_string("id"));

		if (jv_get_kind(id) == JV_KIND_STRING) {
			ids = jv_array_append(ids, jv_copy(id));
			byid = jv_object_set(byid, id, jv_object_get(it,
			    jv_string("p")));
		} else {
			jv_free(id);
			jv_free(it);
		}
	}
	jv_free(items);
	a = array_literal(ids);
	text = mi_json_dump(byid);
	jv_free(ids);
	jv_free(byid);
	if (a == NULL || text == NULL) {
		free(a);
		free(text);
		jv_free(out);
		mi_err_set(err, EX_OSERR, "out of memory");
		return jv_invalid();
	}
	snprintf(lease, sizeof(lease), "%ld", mi_jobs_lease_ms());
	params[0] = a;
	params[1] = text;
	params[2] = lease;
	params[3] = mi_jobs_owner();
	rows = mi_db_json(db, patch_many_sql, 4, params, err);
	free(a);
	free(text);
	if (!jv_is_valid(rows)) {
		jv_free(out);
		return rows;
	}
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);
		jv id = jv_object_get(jv_copy(row), jv_string("id"));

		if (jv_get_kind(id) == JV_KIND_STRING)
			out = jv_object_set(out, id, row);
		else {
			jv_free(id);
			jv_free(row);
		}
	}
	jv_free(rows);
	return out;
}

/*
 * $1 the ids, $2 {id: the owner the caller saw}.  No join: each row is
 * reached by its primary key and its expected owner read from $2, so the
 * statement costs the same for one job or ten thousand, whatever the
 * table's statistics say (joined with unnest, a fresh table was scanned
 * whole for every take, and a large take could go quadratic).
 */
static const char take_sql[] =
    "WITH x AS MATERIALIZED (SELECT $2::jsonb AS m)"
    " UPDATE app.generation_jobs j SET lease_owner = $3,"
    " lease_expires_at = now() + $4::int * interval '1 ms',"
    " updated_at = now()"
    " FROM x"
    " WHERE j.id = ANY($1::uuid[])"
    "  AND (j.status IN ('pending', 'processing') OR ($5 AND"
    "   j.status = 'completed' AND j.artifact_id IS NULL))"
    "  AND (j.lease_owner IS NULL"
    "   OR j.lease_owner = (x.m ->> j.id::text)"
    "   OR j.lease_owner = $3 OR j.lease_expires_at IS NULL"
    "   OR j.lease_expires_at < now())"
    " RETURNING to_jsonb(j)";

jv
mi_jobs_take(struct mi_db *db, jv pairs, int completed, struct mi_err *err)
{
	jv ids = jv_array(), prev = jv_object(), rows;
	const char *params[5];
	char lease[32], *a, *b;
	int i, n = jv_array_length(jv_copy(pairs));

	for (i = 0; i < n; i++) {
		jv p = jv_array_get(jv_copy(pairs), i);
		jv id = jv_array_get(jv_copy(p), 0);

		if (jv_get_kind(id) == JV_KIND_STRING) {
			ids = jv_array_append(ids, jv_copy(id));
			prev = jv_object_set(prev, id, jv_array_get(p, 1));
		} else {
			jv_free(id);
			jv_free(p);
		}
	}
	jv_free(pairs);
	a = array_literal(ids);
	b = mi_json_dump(prev);
	jv_free(ids);
	jv_free(prev);
	if (a == NULL || b == NULL) {
		free(a);
		free(b);
		mi_err_set(err, EX_OSERR, "out of memory");
		return jv_invalid();
	}
	snprintf(lease, sizeof(lease), "%ld", mi_jobs_lease_ms());
	params[0] = a;
	params[1] = b;
	params[2] = mi_jobs_owner();
	params[3] = lease;
	params[4] = completed ? "true" : "false";
	rows = mi_db_json(db, take_sql, 5, params, err);
	free(a);
	free(b);
	return rows;
}

jv
mi_jobs_get(struct mi_db *db, jv ids, struct mi_err *err)
{
	const char *params[1];
	char *a = array_literal(ids);
	jv rows;

	jv_free(ids);
	if (a == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return jv_invalid();
	}
	params[0] = a;
	rows = mi_db_json(db, "SELECT to_jsonb(j) FROM app.generation_jobs j"
	    " WHERE j.id = ANY($1::uuid[])", 1, params, err);
	free(a);
	return rows;
}

jv
mi_jobs_successor(struct mi_db *db, const char *id, struct mi_err *err)
{
	const char *params[1] = { id };

	/* By the step first: previous_job_id has no index of its own. */
	return mi_db_json1(db, "SELECT to_jsonb(j) FROM app.generation_jobs j"
	    " WHERE j.run_step_id = (SELECT p.run_step_id"
	    "  FROM app.generation_jobs p WHERE p.id = $1::uuid)"
	    " AND j.previous_job_id = $1::uuid"
	    " ORDER BY j.created_at DESC, j.id DESC LIMIT 1", 1, params, err);
}

jv
mi_jobs_renew(struct mi_db *db, jv ids, struct mi_err *err)
{
	const char *params[3];
	char lease[32], *a = array_literal(ids);
	jv rows;

	jv_free(ids);
	if (a == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return jv_invalid();
	}
	snprintf(lease, sizeof(lease), "%ld", mi_jobs_lease_ms());
	params[0] = a;
	params[1] = mi_jobs_owner();
	params[2] = lease;
	/* Rows are locked in the order claims lock them (created_at, id),
	 * so a renewal and another worker's claim never deadlock. */
	rows = mi_db_json(db, "WITH l AS (SELECT j.id FROM app.generation_jobs j"
	    "  WHERE j.id = ANY($1::uuid[]) AND j.lease_owner = $2"
	    "  ORDER BY j.created_at, j.id FOR UPDATE)"
	    " UPDATE app.generation_jobs j"
	    " SET lease_expires_at = now() + $3::int * interval '1 ms'"
	    " FROM l WHERE j.id = l.id AND j.lease_owner = $2"
	    " RETURNING to_jsonb(j.id)", 3, params, err);
	free(a);
	return rows;
}

int
mi_jobs_release(struct mi_db *db, jv ids, struct mi_err *err)
{
	const char *params[2];
	char *a = array_literal(ids);
	int r;

	jv_free(ids);
	if (a == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	params[0] = a;
	params[1] = mi_jobs_owner();
	r = mi_db_exec(db, "WITH l AS (SELECT j.id FROM app.generation_jobs j"
	    "  WHERE j.id = ANY($1::uuid[]) AND j.lease_owner = $2"
	    "  ORDER BY j.created_at, j.id FOR UPDATE)"
	    " UPDATE app.generation_jobs j"
	    " SET lease_owner = NULL, lease_expires_at = NULL,"
	    " updated_at = now()"
	    " FROM l WHERE j.id = l.id AND j.lease_owner = $2",
	    2, params, NULL, err);
	free(a);
	return r;
}

/* Appends the decimal digits of v (buffers have room to spare). */
static void
add_int(struct mi_buf *b, long long v)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	unsigned long long u = v < 0 ? 0 - (unsigned long long)v :
	    (unsigned long long)v;

	do
		*--p = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		*--p = '-';
	mi_buf_add(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

int
mi_jobs_flush(struct mi_db *db, const struct mi_jobs_tick *t, size_t n,
    jv *kept, struct mi_err *err)
{
	struct mi_buf ids = MI_BUF_INIT, att = MI_BUF_INIT, prog = MI_BUF_INIT,
	    next = MI_BUF_INIT;
	const char *params[6], *sql;
	char lease[32], sqlk[1024];
	size_t i;
	int r;

	if (kept)
		*kept = jv_array();
	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		const char *sep = i ? "," : "{";

		mi_buf_adds(&ids, sep);
		mi_buf_adds(&ids, t[i].id);
		mi_buf_adds(&att, sep);
		add_int(&att, t[i].attempts);
		mi_buf_adds(&prog, sep);
		if (t[i].progress < 0)
			mi_buf_adds(&prog, "NULL");
		else
			add_int(&prog, t[i].progress);
		mi_buf_adds(&next, sep);
		add_int(&next, t[i].next_ms);
	}
	mi_buf_adds(&ids, "}");
	mi_buf_adds(&att, "}");
	mi_buf_adds(&prog, "}");
	if (mi_buf_adds(&next, "}") == -1) {
		r = mi_err_set(err, EX_OSERR, "out of memory");
		goto out;
	}
	snprintf(lease, sizeof(lease), "%ld", mi_jobs_lease_ms());
	params[0] = ids.buf;
	params[1] = att.buf;
	params[2] = prog.buf;
	params[3] = next.buf;
	params[4] = mi_jobs_owner();
	params[5] = lease;
	/*
	 * Rows are locked in the order claims lock them (created_at, id),
	 * so this and another worker's claim never deadlock.  The locked
	 * rows carry their counters: the update joins them alone, each row
	 * by its primary key.  (Joined with the unnest again, the generic
	 * plan compared every row with every counter: a renewal of 3,770
	 * jobs took 7.2 s, against 0.1 s now.)
	 */
	sql = "WITH t AS (SELECT * FROM unnest($1::uuid[],"
	    "  $2::int[], $3::int[], $4::bigint[])"
	    "  AS t(id, attempts, progress, next_ms)),"
	    " l AS (SELECT j.id, t.attempts, t.progress, t.next_ms"
	    "  FROM app.generation_jobs j JOIN t ON t.id = j.id"
	    "  WHERE j.lease_owner = $5 ORDER BY j.created_at, j.id"
	    "  FOR UPDATE OF j)"
	    " UPDATE app.generation_jobs j"
	    " SET attempts = l.attempts,"
	    " progress = coalesce(l.progress, j.progress),"
	    " next_poll_at = to_timestamp(l.next_ms / 1000.0),"
	    " lease_expires_at = now() + $6::int * interval '1 ms',"
	    " updated_at = now()"
	    " FROM l WHERE j.id = l.id AND j.lease_owner = $5";
	if (kept == NULL) {
		r = mi_db_exec(db, sql, 6, params, NULL, err);
		goto out;
	}
	snprintf(sqlk, sizeof(sqlk), "%s RETURNING to_jsonb(j.id)", sql);
	jv_free(*kept);
	*kept = mi_db_json(db, sqlk, 6, params, err);
	r = jv_is_valid(*kept) ? 0 : -1;
out:
	mi_buf_release(&ids);
	mi_buf_release(&att);
	mi_buf_release(&prog);
	mi_buf_release(&next);
	return r;
}

jv
mi_jobs_adopt(struct mi_db *db, int n, struct mi_err *err)
{
	const char *params[3];
	char lim[16], lease[32];

	snprintf(lim, sizeof(lim), "%d", n);
	snprintf(lease, sizeof(lease), "%ld", mi_jobs_lease_ms());
	params[0] = lim;
	params[1] = mi_jobs_owner();
	params[2] = lease;
	return mi_db_json(db, "UPDATE app.generation_jobs j"
	    " SET lease_owner = $2,"
	    " lease_expires_at = now() + $3::int * interval '1 ms',"
	    " updated_at = now()"
	    " WHERE j.id IN (SELECT q.id FROM app.generation_jobs q"
	    "  WHERE q.status = 'pending' AND (q.lease_expires_at IS NULL"
	    "   OR q.lease_expires_at < now())"
	    "  ORDER BY q.created_at LIMIT $1::int FOR UPDATE SKIP LOCKED)"
	    " RETURNING to_jsonb(j)", 3, params, err);
}

/*
 * What app.provider_health said of a provider, for COOLING_MEMO_MS: a
 * burst of requests asks the database once, not once a request.  A
 * failure this process records forgets it at once; another process's
 * is seen within COOLING_MEMO_MS.
 */
#define COOLING_MEMO_MS	500
#define COOLING_MEMOS	16

static struct {
	char provider[64];
	long long until;
	int cooling;
} cooling_memo[COOLING_MEMOS];

static int
cooling_slot(const char *provider)
{
	int i, oldest = 0;

	for (i = 0; i < COOLING_MEMOS; i++) {
		if (strcmp(cooling_memo[i].provider, provider) == 0)
			return i;
		if (cooling_memo[i].until < cooling_memo[oldest].until)
			oldest = i;
	}
	if (strlen(provider) >= sizeof(cooling_memo[0].provider))
		return -1;
	snprintf(cooling_memo[oldest].provider,
	    sizeof(cooling_memo[oldest].provider), "%s", provider);
	cooling_memo[oldest].until = 0;
	return oldest;
}

int
mi_jobs_cooling(struct mi_db *db, const char *provider, struct mi_err *err)
{
	const char *params[1] = { provider };
	int r, k = cooling_slot(provider);
	long long now = mi_now_ms();
	jv v;

	if (k >= 0 && cooling_memo[k].until > now)
		return cooling_memo[k].cooling;
	v = mi_db_json1(db, "SELECT to_jsonb(h.cooldown_until > now())"
	    " FROM app.provider_health h WHERE h.provider_id = $1", 1,
	    params, err);
	if (!jv_is_valid(v))
		return -1;
	r = jv_get_kind(v) == JV_KIND_TRUE;
	jv_free(v);
	if (k >= 0) {
		cooling_memo[k].cooling = r;
		cooling_memo[k].until = now + COOLING_MEMO_MS;
	}
	return r;
}

int
mi_jobs_provider_failed(struct mi_db *db, const char *provider,
    int allowed_fails, long window_ms, long cooldown_ms, const char *what,
    struct mi_err *err)
{
	const char *params[5];
	char a[16], w[32], c[32];
	jv v;
	int r;

	snprintf(a, sizeof(a), "%d", allowed_fails);
	snprintf(w, sizeof(w), "%ld", window_ms);
	snprintf(c, sizeof(c), "%ld", cooldown_ms);
	params[0] = provider;
	params[1] = a;
	params[2] = w;
	params[3] = c;
	params[4] = what;
	if ((r = cooling_slot(provider)) >= 0)
		cooling_memo[r].until = 0;
	v = mi_db_json1(db, "SELECT to_jsonb(app.mi_provider_failed($1,"
	    " $2::int, $3::int, $4::int, $5))", 5, params, err);
	if (!jv_is_valid(v))
		return -1;
	r = jv_get_kind(v) == JV_KIND_TRUE;
	jv_free(v);
	return r;
}
