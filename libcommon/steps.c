/*
 * steps.c - steps, their one live job chain, and the step cache (see
 * steps.h for the locking argument and the hashes).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact.h"
#include "buf.h"
#include "hash.h"
#include "json.h"
#include "names.h"
#include "steps.h"
#include "store.h"
#include "banned.h"

static int
step_name_ok(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') ||
		    (s[n] >= 'A' && s[n] <= 'Z') ||
		    (s[n] >= '0' && s[n] <= '9') || s[n] == '_' ||
		    s[n] == '.' || s[n] == '-'))
			return 0;
	return n >= 1 && n <= 255;
}

static void
lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

int
mi_step_parse(jv req, struct mi_step *s, struct mi_err *err)
{
	const char *tenant = NULL, *run = NULL, *rsid = NULL, *step = NULL;
	const char *wf = NULL, *skill = NULL, *cache = NULL, *type = NULL;
	double ttl = 0;
	int k;

	memset(s, 0, sizeof(*s));
	s->t0 = mi_now_ms();
	if (mi_json_str(req, "tenant_id", &tenant, 1, err) == -1 ||
	    mi_json_str(req, "run_id", &run, 1, err) == -1 ||
	    mi_json_str(req, "run_step_id", &rsid, 0, err) == -1 ||
	    mi_json_str(req, "step_id", &step, 0, err) == -1 ||
	    mi_json_str(req, "workflow_name", &wf, 0, err) == -1 ||
	    mi_json_str(req, "skill_id", &skill, 0, err) == -1 ||
	    mi_json_str(req, "cache", &cache, 0, err) == -1 ||
	    mi_json_str(req, "artifact_type", &type, 0, err) == -1 ||
	    (k = mi_json_num(req, "cache_ttl_sec", &ttl, 0, err)) == -1)
		return -1;
	if (!mi_name_tenant_ok(tenant))
		return mi_err_set(err, EX_DATAERR, "bad tenant_id");
	if (!mi_name_uuid_ok(run) || (rsid && !mi_name_uuid_ok(rsid)))
		return mi_err_set(err, EX_DATAERR, "run_id and run_step_id "
		    "are UUIDs");
	if (step && !step_name_ok(step))
		return mi_err_set(err, EX_DATAERR, "bad step_id '%.64s': want "
		    "[A-Za-z0-9_.-]{1,255}", step);
	if (wf && strlen(wf) > 255)
		return mi_err_set(err, EX_DATAERR, "workflow_name is longer "
		    "than 255 characters");
	if (skill && strlen(skill) > 64)
		return mi_err_set(err, EX_DATAERR, "skill_id is longer than "
		    "64 characters");
	if (cache == NULL || strcmp(cache, "global") == 0)
		s->cache = MI_STEP_CACHE_GLOBAL;
	else if (strcmp(cache, "run_only") == 0)
		s->cache = MI_STEP_CACHE_RUN_ONLY;
	else if (strcmp(cache, "off") == 0)
		s->cache = MI_STEP_CACHE_OFF;
	else
		return mi_err_set(err, EX_DATAERR, "bad cache '%.32s': want "
		    "global, run_only or off", cache);
	if (k == 1) {
		if (!(ttl >= 1 && ttl <= 3650.0 * 86400))
			return mi_err_set(err, EX_DATAERR, "cache_ttl_sec is "
			    "a number of seconds, 1 to 10 years");
		s->ttl_sec = (long long)ttl;
	}
	snprintf(s->tenant, sizeof(s->tenant), "%s", tenant);
	snprintf(s->run, sizeof(s->run), "%s", run);
	lower(s->run);
	if (rsid) {
		snprintf(s->id, sizeof(s->id), "%s", rsid);
		lower(s->id);
		s->given_id = 1;
	} else
		mi_name_uuid_new(s->id);
	if (step)
		snprintf(s->step_id, sizeof(s->step_id), "%s", step);
	else if (rsid)
		snprintf(s->step_id, sizeof(s->step_id), "%s", s->id);
	else if (type && step_name_ok(type))
		snprintf(s->step_id, sizeof(s->step_id), "%s", type);
	else if (type)
		return mi_err_set(err, EX_DATAERR, "bad artifact_type "
		    "'%.64s' for a step_id: want [A-Za-z0-9_.-]{1,255}", type);
	else
		snprintf(s->step_id, sizeof(s->step_id), "%s", s->id);
	s->named = step || rsid || type;
	if (!s->named)
		s->cache = MI_STEP_CACHE_OFF;
	snprintf(s->workflow, sizeof(s->workflow), "%s", wf ? wf : "");
	snprintf(s->skill, sizeof(s->skill), "%s", skill ? skill : "");
	s->attempt = 1;
	return 0;
}

/* A reference image by its content: a stored asset's hash is in its
 * path; anything else is known only by its URL. */
static jv
canonical_ref(const char *ref)
{
	const char *at = strstr(ref, "/api/assets/");
	struct mi_asset_path ap;
	char path[2048], out[160];
	size_t n;

	if (at != NULL) {
		n = strcspn(at, "?#");
		if (n < sizeof(path)) {
			memcpy(path, at, n);
			path[n] = '\0';
			if (mi_asset_path_parse(path, &ap, NULL) == 0) {
				snprintf(out, sizeof(out), "sha256:%s",
				    ap.hash);
				return jv_string(out);
			}
		}
	}
	return jv_string(ref);
}

void
mi_step_inputs(struct mi_step *s, jv req, jv providers)
{
	jv in = jv_object(), params, v;
	struct mi_buf key = MI_BUF_INIT;
	const char *ref = NULL;
	char *text;

	params = jv_object_get(jv_copy(req), jv_string("params"));
	if (jv_get_kind(params) != JV_KIND_OBJECT) {
		jv_free(params);
		params = jv_object();
	}
	if (mi_json_str(params, "reference_image", &ref, 0, NULL) == 1)
		params = jv_object_set(params, jv_string("reference_image"),
		    canonical_ref(ref));
	v = jv_object_get(jv_copy(req), jv_string("media_type"));
	in = jv_object_set(in, jv_string("media_type"), jv_is_valid(v) ? v :
	    (jv_free(v), jv_null()));
	v = jv_object_get(jv_copy(req), jv_string("prompt"));
	in = jv_object_set(in, jv_string("prompt"), jv_is_valid(v) ? v :
	    (jv_free(v), jv_null()));
	in = jv_object_set(in, jv_string("params"), params);
	in = jv_object_set(in, jv_string("providers"), jv_copy(providers));
	v = jv_dump_string(in, JV_PRINT_SORTED);
	text = (char *)jv_string_value(v);
	mi_sha256_hex(text, strlen(text), s->input_hash);
	jv_free(v);
	/* NUL-separated: no two different steps give the same bytes. */
	mi_buf_add(&key, s->tenant, strlen(s->tenant) + 1);
	mi_buf_add(&key, s->workflow, strlen(s->workflow) + 1);
	mi_buf_add(&key, s->step_id, strlen(s->step_id) + 1);
	mi_buf_add(&key, s->input_hash, strlen(s->input_hash));
	mi_sha256_hex(key.buf, key.len, s->cache_key);
	mi_buf_release(&key);
}

int
mi_step_is_artifact(jv rec)
{
	jv h, st;
	int r;

	if (jv_get_kind(rec) != JV_KIND_OBJECT)
		return 0;
	h = jv_object_get(jv_copy(rec), jv_string("content_hash"));
	st = jv_object_get(jv_copy(rec), jv_string("status"));
	r = jv_get_kind(h) == JV_KIND_STRING && !jv_is_valid(st);
	jv_free(h);
	jv_free(st);
	return r;
}

static const char *const cache_names[] = { "global", "run_only", "off" };

/* The run's row and the step's, each made when missing, in one
 * statement (the run's insert is there for the step's foreign key). */
static const char step_sql[] =
    "WITH r AS (INSERT INTO app.runs (id, tenant_id, workflow_name, status,"
    "  started_at) VALUES ($2::uuid, $3, $6, 'running', now())"
    "  ON CONFLICT (id) DO NOTHING)"
    " INSERT INTO app.run_steps (id, run_id, tenant_id, step_id, skill_id,"
    " workflow_name) VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6)"
    " ON CONFLICT DO NOTHING";

/* The step row, locked. */
static const char lock_id_sql[] =
    "SELECT jsonb_build_object('step', to_jsonb(s))"
    " FROM app.run_steps s WHERE s.id = $1::uuid FOR UPDATE";

static const char lock_name_sql[] =
    "SELECT jsonb_build_object('step', to_jsonb(s))"
    " FROM app.run_steps s WHERE s.run_id = $1::uuid AND s.step_id = $2"
    " FOR UPDATE";

/* The newest live entry for the key that this run may use, with the
 * artifact it names and the cost of the job that made the bytes; K, T,
 * R, S: the parameters of the key, tenant, run and cache scope. */
#define LOOKUP_SQL(K, T, R, S) \
    "SELECT jsonb_build_object('artifact', to_jsonb(a)," \
    "  'job_id', g.id, 'cost_usd', coalesce(g.cost_usd, 0)," \
    "  'provider_id', g.provider_id, 'model', g.provider_model)" \
    " FROM app.step_cache c" \
    " JOIN app.artifacts a ON a.id = (c.artifact_ids->>0)::uuid" \
    "  AND a.tenant_id = c.tenant_id" \
    " LEFT JOIN app.generation_jobs g ON g.id = coalesce(a.job_id," \
    "  CASE WHEN a.metadata->>'job_id' ~ '^[0-9a-f-]{36}$'" \
    "  THEN (a.metadata->>'job_id')::uuid END)" \
    " WHERE c.cache_key = " K " AND c.tenant_id = " T \
    "  AND jsonb_typeof(c.artifact_ids) = 'array'" \
    "  AND (c.expires_at IS NULL OR c.expires_at > now())" \
    "  AND (c.run_id = " R "::uuid OR (" S " = 'global'" \
    "   AND c.scope = 'global'))"

static const char lookup_sql[] = LOOKUP_SQL("$1", "$2", "$3", "$4");

/* In a statement of its own, after the lock (it sees every job written
 * by whoever held the lock before): the step's last job, its artifact and
 * the step cache's entry ($2..$5; $6: whether to look), in one round
 * trip. */
static const char last_job_cache_sql[] =
    "WITH j AS (SELECT * FROM app.generation_jobs j"
    "  WHERE j.run_step_id = $1::uuid"
    "  ORDER BY j.created_at DESC, j.id DESC LIMIT 1)"
    " SELECT jsonb_build_object('job', (SELECT to_jsonb(j) FROM j),"
    "  'artifact', (SELECT to_jsonb(a) FROM j JOIN app.artifacts a"
    "   ON a.id = j.artifact_id),"
    "  'cache', CASE WHEN $6::boolean THEN (" LOOKUP_SQL("$2", "$3", "$4",
    "$5") " LIMIT 1) END)";

static const char artifact_sql[] =
    "SELECT to_jsonb(a) FROM app.artifacts a WHERE a.id = $1::uuid";

static const char start_sql[] =
    "UPDATE app.run_steps s SET status = 'pending', cache_hit = false,"
    " attempt = $2::int, input_hash = $3, workflow_name = $4,"
    " skill_id = CASE WHEN $5 <> '' THEN $5 ELSE s.skill_id END,"
    " output_artifact_ids = NULL, started_at = NULL, ended_at = NULL,"
    " duration_ms = NULL, error = NULL,"
    " debug = s.debug || jsonb_build_object('cache', $6::jsonb),"
    " updated_at = now()"
    " WHERE s.id = $1::uuid";

static const char hit_sql[] =
    "UPDATE app.run_steps s SET status = 'completed', cache_hit = true,"
    " attempt = $2::int, input_hash = $3, workflow_name = $4,"
    " skill_id = CASE WHEN $5 <> '' THEN $5 ELSE s.skill_id END,"
    " output_artifact_ids = jsonb_build_array($6::uuid),"
    " started_at = now(), ended_at = now(), duration_ms = $7::int,"
    " error = NULL, debug = s.debug || $8::jsonb, updated_at = now()"
    " WHERE s.id = $1::uuid";

static const char fail_sql[] =
    "UPDATE app.run_steps s SET status = 'failed',"
    " started_at = coalesce(s.started_at, now()), ended_at = now(),"
    " duration_ms = $4::int,"
    " error = jsonb_build_object('code', $2::text, 'message', $3::text,"
    "  'attempt', s.attempt, 'timestamp', now(), 'details',"
    "  jsonb_build_object('stage', 'admission')),"
    " updated_at = now()"
    " WHERE s.id = $1::uuid";

static const char cache_put_sql[] =
    "INSERT INTO app.step_cache AS c (cache_key, tenant_id, workflow_name,"
    " step_id, input_hash, artifact_ids, scope, run_id, expires_at)"
    " SELECT s.debug->'cache'->>'key', s.tenant_id, s.workflow_name,"
    "  s.step_id, s.input_hash, jsonb_build_array($2::uuid),"
    "  s.debug->'cache'->>'scope', s.run_id,"
    "  now() + (s.debug->'cache'->>'ttl_sec')::bigint * interval '1 s'"
    " FROM app.generation_jobs j JOIN app.run_steps s ON s.id = j.run_step_id"
    " WHERE j.id = $1::uuid AND j.step_attempt = s.attempt"
    "  AND s.input_hash IS NOT NULL"
    "  AND s.debug->'cache'->>'key' IS NOT NULL"
    "  AND s.debug->'cache'->>'scope' IN ('global', 'run_only')"
    " ON CONFLICT (cache_key) DO UPDATE SET"
    "  artifact_ids = EXCLUDED.artifact_ids, scope = EXCLUDED.scope,"
    "  run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at,"
    "  input_hash = EXCLUDED.input_hash, updated_at = now()"
    " WHERE c.scope = 'run_only' OR EXCLUDED.scope = 'global'"
    "  OR c.expires_at <= now()";

static struct mi_store *store;
static int store_tried;

/* The store cache hits are linked in, opened once (NULL: none). */
static struct mi_store *
cache_store(void)
{
	struct mi_err serr = MI_ERR_INIT;

	if (!store_tried) {
		store_tried = 1;
		store = mi_store_open(NULL, &serr);
	}
	return store;
}

static jv
cache_info(const struct mi_step *s, int hit)
{
	jv c = jv_object();

	c = jv_object_set(c, jv_string("key"), s->cache == MI_STEP_CACHE_OFF ?
	    jv_null() : jv_string(s->cache_key));
	c = jv_object_set(c, jv_string("scope"),
	    jv_string(cache_names[s->cache]));
	c = jv_object_set(c, jv_string("hit"), hit ? jv_true() : jv_false());
	if (s->ttl_sec > 0)
		c = jv_object_set(c, jv_string("ttl_sec"),
		    jv_number((double)s->ttl_sec));
	return c;
}

static int
db_fail(struct mi_db *db, jv v)
{
	jv_free(v);
	mi_db_rollback(db);
	return -1;
}

/*
 * The statements of mi_step_prefetch: the runs' and steps' rows made
 * when missing, in one statement; the steps locked, each in the order of
 * the requests, as one request at a time locks them; then, in a statement
 * of its own after the locks, each step's last job, its artifact and the
 * cache's entry.
 */
static const char steps_many_sql[] =
    "WITH v AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS v(k int,"
    "  id uuid, run uuid, tenant text, step_id text, skill text,"
    "  workflow text)),"
    " r AS (INSERT INTO app.runs (id, tenant_id, workflow_name, status,"
    "  started_at) SELECT DISTINCT ON (v.run) v.run, v.tenant, v.workflow,"
    "  'running', now() FROM v ORDER BY v.run, v.k"
    "  ON CONFLICT (id) DO NOTHING)"
    " INSERT INTO app.run_steps (id, run_id, tenant_id, step_id, skill_id,"
    " workflow_name) SELECT v.id, v.run, v.tenant, v.step_id, v.skill,"
    " v.workflow FROM v ORDER BY v.k"
    " ON CONFLICT DO NOTHING";

static const char lock_many_sql[] =
    "SELECT jsonb_build_object('k', v.k, 'step', to_jsonb(s))"
    " FROM jsonb_to_recordset($1::jsonb) AS v(k int, id uuid, run uuid,"
    "  step_id text, by_id boolean)"
    " CROSS JOIN LATERAL (SELECT * FROM app.run_steps s"
    "  WHERE s.id = CASE WHEN v.by_id THEN v.id ELSE (SELECT n.id"
    "   FROM app.run_steps n WHERE n.run_id = v.run"
    "   AND n.step_id = v.step_id) END FOR UPDATE) s";

static const char read_many_sql[] =
    "SELECT jsonb_build_object('k', v.k,"
    "  'job', CASE WHEN j.id IS NOT NULL THEN to_jsonb(j) END,"
    "  'artifact', (SELECT to_jsonb(a) FROM app.artifacts a"
    "   WHERE a.id = j.artifact_id),"
    "  'cache', CASE WHEN v.look THEN (" LOOKUP_SQL("v.key", "v.tenant",
    "v.run", "v.scope") " LIMIT 1) END)"
    " FROM jsonb_to_recordset($1::jsonb) AS v(k int, id uuid, key text,"
    "  tenant text, run text, scope text, look boolean)"
    " LEFT JOIN LATERAL (SELECT * FROM app.generation_jobs j"
    "  WHERE j.run_step_id = v.id"
    "  ORDER BY j.created_at DESC, j.id DESC LIMIT 1) j ON true";

/* The k of row (borrowed), 0 <= k < n, or -1. */
static int
row_k(jv row, int n)
{
	double d = -1;

	if (mi_json_num(row, "k", &d, 0, NULL) != 1 || d < 0 || d >= n ||
	    d != (int)d)
		return -1;
	return (int)d;
}

/* Runs sql with the array items (consumed) as its JSON parameter. */
static jv
json_rows(struct mi_db *db, const char *sql, jv items, int defer,
    struct mi_err *err)
{
	const char *params[1];
	char *text = mi_json_dump(items);
	jv rows;

	jv_free(items);
	if (text == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return jv_invalid();
	}
	params[0] = text;
	if (defer)
		rows = mi_db_defer(db, sql, 1, params, err) == -1 ?
		    jv_invalid() : jv_null();
	else
		rows = mi_db_json(db, sql, 1, params, err);
	free(text);
	return rows;
}

int
mi_step_prefetch(struct mi_db *db, struct mi_step *const *sv, int n,
    jv *pre, struct mi_err *err)
{
	jv items = jv_array(), rows, lock[1024];
	int i, k, m, same = 0;

	if (n > 1024)
		return mi_err_set(err, EX_SOFTWARE, "steps: more than 1024 "
		    "admitted at once");
	for (i = 0; i < n; i++) {
		jv it = jv_object();

		pre[i] = jv_null();
		lock[i] = jv_null();
		it = jv_object_set(it, jv_string("k"), jv_number(i));
		it = jv_object_set(it, jv_string("id"), jv_string(sv[i]->id));
		it = jv_object_set(it, jv_string("run"), jv_string(sv[i]->run));
		it = jv_object_set(it, jv_string("tenant"),
		    jv_string(sv[i]->tenant));
		it = jv_object_set(it, jv_string("step_id"),
		    jv_string(sv[i]->step_id));
		it = jv_object_set(it, jv_string("skill"),
		    jv_string(sv[i]->skill));
		it = jv_object_set(it, jv_string("workflow"),
		    jv_string(sv[i]->workflow));
		it = jv_object_set(it, jv_string("by_id"),
		    jv_bool(sv[i]->given_id || !sv[i]->named));
		items = jv_array_append(items, it);
	}
	/* Sent with the locks, in one round trip. */
	rows = json_rows(db, steps_many_sql, jv_copy(items), 1, err);
	if (!jv_is_valid(rows)) {
		jv_free(items);
		return -1;
	}
	rows = json_rows(db, lock_many_sql, items, 0, err);
	if (!jv_is_valid(rows))
		return -1;
	m = jv_array_length(jv_copy(rows));
	items = jv_array();
	for (i = 0; i < m; i++) {
		jv row = jv_array_get(jv_copy(rows), i), it, step;
		const char *id = NULL;
		int j;

		if ((k = row_k(row, n)) < 0 ||
		    jv_get_kind(lock[k]) != JV_KIND_NULL) {
			jv_free(row);
			same = 1;
			continue;
		}
		step = jv_object_get(jv_copy(row), jv_string("step"));
		mi_json_str(step, "id", &id, 0, NULL);
		/* Two requests of one step: the second must see the
		 * first's job, which one read cannot show. */
		for (j = 0; id && j < n && !same; j++)
			if (jv_get_kind(lock[j]) == JV_KIND_OBJECT) {
				const char *o = NULL;

				mi_json_str(lock[j], "id", &o, 0, NULL);
				if (o && strcmp(o, id) == 0)
					same = 1;
			}
		if (id == NULL) {
			jv_free(step);
			jv_free(row);
			same = 1;
			continue;
		}
		it = jv_object();
		it = jv_object_set(it, jv_string("k"), jv_number(k));
		it = jv_object_set(it, jv_string("id"), jv_string(id));
		it = jv_object_set(it, jv_string("key"),
		    jv_string(sv[k]->cache_key));
		it = jv_object_set(it, jv_string("tenant"),
		    jv_string(sv[k]->tenant));
		it = jv_object_set(it, jv_string("run"), jv_string(sv[k]->run));
		it = jv_object_set(it, jv_string("scope"),
		    jv_string(cache_names[sv[k]->cache]));
		it = jv_object_set(it, jv_string("look"),
		    jv_bool(sv[k]->cache != MI_STEP_CACHE_OFF &&
		    cache_store() != NULL));
		items = jv_array_append(items, it);
		lock[k] = step;
		jv_free(row);
	}
	jv_free(rows);
	rows = jv_null();
	if (!same && jv_array_length(jv_copy(items)) > 0) {
		rows = json_rows(db, read_many_sql, items, 0, err);
		items = jv_null();
	}
	jv_free(items);
	if (!jv_is_valid(rows)) {
		for (i = 0; i < n; i++)
			jv_free(lock[i]);
		return -1;
	}
	m = jv_get_kind(rows) == JV_KIND_ARRAY ?
	    jv_array_length(jv_copy(rows)) : 0;
	for (i = 0; i < m; i++) {
		jv row = jv_array_get(jv_copy(rows), i);

		if ((k = row_k(row, n)) < 0 ||
		    jv_get_kind(lock[k]) != JV_KIND_OBJECT ||
		    jv_get_kind(pre[k]) != JV_KIND_NULL) {
			jv_free(row);
			same = 1;
			continue;
		}
		pre[k] = jv_object_set(jv_object_set(jv_object(),
		    jv_string("lock"), jv_object_set(jv_object(), jv_string("step"),
		    jv_copy(lock[k]))),
		    jv_string("last"), jv_object_delete(row, jv_string("k")));
	}
	jv_free(rows);
	for (i = 0; i < n; i++)
		jv_free(lock[i]);
	return same ? 1 : 0;
}

/*
 * A cache hit: the entry's bytes linked into this run, a new artifact row,
 * the step completed.  Returns 1 with *out, 0 on a miss (nothing usable
 * in the cache), -1 when the database failed.
 */
static int
cache_hit(struct mi_db *db, struct mi_step *s, jv req, jv pre, jv *out,
    struct mi_err *err)
{
	const char *params[8];
	struct mi_err serr = MI_ERR_INIT;
	struct mi_store_req sr;
	struct mi_store_result res;
	const char *hash = NULL, *uri = NULL, *ext, *type = NULL, *aid = NULL;
	const char *skill = NULL, *srcrun = NULL;
	char att[16], dur[16], *dbg;
	jv hit, a, meta, extra, art, c, d;
	double saved = 0;
	int rc = 0;

	if (s->cache == MI_STEP_CACHE_OFF || cache_store() == NULL) {
		jv_free(pre);
		return 0;
	}
	if (jv_is_valid(pre))
		hit = pre;	/* looked up with the step's last job */
	else {
		jv_free(pre);
		params[0] = s->cache_key;
		params[1] = s->tenant;
		params[2] = s->run;
		params[3] = cache_names[s->cache];
		hit = mi_db_json1(db, lookup_sql, 4, params, err);
		if (!jv_is_valid(hit))
			return -1;
	}
	if (jv_get_kind(hit) != JV_KIND_OBJECT) {
		jv_free(hit);
		return 0;
	}
	a = jv_object_get(jv_copy(hit), jv_string("artifact"));
	mi_json_num(hit, "cost_usd", &saved, 0, NULL);
	if (mi_json_str(a, "content_hash", &hash, 1, NULL) != 1 ||
	    mi_json_str(a, "uri", &uri, 1, NULL) != 1 ||
	    (ext = strrchr(uri, '.')) == NULL)
		goto out;
	ext++;
	if (mi_json_str(req, "artifact_type", &type, 0, NULL) != 1 &&
	    mi_json_str(req, "media_type", &type, 1, NULL) != 1)
		goto out;
	memset(&sr, 0, sizeof(sr));
	sr.tenant = s->tenant;
	sr.run = s->run;
	sr.type = type;
	/* A copy that went away (or a type that cannot take it) is a miss:
	 * the step runs as if nothing were cached. */
	if (mi_store_link(store, &sr, hash, ext, &res, &serr) == -1)
		goto out;
	meta = jv_object_get(jv_copy(a), jv_string("metadata"));
	if (jv_get_kind(meta) != JV_KIND_OBJECT) {
		jv_free(meta);
		meta = jv_object();
	}
	mi_json_str(a, "id", &aid, 0, NULL);
	mi_json_str(a, "run_id", &srcrun, 0, NULL);
	c = cache_info(s, 1);
	c = jv_object_set(c, jv_string("source_artifact_id"),
	    aid ? jv_string(aid) : jv_null());
	c = jv_object_set(c, jv_string("source_run_id"),
	    srcrun ? jv_string(srcrun) : jv_null());
	c = jv_object_set(c, jv_string("source_job_id"),
	    jv_object_get(jv_copy(hit), jv_string("job_id")));
	c = jv_object_set(c, jv_string("saved_usd"), jv_number(saved));
	meta = jv_object_set(meta, jv_string("cost_usd"), jv_number(0));
	meta = jv_object_set(meta, jv_string("cost_source"),
	    jv_string("cache"));
	meta = jv_object_set(meta, jv_string("run_step_id"),
	    jv_string(s->id));
	meta = jv_object_set(meta, jv_string("cache"), jv_copy(c));
	extra = jv_object();
	if (mi_json_str(req, "skill_id", &skill, 0, NULL) == 1)
		extra = jv_object_set(extra, jv_string("skill_id"),
		    jv_string(skill));
	extra = jv_object_set(extra, jv_string("metadata"), meta);
	extra = jv_object_set(extra, jv_string("run_step_id"),
	    jv_string(s->id));
	extra = jv_object_set(extra, jv_string("job_id"),
	    jv_object_get(jv_copy(hit), jv_string("job_id")));
	extra = jv_object_set(extra, jv_string("cache_hit"), jv_true());
	art = mi_artifact_record(db, &sr, &res, extra, err);
	if (!jv_is_valid(art)) {
		jv_free(c);
		rc = -1;
		goto out;
	}
	art = jv_object_set(art, jv_string("cache_hit"), jv_true());
	mi_json_str(art, "id", &aid, 1, NULL);
	d = jv_object();
	d = jv_object_set(d, jv_string("cache"), c);
	d = jv_object_set(d, jv_string("provider"),
	    jv_object_get(jv_copy(hit), jv_string("provider_id")));
	d = jv_object_set(d, jv_string("model"),
	    jv_object_get(jv_copy(hit), jv_string("model")));
	d = jv_object_set(d, jv_string("estimated_cost_usd"), jv_number(0));
	d = jv_object_set(d, jv_string("reported_cost_usd"), jv_number(0));
	d = jv_object_set(d, jv_string("cost_usd"), jv_number(0));
	dbg = mi_json_dump(d);
	jv_free(d);
	snprintf(att, sizeof(att), "%d", s->attempt);
	snprintf(dur, sizeof(dur), "%lld", mi_now_ms() - s->t0);
	params[0] = s->id;
	params[1] = att;
	params[2] = s->input_hash;
	params[3] = s->workflow;
	params[4] = s->skill;
	params[5] = aid;
	params[6] = dur;
	params[7] = dbg ? dbg : "{}";
	rc = mi_db_exec(db, hit_sql, 8, params, NULL, err) == -1 ? -1 : 1;
	free(dbg);
	if (rc == 1)
		*out = art;
	else
		jv_free(art);
out:
	jv_free(a);
	jv_free(hit);
	return rc;
}

/*
 * The step's rows read: row {step: the locked step row} (consumed);
 * last: {job, artifact, cache} read after the lock, or jv_invalid() to
 * read it now.  The rest of mi_step_admit.
 */
static int
admit_rows(struct mi_db *db, struct mi_step *s, jv req, jv row, jv last,
    jv *out, char *msg, size_t msgsz, struct mi_err *err)
{
	const char *params[6];
	const char *v = NULL, *st = NULL;
	char att[16], *ci;
	jv step, job, civ, jart, pre;
	double d = 1;
	int k, retry = 0, look;

	step = jv_object_get(jv_copy(row), jv_string("step"));
	if (jv_get_kind(step) != JV_KIND_OBJECT) {
		snprintf(msg, msgsz, "step '%.64s' of run %s is another "
		    "run_step_id than %s", s->step_id, s->run, s->id);
		jv_free(step);
		jv_free(row);
		jv_free(last);
		mi_db_rollback(db);
		return -2;
	}
	/* A step is never shared across tenants (the run row is the
	 * first writer's; the platform may reuse a run id). */
	if (mi_json_str(step, "tenant_id", &v, 0, NULL) != 1 ||
	    strcmp(v, s->tenant) != 0) {
		snprintf(msg, msgsz, "step %s belongs to another tenant", s->id);
		k = -2;
	} else if (mi_json_str(step, "run_id", &v, 0, NULL) != 1 ||
	    strcmp(v, s->run) != 0) {
		snprintf(msg, msgsz, "run_step_id %s is a step of run %s, not "
		    "%s", s->id, v ? v : "?", s->run);
		k = -2;
	} else if (mi_json_str(step, "step_id", &v, 0, NULL) != 1 ||
	    (s->named && strcmp(v, s->step_id) != 0 && !(s->given_id &&
	    strcmp(s->step_id, s->id) == 0))) {
		snprintf(msg, msgsz, "run_step_id %s is step '%.64s', not "
		    "'%.64s'", s->id, v ? v : "?", s->step_id);
		k = -2;
	} else
		k = 0;
	if (k == -2) {
		jv_free(step);
		jv_free(row);
		jv_free(last);
		mi_db_rollback(db);
		return -2;
	}
	/* The row names the step from now on. */
	mi_json_str(step, "id", &v, 1, NULL);
	snprintf(s->id, sizeof(s->id), "%s", v);
	mi_json_str(step, "step_id", &v, 1, NULL);
	snprintf(s->step_id, sizeof(s->step_id), "%s", v);
	mi_json_num(step, "attempt", &d, 0, NULL);
	s->attempt = d >= 1 ? (int)d : 1;
	s->other_inputs = mi_json_str(step, "input_hash", &v, 0, NULL) == 1 &&
	    strcmp(v, s->input_hash) != 0;
	jv_free(row);
	look = s->cache != MI_STEP_CACHE_OFF && cache_store() != NULL;
	params[0] = s->id;
	params[1] = s->cache_key;
	params[2] = s->tenant;
	params[3] = s->run;
	params[4] = cache_names[s->cache];
	params[5] = look ? "true" : "false";
	if (jv_is_valid(last))
		row = last;
	else
		row = mi_db_json1(db, last_job_cache_sql, 6, params, err);
	if (!jv_is_valid(row)) {
		jv_free(step);
		return db_fail(db, row);
	}
	job = jv_object_get(jv_copy(row), jv_string("job"));
	jart = jv_object_get(jv_copy(row), jv_string("artifact"));
	pre = look ? jv_object_get(jv_copy(row), jv_string("cache")) :
	    jv_invalid();
	jv_free(row);
	if (jv_get_kind(job) == JV_KIND_OBJECT) {
		mi_json_str(job, "status", &st, 1, NULL);
		if (st && (strcmp(st, "pending") == 0 ||
		    strcmp(st, "processing") == 0 ||
		    strcmp(st, "completed") == 0)) {
			const char *aid = NULL;

			jv_free(step);
			jv_free(pre);
			if (mi_json_str(job, "artifact_id", &aid, 0, NULL) ==
			    1 && jv_get_kind(jart) == JV_KIND_OBJECT) {
				jv_free(job);
				*out = mi_artifact_again(jart);
				return mi_step_end(db, 1, err) == -1 ?
				    -1 : MI_STEP_ARTIFACT;
			}
			jv_free(jart);
			/* The next program must not take the lease from its
			 * live owner: it waits for the job instead. */
			job = jv_object_set(job, jv_string("lease_owner"),
			    jv_null());
			*out = jv_object_set(job, jv_string("reused"),
			    jv_true());
			return mi_step_end(db, 1, err) == -1 ? -1 : MI_STEP_JOB;
		}
		jv_free(jart);
		retry = 1;
	} else {
		const char *sst = NULL;

		jv_free(jart);
		/* No job: a cache hit of this step answers again; a step
		 * that failed before any job gets a new attempt. */
		mi_json_str(step, "status", &sst, 0, NULL);
		if (sst && strcmp(sst, "completed") == 0) {
			jv ids = jv_object_get(jv_copy(step),
			    jv_string("output_artifact_ids"));
			jv first = jv_get_kind(ids) == JV_KIND_ARRAY &&
			    jv_array_length(jv_copy(ids)) > 0 ?
			    jv_array_get(jv_copy(ids), 0) : jv_null();

			jv_free(ids);
			if (jv_get_kind(first) == JV_KIND_STRING) {
				params[0] = jv_string_value(first);
				row = mi_db_json1(db, artifact_sql, 1, params,
				    err);
				jv_free(first);
				if (!jv_is_valid(row)) {
					jv_free(job);
					jv_free(step);
					jv_free(pre);
					return db_fail(db, row);
				}
				if (jv_get_kind(row) == JV_KIND_OBJECT) {
					jv_free(job);
					jv_free(step);
					jv_free(pre);
					*out = mi_artifact_again(row);
					return mi_step_end(db, 1, err) == -1 ?
					    -1 : MI_STEP_ARTIFACT;
				}
				jv_free(row);
			} else
				jv_free(first);
		}
		if (sst && strcmp(sst, "failed") == 0)
			retry = 1;
	}
	jv_free(job);
	jv_free(step);
	if (retry)
		s->attempt++;
	if ((k = cache_hit(db, s, req, pre, out, err)) != 0)
		return k == -1 ? db_fail(db, jv_null()) :
		    mi_step_end(db, 1, err) == -1 ? -1 : MI_STEP_ARTIFACT;
	civ = cache_info(s, 0);
	ci = mi_json_dump(civ);
	jv_free(civ);
	snprintf(att, sizeof(att), "%d", s->attempt);
	params[0] = s->id;
	params[1] = att;
	params[2] = s->input_hash;
	params[3] = s->workflow;
	params[4] = s->skill;
	params[5] = ci ? ci : "{}";
	/* Sent with the job's insert (or the step's failure). */
	k = mi_db_defer(db, start_sql, 6, params, err);
	free(ci);
	if (k == -1)
		return db_fail(db, jv_null());
	return MI_STEP_NEW;
}

int
mi_step_admit(struct mi_db *db, struct mi_step *s, jv req, jv *out,
    char *msg, size_t msgsz, struct mi_err *err)
{
	const char *params[6];
	jv row;

	*out = jv_null();
	msg[0] = '\0';
	if (mi_db_begin(db, err) == -1)
		return -1;
	params[0] = s->id;
	params[1] = s->run;
	params[2] = s->tenant;
	params[3] = s->step_id;
	params[4] = s->skill;
	params[5] = s->workflow;
	/* Sent with the lock below, in one round trip. */
	if (mi_db_defer(db, step_sql, 6, params, err) == -1)
		return db_fail(db, jv_null());
	if (s->given_id || !s->named) {
		params[0] = s->id;
		row = mi_db_json1(db, lock_id_sql, 1, params, err);
	} else {
		params[0] = s->run;
		params[1] = s->step_id;
		row = mi_db_json1(db, lock_name_sql, 2, params, err);
	}
	if (!jv_is_valid(row))
		return db_fail(db, row);
	return admit_rows(db, s, req, row, jv_invalid(), out, msg, msgsz, err);
}

int
mi_step_admit_read(struct mi_db *db, struct mi_step *s, jv req, jv pre,
    jv *out, char *msg, size_t msgsz, struct mi_err *err)
{
	jv lock;

	*out = jv_null();
	msg[0] = '\0';
	if (mi_db_begin(db, err) == -1) {
		jv_free(pre);
		return -1;
	}
	lock = jv_object_get(jv_copy(pre), jv_string("lock"));
	return admit_rows(db, s, req, lock, jv_object_get(pre,
	    jv_string("last")), out, msg, msgsz, err);
}


int
mi_step_fail(struct mi_db *db, const struct mi_step *s, const char *code,
    const char *msg, struct mi_err *err)
{
	const char *params[4];
	char dur[24];

	snprintf(dur, sizeof(dur), "%lld", mi_now_ms() - s->t0);
	params[0] = s->id;
	params[1] = code;
	params[2] = msg;
	params[3] = dur;
	return mi_db_exec(db, fail_sql, 4, params, NULL, err);
}

int
mi_step_end(struct mi_db *db, int ok, struct mi_err *err)
{
	if (ok)
		return mi_db_commit(db, err);
	mi_db_rollback(db);
	return 0;
}

int
mi_step_cache_put(struct mi_db *db, const char *job_id,
    const char *artifact_id, struct mi_err *err)
{
	const char *params[2] = { job_id, artifact_id };

	return mi_db_defer(db, cache_put_sql, 2, params, err);
}
