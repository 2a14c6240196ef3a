/*
 * mi-fetch - completed job records in, artifact records out.  Downloads
 * each job's result at once (a provider URL, or the spool file of a
 * synchronous or local provider), streaming it into the store while it
 * is hashed and checked against the job's media type, records the
 * artifact and links it to the job.  Exits 0, 1 (some error records), 64,
 * 69 (no database), 75 (the database failed) or 78 (no store directory,
 * or a provider key is missing).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "artifact.h"
#include "db.h"
#include "err.h"
#include "jobs.h"
#include "json.h"
#include "probe.h"
#include "provider.h"
#include "steps.h"
#include "store.h"
#include "transport.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-fetch [-v] < jobs.ndjson\n"
    "  -v, --verbose  say more on stderr\n"
    "      --help     this text\n"
    "      --version  print the version";

struct ctx {
	struct mi_db *db;
	struct mi_store *st;
	int failed, config;
	long long max_size;
	long backoff_ms;
};

/* One download into the store. */
struct dl {
	struct ctx *c;
	struct mi_store_tx *tx;
	const char *id;
	long long renewed;
	int checked;
};

static void
emit_error(struct ctx *c, jv rec, const char *code, const char *msg,
    int retryable)
{
	const char *id = "";

	mi_json_str(rec, "id", &id, 0, NULL);
	mi_warn("job %s: %s: %s", id, code, msg);
	c->failed = 1;
	if (strcmp(code, "CONFIG_ERROR") == 0)
		c->config = 1;
	mi_json_write(stdout, mi_json_error(rec, code, msg, retryable));
}

/* SIGTERM or SIGINT: the download under way is abandoned at once, its
 * job released, and mi-fetch exits 75. */
static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	stop = sig;
}

/* While a download lasts, bytes or not, its job's lease is renewed on a
 * timer: a slow or stalled transfer never loses its job to a worker. */
static void
tick(void *arg)
{
	struct dl *d = arg;
	long long now = mi_now_ms();

	if (now - d->renewed > mi_jobs_lease_ms() / 3) {
		jv ids = jv_array_append(jv_array(), jv_string(d->id));
		struct mi_err rerr = MI_ERR_INIT;

		jv_free(mi_jobs_renew(d->c->db, ids, &rerr));
		d->renewed = now;
	}
}

/* Chunks of the result into the store; an HTML page is refused before
 * anything is written. */
static int
sink(void *arg, const struct mi_http_resp *resp, const void *data,
    size_t len, struct mi_err *err)
{
	struct dl *d = arg;

	if (!d->checked) {
		const char *p = data;
		size_t i = 0;

		d->checked = 1;
		while (i < len && (p[i] == ' ' || p[i] == '\n' ||
		    p[i] == '\r' || p[i] == '\t'))
			i++;
		if (strncasecmp(resp->content_type, "text/html", 9) == 0 ||
		    (len - i >= 5 && (strncasecmp(p + i, "<html", 5) == 0 ||
		    strncasecmp(p + i, "<!doc", 5) == 0)))
			return mi_err_set(err, EX_PROTOCOL,
			    "the result is an HTML page, not media");
	}
	return mi_store_write(d->tx, data, len, err);
}

static jv
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
static jv
refresh(struct ctx *c, struct mi_provider *p, jv job)
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
		mi_die_err(&err);
	return row;
}

/* Downloads job's result into the store: 0, or -1 with err. */
static int
download(struct ctx *c, struct mi_provider *p, jv job,
    const struct mi_store_req *req, struct mi_store_result *res,
    struct mi_err *err)
{
	struct mi_http_resp resp;
	const char *uri = NULL, *id = NULL;
	struct dl d;
	int r;

	mi_json_str(job, "result_uri", &uri, 0, NULL);
	mi_json_str(job, "id", &id, 0, NULL);
	if (uri == NULL)
		return mi_err_set(err, EX_PROTOCOL, "the job has no result");
	memset(&d, 0, sizeof(d));
	d.c = c;
	d.id = id;
	d.renewed = mi_now_ms();
	if ((d.tx = mi_store_begin(c->st, req, err)) == NULL)
		return -1;
	mi_http_resp_init(&resp);
	r = mi_transport_fetch_ex(p, fetch_input(job), uri, sink, &d, tick,
	    &stop, &resp, err);
	if (r == 0 && resp.received == 0)
		r = mi_err_set(err, EX_PROTOCOL, "the result is empty");
	if (r == 0 && resp.content_length >= 0 &&
	    resp.received != resp.content_length)
		r = mi_err_set(err, EX_PROTOCOL, "the result is truncated "
		    "(%lld of %lld bytes)", resp.received,
		    resp.content_length);
	mi_http_resp_release(&resp);
	if (r == -1) {
		mi_store_abort(d.tx);
		return -1;
	}
	return mi_store_commit(d.tx, res, err);
}

/*
 * Fetches with retries: transient failures and truncation are tried
 * again with backoff; a result that is gone (expired URL) is tried once
 * more, then fetched afresh from the provider.  Returns 0, or -1 with err
 * and *jobp possibly replaced by the refreshed row.
 */
static int
fetch_retrying(struct ctx *c, struct mi_provider *p, jv *jobp,
    const struct mi_store_req *req, struct mi_store_result *res,
    struct mi_err *err)
{
	int tries = 0, gone = 0, refreshed = 0;

	for (;;) {
		if (download(c, p, *jobp, req, res, err) == 0)
			return 0;
		if (stop)
			return -1;
		if (err->code == EX_NOINPUT) {
			if (++gone <= 1) {
				mi_sleep_ms(c->backoff_ms);
				continue;
			}
			if (!refreshed) {
				jv row = refresh(c, p, *jobp);

				refreshed = 1;
				if (jv_get_kind(row) == JV_KIND_OBJECT) {
					mi_verbose("job: fetching a fresh "
					    "result URL");
					jv_free(*jobp);
					*jobp = row;
					gone = 0;
					continue;
				}
				jv_free(row);
			}
			return -1;
		}
		if ((err->code == EX_TEMPFAIL || (err->code == EX_PROTOCOL &&
		    strstr(err->msg, "truncated") != NULL) ||
		    strstr(err->msg, "transfer closed") != NULL) &&
		    ++tries <= 3) {
			mi_sleep_ms(c->backoff_ms << (tries - 1));
			continue;
		}
		return -1;
	}
}

static jv
artifact_meta(jv job, struct mi_provider *p)
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
static jv
fail_job(struct ctx *c, const char *id, const char *code, const char *msg)
{
	struct mi_err err = MI_ERR_INIT;
	jv p = jv_object(), row;

	p = jv_object_set(p, jv_string("status"), jv_string("failed"));
	p = jv_object_set(p, jv_string("error_code"), jv_string(code));
	p = jv_object_set(p, jv_string("error_message"), jv_string(msg));
	p = jv_object_set(p, jv_string("release"), jv_true());
	row = mi_jobs_patch(c->db, id, p, &err);
	if (!jv_is_valid(row))
		mi_die_err(&err);
	return row;
}

static void
release(struct ctx *c, const char *id)
{
	struct mi_err err = MI_ERR_INIT;

	if (mi_jobs_release(c->db, jv_array_append(jv_array(), jv_string(id)),
	    &err) == -1)
		mi_die_err(&err);
}

/* The artifact already linked to a job, as a record. */
static jv
linked_artifact(struct ctx *c, const char *artifact_id)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[1] = { artifact_id };
	jv a = mi_db_json1(c->db, "SELECT to_jsonb(a) FROM app.artifacts a"
	    " WHERE a.id = $1::uuid", 1, params, &err);

	if (!jv_is_valid(a))
		mi_die_err(&err);
	return mi_artifact_again(a);
}

/* Takes the job's lease; when another worker holds it, waits a while
 * for that worker to store the result.  Returns the row, or null. */
static jv
take(struct ctx *c, jv job, jv *done)
{
	struct mi_err err = MI_ERR_INIT;
	const char *id = NULL, *owner = NULL, *aid = NULL;
	long long until = mi_now_ms() + 2 * mi_jobs_lease_ms();
	jv rows, row;

	*done = jv_null();
	mi_json_str(job, "id", &id, 0, NULL);
	mi_json_str(job, "lease_owner", &owner, 0, NULL);
	for (;;) {
		rows = mi_jobs_take(c->db, jv_array_append(jv_array(),
		    jv_array_append(jv_array_append(jv_array(), jv_string(id)),
		    owner ? jv_string(owner) : jv_null())), 1, &err);
		if (!jv_is_valid(rows))
			mi_die_err(&err);
		if (jv_array_length(jv_copy(rows)) > 0)
			return jv_array_get(rows, 0);
		jv_free(rows);
		rows = mi_jobs_get(c->db, jv_array_append(jv_array(),
		    jv_string(id)), &err);
		if (!jv_is_valid(rows))
			mi_die_err(&err);
		row = jv_array_length(jv_copy(rows)) > 0 ?
		    jv_array_get(jv_copy(rows), 0) : jv_null();
		jv_free(rows);
		if (jv_get_kind(row) != JV_KIND_OBJECT)
			return row;
		if (mi_json_str(row, "artifact_id", &aid, 0, NULL) == 1) {
			*done = linked_artifact(c, aid);
			jv_free(row);
			return jv_null();
		}
		jv_free(row);
		if (mi_now_ms() > until)
			return jv_null();
		mi_sleep_ms(500);
	}
}

static void fetch_one(struct ctx *c, jv job);

/* A strict request's result misses it: the job fails and the next
 * provider of its chain makes it again (probe.h). */
static void
strict_refused(struct ctx *c, const char *id, jv job, const char *msg)
{
	struct mi_err err = MI_ERR_INIT;
	jv failed = fail_job(c, id, "PROVIDER_ERROR", msg), next;

	mi_warn("job %s: %s", id, msg);
	next = mi_probe_next(c->db, failed, &err);
	if (!jv_is_valid(next))
		mi_die_err(&err);
	if (jv_get_kind(next) == JV_KIND_OBJECT) {
		jv_free(failed);
		jv_free(job);
		fetch_one(c, next);
		return;
	}
	jv_free(next);
	jv_free(job);
	c->failed = 1;
	mi_json_write(stdout, mi_json_error(failed, "PROVIDER_ERROR", msg,
	    0));
}

static void
fetch_one(struct ctx *c, jv job)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_store_req req;
	struct mi_store_result res;
	struct mi_provider *p;
	const char *st = NULL, *prov = NULL, *aid = NULL, *id = NULL;
	const char *uri = NULL, *s = NULL;
	char idbuf[40], ext[16] = "", tenant[256] = "", run[40] = "";
	char type[128] = "";
	jv row, done, art, extra, r;
	int fr, link_ok = 0;

	if (mi_json_has_error(job)) {
		c->failed = 1;
		mi_json_write(stdout, job);
		return;
	}
	if (mi_step_is_artifact(job)) {
		/* A step answered with its artifact (stored before, or from
		 * the step cache): nothing to fetch. */
		mi_json_write(stdout, job);
		return;
	}
	if (jv_get_kind(job) != JV_KIND_OBJECT ||
	    mi_json_str(job, "id", &id, 1, NULL) != 1 ||
	    mi_json_str(job, "status", &st, 1, NULL) != 1) {
		if (jv_get_kind(job) != JV_KIND_OBJECT)
			job = jv_object_set(jv_object(), jv_string("job"), job);
		emit_error(c, job, "VALIDATION_ERROR",
		    "not a job record (no id or status)", 0);
		return;
	}
	snprintf(idbuf, sizeof(idbuf), "%s", id);
	if (strcmp(st, "failed") == 0 || strcmp(st, "timed_out") == 0) {
		const char *code = "PROVIDER_ERROR", *msg = "the job failed";

		mi_json_str(job, "error_code", &code, 0, NULL);
		mi_json_str(job, "error_message", &msg, 0, NULL);
		c->failed = 1;
		mi_json_write(stdout, mi_json_error(job, code, msg, 0));
		return;
	}
	if (strcmp(st, "completed") != 0) {
		char msg[80];

		snprintf(msg, sizeof(msg), "the job is %s, not completed", st);
		emit_error(c, job, "VALIDATION_ERROR", msg, 0);
		return;
	}
	if (mi_json_str(job, "artifact_id", &aid, 0, NULL) == 1) {
		art = linked_artifact(c, aid);
		if (jv_get_kind(art) == JV_KIND_OBJECT) {
			jv_free(job);
			mi_json_write(stdout, art);
			return;
		}
		jv_free(art);
	}
	row = take(c, job, &done);
	if (jv_get_kind(done) == JV_KIND_OBJECT) {
		jv_free(row);
		jv_free(job);
		mi_json_write(stdout, done);
		return;
	}
	jv_free(done);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		emit_error(c, job, "TIMEOUT", "the job is held by another "
		    "worker", 1);
		return;
	}
	jv_free(job);
	job = row;
	mi_json_str(job, "provider_id", &prov, 0, NULL);
	if ((p = mi_provider_get(prov, &err)) == NULL) {
		release(c, idbuf);
		emit_error(c, job, "CONFIG_ERROR", err.msg, 0);
		return;
	}
	/* The row may be replaced (a fresh result URL): copy its names. */
	memset(&req, 0, sizeof(req));
	if (mi_json_str(job, "tenant_id", &s, 1, NULL) == 1)
		snprintf(tenant, sizeof(tenant), "%s", s);
	if (mi_json_str(job, "run_id", &s, 1, NULL) == 1)
		snprintf(run, sizeof(run), "%s", s);
	if (mi_json_str(job, "artifact_type", &s, 0, NULL) == 1 ||
	    mi_json_str(job, "media_type", &s, 1, NULL) == 1)
		snprintf(type, sizeof(type), "%s", s);
	req.tenant = tenant;
	req.run = run;
	req.type = type;
	r = jv_object_get(jv_object_get(jv_copy(job),
	    jv_string("provider_state")), jv_string("result"));
	if (jv_get_kind(r) == JV_KIND_OBJECT) {
		const char *e = NULL;

		if (mi_json_str(r, "ext", &e, 0, NULL) == 1 &&
		    mi_mime_by_ext(e) != NULL)
			snprintf(ext, sizeof(ext), "%s", e);
	}
	jv_free(r);
	req.declared_ext = ext[0] ? ext : NULL;
	req.from_provider = 1;
	req.max_size = c->max_size;
	fr = fetch_retrying(c, p, &job, &req, &res, &err);
	if (fr == -1 && stop) {
		/* Nothing half done is kept: the job waits for another. */
		release(c, idbuf);
		jv_free(job);
		mi_die(EX_TEMPFAIL, "stopped by signal %d; job %s released",
		    (int)stop, idbuf);
	} else if (fr == -1) {
		const char *code = err.code == EX_IOERR ||
		    err.code == EX_CANTCREAT ? "STORAGE_ERROR" :
		    err.code == EX_CONFIG ? "CONFIG_ERROR" :
		    err.code == EX_TEMPFAIL ? "PROVIDER_UNAVAILABLE" :
		    "PROVIDER_ERROR";

		if (err.code == EX_NOINPUT)
			mi_err_prefix(&err, "the result is gone");
		/* A result that came and cannot be used fails the job;
		 * one that may come later keeps it for another try. */
		if (err.code == EX_PROTOCOL || err.code == EX_NOINPUT ||
		    err.code == EX_DATAERR) {
			jv failed = fail_job(c, idbuf, code, err.msg);

			if (jv_get_kind(failed) == JV_KIND_OBJECT) {
				jv_free(job);
				job = failed;
			} else
				jv_free(failed);
		} else
			release(c, idbuf);
		emit_error(c, job, code, err.msg, err.code == EX_TEMPFAIL ||
		    err.code == EX_IOERR);
		return;
	}
	extra = jv_object();
	extra = jv_object_set(extra, jv_string("skill_id"),
	    jv_object_get(jv_copy(job), jv_string("skill_id")));
	extra = jv_object_set(extra, jv_string("metadata"),
	    artifact_meta(job, p));
	extra = jv_object_set(extra, jv_string("run_step_id"),
	    jv_object_get(jv_copy(job), jv_string("run_step_id")));
	extra = jv_object_set(extra, jv_string("job_id"), jv_string(idbuf));
	extra = jv_object_set(extra, jv_string("cache_hit"), jv_false());
	/* Facts, warnings, a model fitted to its budget (probe.h). */
	switch (mi_probe_stored(c->db, c->st, &req, &res, jv_object_get(
	    jv_copy(job), jv_string("request")), &extra, &err)) {
	case -1:
		jv_free(extra);
		release(c, idbuf);
		mi_die_err(&err);
	case 1:
		jv_free(extra);
		strict_refused(c, idbuf, job, err.msg);
		return;
	}
	art = mi_artifact_record(c->db, &req, &res, extra, &err);
	if (!jv_is_valid(art)) {
		release(c, idbuf);
		if (err.code == EX_TEMPFAIL || err.code == EX_UNAVAILABLE)
			mi_die_err(&err);
		emit_error(c, job, "STORAGE_ERROR", err.msg, 0);
		return;
	}
	{
		const char *artid = NULL;
		jv p2, linked;

		mi_json_str(art, "id", &artid, 1, NULL);
		p2 = jv_object_set(jv_object(), jv_string("artifact_id"),
		    jv_string(artid));
		p2 = jv_object_set(p2, jv_string("release"), jv_true());
		linked = mi_jobs_patch(c->db, idbuf, p2, &err);
		if (!jv_is_valid(linked))
			mi_die_err(&err);
		/* A lease lost meanwhile: the job's new holder links the
		 * same stored bytes, and needs the spool file for it. */
		link_ok = jv_get_kind(linked) == JV_KIND_OBJECT;
		jv_free(linked);
		/* Only a stored result enters the step cache. */
		if (mi_step_cache_put(c->db, idbuf, artid, &err) == -1)
			mi_die_err(&err);
	}
	if (link_ok && mi_json_str(job, "result_uri", &uri, 0, NULL) == 1 &&
	    strncmp(uri, "file://", 7) == 0)
		unlink(uri + 7);
	{
		double cost = 0;
		const char *src = "estimate";

		mi_json_num(job, "cost_usd", &cost, 0, NULL);
		mi_json_str(job, "cost_source", &src, 0, NULL);
		fprintf(stderr, "mi-fetch: job %s: stored %s (%lld bytes%s), "
		    "cost $%.4f (%s)\n", idbuf, res.rel, res.size,
		    res.deduplicated ? ", deduplicated" : "", cost, src);
	}
	{
		jv m = jv_object_get(jv_copy(art), jv_string("metadata"));
		jv w = jv_get_kind(m) == JV_KIND_OBJECT ?
		    jv_object_get(m, jv_string("warnings")) :
		    (jv_free(m), jv_null());
		int i, n = jv_get_kind(w) == JV_KIND_ARRAY ?
		    jv_array_length(jv_copy(w)) : 0;

		for (i = 0; i < n; i++) {
			jv e = jv_array_get(jv_copy(w), i);
			const char *code = "", *msg = "";

			mi_json_str(e, "code", &code, 0, NULL);
			mi_json_str(e, "message", &msg, 0, NULL);
			mi_warn("job %s: %s: %s", idbuf, code, msg);
			jv_free(e);
		}
		jv_free(w);
	}
	jv_free(job);
	mi_json_write(stdout, art);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct mi_err err = MI_ERR_INIT;
	struct ctx c;
	struct mi_json_in *in;
	const char *s;
	unsigned long long v;
	jv rec;
	int ch, k;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
		switch (ch) {
		case 'h': mi_usage(usage, 0);
		case 'v': mi_verbosity++; break;
		case 'V': mi_version();
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mi-fetch: unexpected argument '%s'\n",
		    argv[optind]);
		mi_usage(usage, EX_USAGE);
	}
	signal(SIGPIPE, SIG_IGN);
	{
		struct sigaction sa;

		/* No SA_RESTART: a read of the input ends on the signal. */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
	}
	memset(&c, 0, sizeof(c));
	c.max_size = 4LL << 30;
	if ((s = getenv("MI_FETCH_MAX_BYTES")) != NULL &&
	    mi_parse_uint(s, 1, 1ULL << 50, &v) == 0)
		c.max_size = (long long)v;
	c.backoff_ms = 1000;
	if ((s = getenv("MI_FETCH_BACKOFF_MS")) != NULL &&
	    mi_parse_uint(s, 0, 600000, &v) == 0)
		c.backoff_ms = (long)v;
	if ((c.st = mi_store_open(NULL, &err)) == NULL ||
	    (c.db = mi_db_open(NULL, &err)) == NULL)
		mi_die_err(&err);
	if ((in = mi_json_in_new(stdin)) == NULL)
		mi_die(EX_OSERR, "out of memory");
	while (!stop && (k = mi_json_next(in, &rec, &err)) != 0) {
		if (stop) {
			if (k == 1)
				jv_free(rec);
			break;
		}
		if (k == -2)
			mi_die_err(&err);
		if (k == -1) {
			emit_error(&c, jv_object(), "INVALID_JSON", err.msg, 0);
			continue;
		}
		fetch_one(&c, rec);
	}
	mi_json_in_free(in);
	mi_provider_free_all();
	mi_db_close(c.db);
	mi_store_close(c.st);
	mi_close_stdout();
	if (stop) {
		fprintf(stderr, "mi-fetch: stopped by signal %d\n", (int)stop);
		return EX_TEMPFAIL;
	}
	return c.config ? EX_CONFIG : c.failed ? 1 : 0;
}
