/*
 * engine/admit.c - admission: a request record becomes a job.
 *
 * A request's shape is checked and its candidates are read from it or
 * from the routing table (provider, then fallbacks).  Its step is
 * admitted first: a step already done is answered with its job or
 * artifact, and no new job is made.  Otherwise the first candidate that
 * validates the request and is not cooling down is chosen, and the job
 * row is written before the job is in hand (enqueue), to wait for a slot
 * in its group.  A request that cannot be admitted goes back out as an
 * error record, never dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jobs.h"
#include "json.h"
#include "paths.h"
#include "provider.h"
#include "steps.h"
#include "engine/engine.h"
#include "banned.h"

/* Choosing a provider. */

static jv
routing(struct mi_runner *r)
{
	char path[1024];
	const char *file = getenv("MI_ROUTING_FILE");
	FILE *fp;

	if (jv_is_valid(r->routing))
		return jv_copy(r->routing);
	if (file == NULL && mi_share_path("routing.json", path,
	    sizeof(path)) == 0)
		file = path;
	r->routing = jv_object();
	if (file && (fp = fopen(file, "r")) != NULL) {
		struct mi_json_in *in = mi_json_in_new(fp);
		jv v;

		if (in && mi_json_next(in, &v, NULL) == 1) {
			if (jv_get_kind(v) == JV_KIND_OBJECT) {
				jv_free(r->routing);
				r->routing = v;
			} else
				jv_free(v);
		}
		mi_json_in_free(in);
		fclose(fp);
	}
	return jv_copy(r->routing);
}

/* Messages of the definition's validate, joined; NULL when valid. */
static int
validate(struct mi_provider *p, jv req, char *msg, size_t msgsz)
{
	struct mi_err err = MI_ERR_INIT;
	jv in = eng_obj1("request", req), out;
	struct mi_buf b = MI_BUF_INIT;
	int i, n;

	out = mi_provider_call(p, "validate", in, &err);
	if (!jv_is_valid(out)) {
		jv_free(out);
		snprintf(msg, msgsz, "%s", err.msg);
		return -1;
	}
	if (jv_get_kind(out) != JV_KIND_ARRAY ||
	    (n = jv_array_length(jv_copy(out))) == 0) {
		jv_free(out);
		return 0;
	}
	for (i = 0; i < n; i++) {
		jv m = jv_array_get(jv_copy(out), i);

		if (jv_get_kind(m) == JV_KIND_STRING)
			mi_buf_addf(&b, "%s%s", i ? "; " : "",
			    jv_string_value(m));
		jv_free(m);
	}
	jv_free(out);
	snprintf(msg, msgsz, "%s: %s", mi_provider_id(p), b.buf);
	mi_buf_release(&b);
	return -1;
}

/*
 * The first usable provider of candidates (an array of ids, consumed) for
 * req (borrowed).  strict: a validation failure of the first candidate
 * ends the search (the request itself is wrong), rather than skipping to
 * the next.  Cooling providers are skipped while another remains.
 */
int
eng_choose(struct mi_runner *r, jv req, jv cand, int strict, struct choice *c)
{
	const char *media = NULL;
	int i, n = jv_array_length(jv_copy(cand)), cooling_at = -1;
	struct mi_err err = MI_ERR_INIT;

	memset(c, 0, sizeof(*c));
	c->rest = jv_array();
	snprintf(c->code, sizeof(c->code), "PROVIDER_UNAVAILABLE");
	snprintf(c->msg, sizeof(c->msg), "no provider left to try");
	mi_json_str(req, "media_type", &media, 0, NULL);
	for (i = 0; i < n; i++) {
		jv id = jv_array_get(jv_copy(cand), i);
		struct mi_provider *p;
		struct mi_buf key = MI_BUF_INIT;
		int k;

		if (jv_get_kind(id) != JV_KIND_STRING ||
		    (p = mi_provider_get(jv_string_value(id), &err)) == NULL) {
			snprintf(c->code, sizeof(c->code), "%s",
			    err.code == EX_CONFIG ? "CONFIG_ERROR" :
			    "VALIDATION_ERROR");
			snprintf(c->msg, sizeof(c->msg), "%s", err.msg);
			jv_free(id);
			if (strict && i == 0)
				break;
			eng_note(r, MI_NOTE_WARN, "%s", c->msg);
			continue;
		}
		jv_free(id);
		if (media == NULL || !mi_provider_supports(p, media)) {
			snprintf(c->code, sizeof(c->code), "VALIDATION_ERROR");
			snprintf(c->msg, sizeof(c->msg),
			    "provider '%s' does not make %s",
			    mi_provider_id(p), media ? media : "that");
			if (strict && i == 0)
				break;
			continue;
		}
		if (validate(p, jv_copy(req), c->msg, sizeof(c->msg)) == -1) {
			snprintf(c->code, sizeof(c->code), "VALIDATION_ERROR");
			if (strict && i == 0)
				break;
			eng_note(r, MI_NOTE_VERBOSE, "skipping %s", c->msg);
			continue;
		}
		k = mi_provider_auth(p, &key, &err);
		if (key.len)
			explicit_bzero(key.buf, key.len);
		mi_buf_release(&key);
		if (k == -1) {
			snprintf(c->code, sizeof(c->code), "CONFIG_ERROR");
			snprintf(c->msg, sizeof(c->msg), "provider '%s': %s",
			    mi_provider_id(p), err.msg);
			if (i + 1 < n)
				eng_note(r, MI_NOTE_WARN, "%s; trying the next "
				    "provider", c->msg);
			continue;
		}
		if ((k = mi_jobs_cooling(r->db, mi_provider_id(p), &err)) ==
		    -1) {
			eng_fatal(r, &err);
			jv_free(cand);
			return -1;
		}
		if (k == 1 && i + 1 < n) {
			if (cooling_at < 0)
				cooling_at = i;
			eng_note(r, MI_NOTE_INFO, "provider '%s' is cooling "
			    "down; trying the next", mi_provider_id(p));
			continue;
		}
		c->p = p;
		for (i++; i < n; i++)
			c->rest = jv_array_append(c->rest,
			    jv_array_get(jv_copy(cand), i));
		jv_free(cand);
		return 0;
	}
	/* Every other provider failed: a cooling one is better than none. */
	if (cooling_at >= 0) {
		jv id = jv_array_get(jv_copy(cand), cooling_at);

		c->p = mi_provider_get(jv_string_value(id), NULL);
		jv_free(id);
		for (i = cooling_at + 1; i < n; i++)
			c->rest = jv_array_append(c->rest,
			    jv_array_get(jv_copy(cand), i));
		jv_free(cand);
		return c->p ? 0 : -1;
	}
	jv_free(cand);
	return -1;
}

double
eng_estimate(struct mi_provider *p, jv req)
{
	struct mi_err err = MI_ERR_INIT;
	jv v = mi_provider_call(p, "cost", eng_obj1("request", req), &err);
	double d = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : 0;

	jv_free(v);
	return d < 0 ? 0 : d;
}

/*
 * Writes the job row of req (borrowed) for provider c->p and puts it in
 * the slot queue; previous: the job it replaces, or NULL; attempt: of
 * the step.
 */
static jv
job_fields(jv req, struct choice *c, const char *previous, int attempt,
    double *estp)
{
	const char *media = NULL;
	double est;
	jv f, params, model;

	mi_json_str(req, "media_type", &media, 1, NULL);
	req = jv_object_set(jv_copy(req), jv_string("provider_id"),
	    jv_string(mi_provider_id(c->p)));
	req = jv_object_set(req, jv_string("fallback"), jv_copy(c->rest));
	est = eng_estimate(c->p, jv_copy(req));
	params = jv_object_get(jv_copy(req), jv_string("params"));
	if (jv_get_kind(params) != JV_KIND_OBJECT) {
		jv_free(params);
		params = jv_object();
	}
	f = jv_object();
	f = jv_object_set(f, jv_string("tenant_id"),
	    eng_field(req, "tenant_id"));
	f = jv_object_set(f, jv_string("run_id"),
	    eng_field(req, "run_id"));
	f = jv_object_set(f, jv_string("run_step_id"),
	    eng_field(req, "run_step_id"));
	f = jv_object_set(f, jv_string("provider_id"),
	    jv_string(mi_provider_id(c->p)));
	f = jv_object_set(f, jv_string("media_type"), jv_string(media));
	f = jv_object_set(f, jv_string("poll_interval_ms"),
	    jv_number((double)mi_provider_poll_interval_ms(c->p, media)));
	f = jv_object_set(f, jv_string("timeout_ms"),
	    jv_number((double)mi_provider_timeout_ms(c->p, media)));
	f = jv_object_set(f, jv_string("input_params"), params);
	f = jv_object_set(f, jv_string("artifact_type"),
	    eng_field(req, "artifact_type"));
	f = jv_object_set(f, jv_string("skill_id"),
	    eng_field(req, "skill_id"));
	f = jv_object_set(f, jv_string("fallback"), jv_copy(c->rest));
	f = jv_object_set(f, jv_string("previous_job_id"),
	    previous ? jv_string(previous) : jv_null());
	f = jv_object_set(f, jv_string("cost_usd"), jv_number(est));
	f = jv_object_set(f, jv_string("step_attempt"), jv_number(attempt));
	model = jv_object_get(mi_provider_meta(c->p), jv_string("model"));
	if (jv_get_kind(model) == JV_KIND_STRING)
		f = jv_object_set(f, jv_string("model"), model);
	else
		jv_free(model);
	*estp = est;
	return jv_object_set(f, jv_string("request"), req);
}

/* The job of row (borrowed), written, put in the slot queue. */
static int
enqueued(struct mi_runner *r, jv row, int attempt, double est)
{
	struct mi_err err = MI_ERR_INIT;
	struct rjob *j;

	if ((j = eng_job_new(r, row, &err)) == NULL) {
		eng_fatal(r, &err);
		return -1;
	}
	j->step_attempt = attempt;
	eng_note(r, MI_NOTE_INFO, "job %s: %s %s, estimated cost $%.4f", j->id,
	    mi_provider_id(j->p), j->media, est);
	eng_set_phase(j, P_WAIT);
	eng_wait_add(j->g, j);
	if (r->admitting) {
		if (r->nbatch_jobs == r->batch_cap) {
			int cap = r->batch_cap ? 2 * r->batch_cap : 64;
			struct rjob **v = realloc(r->batch_jobs,
			    (size_t)cap * sizeof(*v));

			if (v == NULL) {
				mi_err_set(&err, EX_OSERR, "out of memory");
				eng_fatal(r, &err);
				return -1;
			}
			r->batch_jobs = v;
			r->batch_cap = cap;
		}
		r->batch_jobs[r->nbatch_jobs++] = j;
	}
	return 0;
}

/*
 * Writes the job row of req (borrowed) for provider c->p and puts it in
 * the slot queue; previous: the job it replaces, or NULL; attempt: of
 * the step.
 */
int
eng_enqueue(struct mi_runner *r, jv req, struct choice *c, const char *previous,
    int attempt)
{
	struct mi_err err = MI_ERR_INIT;
	double est;
	jv row = mi_jobs_insert(r->db, job_fields(req, c, previous, attempt,
	    &est), 1, &err);
	int rc;

	if (!jv_is_valid(row)) {
		eng_fatal(r, &err);
		jv_free(row);
		return -1;
	}
	rc = enqueued(r, row, attempt, est);
	jv_free(row);
	return rc;
}

/* Jobs of a batch admitted together, written in one statement. */
struct pending {
	jv fs;			/* their fields */
	int n;
	int attempt[ENG_ADMIT_MAX];
	double est[ENG_ADMIT_MAX];
};

/*
 * What admission does with req (consumed) and cand (consumed) once its
 * step s was admitted with k (MI_STEP_*) and out: answered, failed for
 * want of a provider, or its job written (now, or with the batch's when
 * pend).  The step's transaction (a savepoint in a batch) ends here.
 */
static void
admitted(struct mi_runner *r, jv req, jv cand, struct mi_step *s, int k,
    jv out, struct pending *pend)
{
	struct mi_err err = MI_ERR_INIT;
	struct choice c;

	if (k != MI_STEP_NEW) {
		const char *id = "";
		int hit = 0;

		jv_free(cand);
		jv_free(req);
		mi_json_str(out, "id", &id, 0, NULL);
		mi_json_bool(out, "cache_hit", &hit, 0, NULL);
		eng_note(r, MI_NOTE_INFO, "step %s: %s %s", s->step_id,
		    k == MI_STEP_JOB ? "answered with its job" : hit ?
		    "served from the step cache: artifact" :
		    "answered with its artifact", id);
		if (s->other_inputs && !hit)
			eng_note(r, MI_NOTE_WARN, "step %s of run %s was made "
			    "from other inputs; its result stands (a new "
			    "step_id gets a new one)", s->step_id, s->run);
		eng_emit(r, out);
		return;
	}
	jv_free(out);
	req = jv_object_set(req, jv_string("run_step_id"), jv_string(s->id));
	req = jv_object_set(req, jv_string("step_id"), jv_string(s->step_id));
	if (eng_choose(r, req, cand, 1, &c) == -1) {
		jv_free(c.rest);
		if (r->fatal) {
			mi_step_end(r->db, 0, NULL);
			jv_free(req);
			return;
		}
		if (mi_step_fail(r->db, s, c.code, c.msg, &err) == -1 ||
		    mi_step_end(r->db, 1, &err) == -1) {
			mi_step_end(r->db, 0, NULL);
			jv_free(req);
			eng_fatal(r, &err);
			return;
		}
		eng_emit(r, mi_json_error(req, c.code, c.msg, 0));
		return;
	}
	if (pend) {
		pend->attempt[pend->n] = s->attempt;
		pend->fs = jv_array_append(pend->fs, job_fields(req, &c, NULL,
		    s->attempt, &pend->est[pend->n]));
		pend->n++;
		if (mi_step_end(r->db, 1, &err) == -1)
			eng_fatal(r, &err);
	} else if (eng_enqueue(r, req, &c, NULL, s->attempt) == -1)
		mi_step_end(r->db, 0, NULL);
	else if (mi_step_end(r->db, 1, &err) == -1)
		eng_fatal(r, &err);
	jv_free(c.rest);
	jv_free(req);
}

/*
 * Admits req (consumed) as its step: answered with the step's job chain
 * or artifact when it has one, or with a cache hit; else chooses a
 * provider and writes the job, all under the step's lock (steps.h).
 */
static void
admit(struct mi_runner *r, jv req, jv cand)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_step s;
	char msg[400];
	jv out;
	int k;

	if (mi_step_parse(req, &s, &err) == -1) {
		jv_free(cand);
		eng_emit(r, mi_json_error(req, "VALIDATION_ERROR", err.msg, 0));
		return;
	}
	mi_step_inputs(&s, req, cand);
	k = mi_step_admit(r->db, &s, req, &out, msg, sizeof(msg), &err);
	if (k == -1) {
		jv_free(cand);
		jv_free(req);
		eng_fatal(r, &err);
		return;
	}
	if (k == -2) {
		jv_free(cand);
		eng_emit(r, mi_json_error(req, "VALIDATION_ERROR", msg, 0));
		return;
	}
	admitted(r, req, cand, &s, k, out, NULL);
}

/*
 * The checks of a request (consumed) before its step: 1 with *reqp and
 * *candp (the providers to try) to admit, 0 when its record went out
 * already (an error, or a record passed on).
 */
static int
request_cands(struct mi_runner *r, jv req, jv *reqp, jv *candp)
{
	const char *media = NULL, *prov = NULL, *prompt = NULL;
	struct mi_err err = MI_ERR_INIT;
	jv cand, fb, route, params;

	if (mi_json_has_error(req)) {
		eng_pass(r, req);
		return 0;
	}
	if (jv_get_kind(req) != JV_KIND_OBJECT) {
		eng_emit(r, mi_json_error(jv_object_set(jv_object(),
		    jv_string("request"), req), "VALIDATION_ERROR",
		    "a request is a JSON object", 0));
		return 0;
	}
	if (mi_json_str(req, "media_type", &media, 1, &err) == -1 ||
	    mi_json_str(req, "provider_id", &prov, 0, &err) == -1 ||
	    mi_json_str(req, "prompt", &prompt, 0, &err) == -1)
		goto invalid;
	params = jv_object_get(jv_copy(req), jv_string("params"));
	if (jv_get_kind(params) != JV_KIND_OBJECT &&
	    jv_get_kind(params) != JV_KIND_NULL && jv_is_valid(params)) {
		jv_free(params);
		mi_err_set(&err, EX_DATAERR, "params is not an object");
		goto invalid;
	}
	jv_free(params);
	route = jv_object_get(routing(r), jv_string(media));
	if (jv_get_kind(route) != JV_KIND_OBJECT) {
		jv_free(route);
		route = jv_object();
	}
	cand = jv_array();
	if (prov)
		cand = jv_array_append(cand, jv_string(prov));
	else {
		jv d = jv_object_get(jv_copy(route), jv_string("provider_id"));

		if (jv_get_kind(d) != JV_KIND_STRING) {
			jv_free(d);
			jv_free(cand);
			jv_free(route);
			mi_err_set(&err, EX_DATAERR, "no provider_id, and no "
			    "default provider for %s", media);
			goto invalid;
		}
		cand = jv_array_append(cand, d);
	}
	fb = jv_object_get(jv_copy(req), jv_string("fallback"));
	if (jv_get_kind(fb) == JV_KIND_NULL || !jv_is_valid(fb)) {
		jv_free(fb);
		fb = jv_object_get(jv_copy(route), jv_string("fallback"));
	}
	jv_free(route);
	if (jv_get_kind(fb) == JV_KIND_ARRAY)
		cand = jv_array_concat(cand, fb);
	else if (jv_get_kind(fb) != JV_KIND_NULL && jv_is_valid(fb)) {
		jv_free(fb);
		jv_free(cand);
		mi_err_set(&err, EX_DATAERR, "fallback is not an array");
		goto invalid;
	} else
		jv_free(fb);
	*reqp = req;
	*candp = cand;
	return 1;
invalid:
	eng_emit(r, mi_json_error(req, "VALIDATION_ERROR", err.msg, 0));
	return 0;
}

void
mi_runner_request(struct mi_runner *r, jv req)
{
	jv cand;

	if (request_cands(r, req, &req, &cand))
		admit(r, req, cand);
}

/* The (tenant, provider) group a request most likely joins: its own
 * provider, else its media type's default route. */
static char *
group_key(struct mi_runner *r, jv req)
{
	const char *t = "", *p = NULL, *m = NULL;
	struct mi_buf b = MI_BUF_INIT;
	jv d = jv_null();

	if (jv_get_kind(req) != JV_KIND_OBJECT)
		return strdup("");
	mi_json_str(req, "tenant_id", &t, 0, NULL);
	if (mi_json_str(req, "provider_id", &p, 0, NULL) != 1 &&
	    mi_json_str(req, "media_type", &m, 0, NULL) == 1) {
		d = jv_object_get(jv_object_get(routing(r), jv_string(m)),
		    jv_string("provider_id"));
		if (jv_get_kind(d) == JV_KIND_STRING)
			p = jv_string_value(d);
	}
	mi_buf_addf(&b, "%s/%s", t ? t : "", p ? p : "");
	jv_free(d);
	return b.buf ? b.buf : strdup("");
}

struct keyed {
	char *key;
	int i;
	jv req;
};

static int
by_key(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c ? c : x->i - y->i;
}

static int
by_order(const void *a, const void *b)
{
	const struct outrec *x = *(struct outrec *const *)a;
	const struct outrec *y = *(struct outrec *const *)b;

	return (x->order > y->order) - (x->order < y->order);
}

/* The records of a batch, from *mark on, in the order their requests
 * came (they were made in the order of the groups). */
static void
batch_reorder(struct mi_runner *r, struct outrec **mark)
{
	struct outrec *o, **v;
	size_t n = 0, i;

	for (o = *mark; o; o = o->next)
		n++;
	if (n < 2 || (v = calloc(n, sizeof(*v))) == NULL)
		return;
	for (i = 0, o = *mark; o; o = o->next)
		v[i++] = o;
	/* Records of one request keep their place among themselves. */
	for (i = 0; i < n; i++)
		v[i]->order = v[i]->order * (int)(n + 1) + (int)i;
	qsort(v, n, sizeof(*v), by_order);
	for (i = 0; i < n; i++) {
		v[i]->next = i + 1 < n ? v[i + 1] : NULL;
		v[i]->order = 0;
	}
	*mark = v[0];
	r->outq_tail = &v[n - 1]->next;
	free(v);
}

/* Undoes, in memory, what a lost batch did: its jobs and its records. */
static void
batch_undo(struct mi_runner *r, struct outrec **mark, long finished)
{
	struct outrec *o, *next;
	int i;

	for (i = 0; i < r->nbatch_jobs; i++)
		eng_drop(r, r->batch_jobs[i]);
	r->nbatch_jobs = 0;
	for (o = *mark; o; o = next) {
		next = o->next;
		jv_free(o->rec);
		free(o);
	}
	*mark = NULL;
	r->outq_tail = mark;
	r->finished = finished;
}

/*
 * The batch's requests v[0..n-1] (borrowed) admitted with their reads
 * done together (mi_step_prefetch) and their jobs written in one
 * statement, inside the batch's transaction.  Each request's own
 * decisions are those of admit(), in the same order.  Returns 0, or -1
 * when the batch must be admitted request by request instead: two of its
 * requests are one step, one names a step it cannot have (whose message
 * mi_step_admit gives, undoing its own rows alone), or a statement
 * failed.
 */
static int
admit_together(struct mi_runner *r, struct keyed *v, int n)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_step *sv, **sp;
	struct pending *pend;
	jv *reqs, *cands, *pre, rows;
	int *idx, i, j, m = 0, k, rc = -1;
	char msg[400];

	sv = calloc((size_t)n, sizeof(*sv));
	sp = calloc((size_t)n, sizeof(*sp));
	reqs = calloc((size_t)n, sizeof(*reqs));
	cands = calloc((size_t)n, sizeof(*cands));
	pre = calloc((size_t)n, sizeof(*pre));
	idx = calloc((size_t)n, sizeof(*idx));
	pend = calloc(1, sizeof(*pend));
	if (!sv || !sp || !reqs || !cands || !pre || !idx || !pend)
		goto out;
	for (i = 0; i < n; i++) {
		jv req, cand;

		r->batch_order = v[i].i;
		if (!request_cands(r, jv_copy(v[i].req), &req, &cand))
			continue;
		if (mi_step_parse(req, &sv[m], &err) == -1) {
			jv_free(cand);
			eng_emit(r, mi_json_error(req, "VALIDATION_ERROR",
			    err.msg, 0));
			err = (struct mi_err)MI_ERR_INIT;
			continue;
		}
		mi_step_inputs(&sv[m], req, cand);
		sp[m] = &sv[m];
		reqs[m] = req;
		cands[m] = cand;
		idx[m++] = i;
	}
	for (j = 0; j < m; j++)
		pre[j] = jv_invalid();
	if (m == 0) {
		rc = 0;
		goto out;
	}
	if ((k = mi_step_prefetch(r->db, sp, m, pre, &err)) != 0) {
		if (k == 1)
			mi_err_set(&err, EX_DATAERR, "two of them are one step");
		goto out;
	}
	for (j = 0; j < m; j++)
		if (jv_get_kind(pre[j]) != JV_KIND_OBJECT) {
			mi_err_set(&err, EX_DATAERR, "step %s of run %s was "
			    "not found", sp[j]->step_id, sp[j]->run);
			goto out;
		}
	pend->fs = jv_array();
	for (j = 0; j < m && !r->fatal; j++) {
		jv out;

		r->batch_order = v[idx[j]].i;
		k = mi_step_admit_read(r->db, sp[j], reqs[j], pre[j], &out,
		    msg, sizeof(msg), &err);
		pre[j] = jv_invalid();
		if (k < 0) {
			if (k == -2)
				mi_err_set(&err, EX_DATAERR, "%s", msg);
			jv_free(out);
			goto out;
		}
		admitted(r, reqs[j], cands[j], sp[j], k, out, pend);
		reqs[j] = cands[j] = jv_invalid();
	}
	if (r->fatal || pend->n == 0) {
		rc = 0;
		goto out;
	}
	rows = mi_jobs_insert_many(r->db, pend->fs, 1, &err);
	pend->fs = jv_invalid();
	if (!jv_is_valid(rows)) {
		jv_free(rows);
		goto out;
	}
	for (i = 0; i < pend->n && !r->fatal; i++) {
		jv row = jv_array_get(jv_copy(rows), i);

		enqueued(r, row, pend->attempt[i], pend->est[i]);
		jv_free(row);
	}
	jv_free(rows);
	eng_note(r, MI_NOTE_VERBOSE, "%d requests admitted together: their "
	    "steps in 3 statements, their %d jobs in one", n, pend->n);
	rc = 0;
out:
	if (rc == -1 && mi_db_batch_lost(r->db)) {
		/* A deadlock or a lost connection: what any batch lost
		 * meets (admit_batch). */
		eng_fatal(r, &err);
		rc = 0;
	} else if (rc == -1 && err.msg[0])
		eng_note(r, MI_NOTE_VERBOSE, "requests admitted each in a "
		    "savepoint of its own: %s", err.msg);
	for (j = 0; j < m; j++) {
		jv_free(reqs[j]);
		jv_free(cands[j]);
		jv_free(pre[j]);
	}
	if (pend)
		jv_free(pend->fs);
	free(sv);
	free(sp);
	free(reqs);
	free(cands);
	free(pre);
	free(idx);
	free(pend);
	return rc;
}

/*
 * One transaction for the batch v[0..n-1] (borrowed), its requests
 * admitted together (admit_together) or each in a savepoint of its own.
 * Returns 1 when admitting them together gave up: the batch is undone,
 * for the caller to run again request by request.
 */
static int
admit_batch(struct mi_runner *r, struct keyed *v, int n, int together)
{
	struct mi_err err = MI_ERR_INIT;
	struct outrec **mark;
	long finished;
	int i, ok, lost;

	mark = r->outq_tail;
	finished = r->finished;
	r->nbatch_jobs = 0;
	if (mi_db_batch_begin(r->db, &err) == -1) {
		eng_fatal(r, &err);
		return 0;
	}
	r->admitting = 1;
	if (together && admit_together(r, v, n) == -1) {
		r->admitting = 0;
		mi_db_batch_end(r->db, 0, NULL);
		batch_undo(r, mark, finished);
		return 1;
	}
	for (i = 0; i < n && !r->fatal && !together; i++) {
		r->batch_order = v[i].i;
		mi_runner_request(r, jv_copy(v[i].req));
	}
	r->admitting = 0;
	ok = !r->fatal;
	lost = mi_db_batch_lost(r->db);
	if (mi_db_batch_end(r->db, ok, &err) == -1 && ok) {
		lost = mi_db_tx_lost(r->db);
		if (!lost)
			eng_fatal(r, &err);
	}
	if (lost) {
		/* Nothing of it committed: as if it never ran. */
		batch_undo(r, mark, finished);
		if (!ok)
			err = r->ferr;
		r->fatal = 0;
		r->ferr = (struct mi_err)MI_ERR_INIT;
		eng_note(r, MI_NOTE_INFO, "%d requests admitted together were "
		    "undone (%s); admitting them one by one", n, err.msg);
		for (i = 0; i < n && !r->fatal; i++) {
			mi_runner_request(r, v[i].req);
			v[i].req = jv_invalid();
		}
	}
	else if (!r->fatal) {
		batch_reorder(r, mark);
		eng_note(r, MI_NOTE_VERBOSE, "%d requests admitted in one "
		    "transaction", n);
	}
	r->nbatch_jobs = 0;
	return 0;
}

/*
 * Admits reqs[0..n-1] (consumed) in one transaction, so that the whole
 * batch costs one commit; the records they give wait for that commit.
 * Their reads and their jobs' rows are a few statements for the whole
 * batch (admit_together); when that cannot be, each request's own is a
 * savepoint of the transaction (db.h), so a request that fails undoes
 * only its own rows.  The requests are admitted in the order of their
 * (tenant, provider) groups, and in arrival order within each: every
 * process takes the groups' locks in one order, and a group's jobs keep
 * the order they came in.  A batch lost to a deadlock or a lost
 * connection is undone and its requests admitted again one by one.
 */
void
mi_runner_requests(struct mi_runner *r, jv *reqs, int n)
{
	struct keyed *v;
	int i;

	if (n <= 1 || r->batch_max <= 1 ||
	    (v = calloc((size_t)n, sizeof(*v))) == NULL) {
		for (i = 0; i < n; i++)
			mi_runner_request(r, reqs[i]);
		return;
	}
	for (i = 0; i < n; i++) {
		v[i].key = group_key(r, reqs[i]);
		v[i].i = i;
		v[i].req = reqs[i];
	}
	qsort(v, (size_t)n, sizeof(*v), by_key);
	if (admit_batch(r, v, n, n <= ENG_ADMIT_MAX) == 1)
		admit_batch(r, v, n, 0);
	for (i = 0; i < n; i++) {
		free(v[i].key);
		jv_free(v[i].req);
	}
	free(v);
}
