/*
 * fetch/rows.c - the rows a download reads and writes (fetch/fetch.h):
 * the job failed, released or linked, the artifact it got meanwhile, its
 * metadata, and a fresh result URL from the provider.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "artifact.h"
#include "buf.h"
#include "db.h"
#include "err.h"
#include "fetch/fetch.h"
#include "fetch/pool.h"
#include "http.h"
#include "jobs.h"
#include "json.h"
#include "mime.h"
#include "probe.h"
#include "provider.h"
#include "runner.h"
#include "steps.h"
#include "store.h"
#include "transport.h"
#include "banned.h"

jv
fetch_input(jv job)
{
	jv in = jv_object(), j = jv_object();
	static const char *const keys[] = { "id", "media_type",
		"provider_job_id", "provider_state", "attempts", "result_uri",
		NULL };
	int i;

	for (i = 0; keys[i]; i++) {
		jv v = jv_object_get(jv_copy(job), jv_string(keys[i]));

		j = jv_object_set(j, jv_string(keys[i]), jv_is_valid(v) ? v :
		    (jv_free(v), jv_null()));
	}
	in = jv_object_set(in, jv_string("request"),
	    jv_object_get(jv_copy(job), jv_string("request")));
	return jv_object_set(in, jv_string("job"), j);
}

static void
got_outcome(void *arg, jv outcome)
{
	jv *out = arg;

	jv_free(*out);
	*out = outcome;
}

/*
 * Asks the provider for the job again, for a fresh result URL.  Returns
 * the job row with the new result, or jv_null() when the provider has
 * none to give.
 */
jv
fetch_refresh(struct mi_fetch_pool *c, struct mi_provider *p, jv job)
{
	const struct mi_transport *t = mi_transport_of(p);
	struct mi_err err = MI_ERR_INIT;
	jv out = jv_null(), res, patch, row;
	const char *id = NULL, *st = NULL;
	struct mi_loop *l;
	char uri[4200];

	if (!t->polled || (l = mi_loop_new(&err)) == NULL)
		return jv_null();
	if (t->poll(l, p, fetch_input(job), NULL, got_outcome, &out, &err) ==
	    0)
		while (mi_loop_busy(l) > 0)
			if (mi_loop_wait(l, NULL, 0, 1000, &err) == -1)
				break;
	mi_loop_free(l);
	res = jv_object_get(jv_copy(out), jv_string("result"));
	if (mi_json_str(out, "status", &st, 0, NULL) != 1 ||
	    strcmp(st, "completed") != 0 ||
	    jv_get_kind(res) != JV_KIND_OBJECT ||
	    mi_json_str(res, "url", &st, 1, NULL) != 1) {
		jv_free(res);
		jv_free(out);
		return jv_null();
	}
	snprintf(uri, sizeof(uri), "%s", st);
	jv_free(out);
	patch = jv_object_set(jv_object(), jv_string("result_uri"),
	    jv_string(uri));
	patch = jv_object_set(patch, jv_string("provider_state"),
	    jv_object_set(jv_object(), jv_string("result"), res));
	mi_json_str(job, "id", &id, 0, NULL);
	row = mi_jobs_patch(c->db, id, patch, &err);
	if (!jv_is_valid(row))
		fetch_fatal(c, &err);
	return row;
}

jv
fetch_artifact_meta(jv job, struct mi_provider *p)
{
	jv m = jv_object(), meta = mi_provider_meta(p), st, res, pm;
	static const char *const keys[] = { "provider_id", "provider_job_id",
		"cost_usd", "cost_source", "media_type", "run_step_id",
		"previous_job_id", NULL };
	int i;

	m = jv_object_set(m, jv_string("job_id"),
	    jv_object_get(jv_copy(job), jv_string("id")));
	for (i = 0; keys[i]; i++) {
		jv v = jv_object_get(jv_copy(job), jv_string(keys[i]));

		if (jv_is_valid(v))
			m = jv_object_set(m, jv_string(keys[i]), v);
		else
			jv_free(v);
	}
	pm = jv_object_get(meta, jv_string("model"));
	if (jv_get_kind(pm) == JV_KIND_STRING)
		m = jv_object_set(m, jv_string("model"), pm);
	else
		jv_free(pm);
	st = jv_object_get(jv_copy(job), jv_string("provider_state"));
	res = jv_get_kind(st) == JV_KIND_OBJECT ?
	    jv_object_get(st, jv_string("result")) : (jv_free(st), jv_null());
	if (jv_get_kind(res) == JV_KIND_OBJECT) {
		jv pmeta = jv_object_get(res, jv_string("metadata"));

		if (jv_get_kind(pmeta) == JV_KIND_OBJECT)
			m = jv_object_set(m, jv_string("provider"), pmeta);
		else
			jv_free(pmeta);
	} else
		jv_free(res);
	return m;
}

/* Fails a job whose result cannot be used; returns its row. */
jv
fetch_fail_job(struct mi_fetch_pool *c, const char *id, const char *code,
    const char *msg)
{
	struct mi_err err = MI_ERR_INIT;
	jv p = jv_object(), row;

	p = jv_object_set(p, jv_string("status"), jv_string("failed"));
	p = jv_object_set(p, jv_string("error_code"), jv_string(code));
	p = jv_object_set(p, jv_string("error_message"), jv_string(msg));
	p = jv_object_set(p, jv_string("release"), jv_true());
	row = mi_jobs_patch(c->db, id, p, &err);
	if (!jv_is_valid(row))
		fetch_fatal(c, &err);
	return row;
}

/* The artifact already linked to a job, as a record. */
jv
fetch_linked_artifact(struct mi_fetch_pool *c, const char *artifact_id)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[1] = { artifact_id };
	jv a = mi_db_json1(c->db, "SELECT to_jsonb(a) FROM app.artifacts a"
	    " WHERE a.id = $1::uuid", 1, params, &err);

	if (!jv_is_valid(a))
		fetch_fatal(c, &err);
	return mi_artifact_again(a);
}

void
fetch_release(struct mi_fetch_pool *c, struct slot *s)
{
	struct mi_err err = MI_ERR_INIT;

	s->held = 0;
	if (mi_jobs_release(c->db, jv_array_append(jv_array(),
	    jv_string(s->id)), &err) == -1)
		fetch_fatal(c, &err);
}

/* The artifact a job got while this worker was fetching it, or null. */
jv
fetch_stored_meanwhile(struct mi_fetch_pool *c, const char *id,
    int *found)
{
	struct mi_err err = MI_ERR_INIT;
	const char *aid = NULL;
	jv rows = mi_jobs_get(c->db, jv_array_append(jv_array(),
	    jv_string(id)), &err), row, a = jv_null();

	if (!jv_is_valid(rows))
		fetch_fatal(c, &err);
	row = jv_array_length(jv_copy(rows)) > 0 ?
	    jv_array_get(jv_copy(rows), 0) : jv_null();
	jv_free(rows);
	if (found)
		*found = jv_get_kind(row) == JV_KIND_OBJECT;
	if (jv_get_kind(row) == JV_KIND_OBJECT &&
	    mi_json_str(row, "artifact_id", &aid, 0, NULL) == 1)
		a = fetch_linked_artifact(c, aid);
	jv_free(row);
	return a;
}
