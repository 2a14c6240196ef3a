/*
 * fetch/pool.c - the download pool of mi-fetch (fetch/pool.h): a queue of
 * slots, one per input record in input order, each moving through the
 * states below from its record to its artifact.
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

/* Records read ahead of the one written next, per download slot. */
#define AHEAD	8

/* Where a job record is on its way to its artifact. */
enum {
	S_TAKING,	/* waiting for another worker's lease */
	S_LOADING,	/* its download is under way */
	S_LOADED,	/* the download ended: r, err */
	S_BACKOFF,	/* waiting to download again */
	S_DONE		/* out is the record to write */
};

struct mi_fetch_pool;

/* One input record, in the order of the input. */
struct slot {
	struct slot *next;
	struct mi_fetch_pool *c;
	int state;
	jv job;			/* the record read, then the job's row */
	jv out;
	struct mi_provider *p;
	struct mi_store_req req;
	struct mi_store_tx *tx;
	struct mi_fetch fetch;
	char id[40], ext[16], tenant[256], run[40], type[128];
	int held;		/* this worker holds the job's lease */
	int checked;		/* the first chunk was looked at */
	long long wake;		/* S_TAKING, S_BACKOFF: when to go on */
	long long take_until;
	int tries, gone, refreshed;
	int r;			/* S_LOADED: the download's outcome */
	long long received, content_length;
	struct mi_err err;
};

struct mi_fetch_pool {
	struct mi_db *db;
	struct mi_store *st;
	struct mi_http_multi *m;
	struct slot *head, **tail;
	int failed, config, jobs;
	long long max_size, renewed;
	long backoff_ms;
	struct mi_fetch_pool_opts o;
};

/* Set by the command's handler of SIGTERM or SIGINT: the downloads
 * under way are abandoned at once and their jobs released. */
static int
stopped(const struct mi_fetch_pool *c)
{
	return c->o.stop != NULL && *c->o.stop != 0;
}

static void __attribute__((format(printf, 3, 4)))
note(struct mi_fetch_pool *c, int level, const char *fmt, ...)
{
	char small[1024], *msg = small;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	/* The names of the jobs released may be long: said in full. */
	if (n >= (int)sizeof(small) && (msg = malloc((size_t)n + 1)) != NULL) {
		va_start(ap, fmt);
		vsnprintf(msg, (size_t)n + 1, fmt, ap);
		va_end(ap);
	} else if (n >= (int)sizeof(small))
		msg = small;
	c->o.note(c->o.arg, level, msg);
	if (msg != small)
		free(msg);
}

static void __attribute__((noreturn))
fatal(struct mi_fetch_pool *c, const struct mi_err *err)
{
	c->o.fatal(c->o.arg, err);
}

static void
done(struct slot *s, jv out)
{
	jv_free(s->out);
	s->out = out;
	s->state = S_DONE;
}

static void
emit_error(struct slot *s, jv rec, const char *code, const char *msg,
    int retryable)
{
	const char *id = "";

	mi_json_str(rec, "id", &id, 0, NULL);
	note(s->c, MI_NOTE_WARN, "job %s: %s: %s", id, code, msg);
	s->c->failed = 1;
	if (strcmp(code, "CONFIG_ERROR") == 0)
		s->c->config = 1;
	done(s, mi_json_error(rec, code, msg, retryable));
}

/* The ids of the jobs whose leases this worker holds. */
static jv
held_ids(struct mi_fetch_pool *c)
{
	jv ids = jv_array();
	struct slot *s;

	for (s = c->head; s; s = s->next)
		if (s->held)
			ids = jv_array_append(ids, jv_string(s->id));
	return ids;
}

/* Renews every lease held, bytes or not: a slow or stalled transfer (or
 * one waiting while another job is probed) never loses its job.  soon:
 * before a probe or a fit, which stops everything else while it lasts;
 * leases renewed within the last tenth of a lease (at most a second)
 * still have nearly all of it left. */
static void
renew(struct mi_fetch_pool *c, int soon)
{
	struct mi_err err = MI_ERR_INIT;
	long long now = mi_now_ms(), lease = mi_jobs_lease_ms();
	long long age = soon ? (lease / 10 < 1000 ? lease / 10 : 1000) :
	    lease / 3;
	jv ids;

	if (now - c->renewed <= age)
		return;
	c->renewed = now;
	ids = held_ids(c);
	if (jv_array_length(jv_copy(ids)) == 0) {
		jv_free(ids);
		return;
	}
	jv_free(mi_jobs_renew(c->db, ids, &err));
}

/* Chunks of the result into the store; an HTML page is refused before
 * anything is written. */
static int
sink(void *arg, const struct mi_http_resp *resp, const void *data,
    size_t len, struct mi_err *err)
{
	struct slot *s = arg;

	if (!s->checked) {
		const char *p = data;
		size_t i = 0;

		s->checked = 1;
		while (i < len && (p[i] == ' ' || p[i] == '\n' ||
		    p[i] == '\r' || p[i] == '\t'))
			i++;
		if (strncasecmp(resp->content_type, "text/html", 9) == 0 ||
		    (len - i >= 5 && (strncasecmp(p + i, "<html", 5) == 0 ||
		    strncasecmp(p + i, "<!doc", 5) == 0)))
			return mi_err_set(err, EX_PROTOCOL,
			    "the result is an HTML page, not media");
	}
	return mi_store_write(s->tx, data, len, err);
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
refresh(struct mi_fetch_pool *c, struct mi_provider *p, jv job)
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
		fatal(c, &err);
	return row;
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
fail_job(struct mi_fetch_pool *c, const char *id, const char *code,
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
		fatal(c, &err);
	return row;
}

/* The artifact already linked to a job, as a record. */
static jv
linked_artifact(struct mi_fetch_pool *c, const char *artifact_id)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[1] = { artifact_id };
	jv a = mi_db_json1(c->db, "SELECT to_jsonb(a) FROM app.artifacts a"
	    " WHERE a.id = $1::uuid", 1, params, &err);

	if (!jv_is_valid(a))
		fatal(c, &err);
	return mi_artifact_again(a);
}

static void
release(struct mi_fetch_pool *c, struct slot *s)
{
	struct mi_err err = MI_ERR_INIT;

	s->held = 0;
	if (mi_jobs_release(c->db, jv_array_append(jv_array(),
	    jv_string(s->id)), &err) == -1)
		fatal(c, &err);
}

/* The artifact a job got while this worker was fetching it, or null. */
static jv
stored_meanwhile(struct mi_fetch_pool *c, const char *id)
{
	struct mi_err err = MI_ERR_INIT;
	const char *aid = NULL;
	jv rows = mi_jobs_get(c->db, jv_array_append(jv_array(),
	    jv_string(id)), &err), row, a = jv_null();

	if (!jv_is_valid(rows))
		fatal(c, &err);
	row = jv_array_length(jv_copy(rows)) > 0 ?
	    jv_array_get(jv_copy(rows), 0) : jv_null();
	jv_free(rows);
	if (jv_get_kind(row) == JV_KIND_OBJECT &&
	    mi_json_str(row, "artifact_id", &aid, 0, NULL) == 1)
		a = linked_artifact(c, aid);
	jv_free(row);
	return a;
}

static void begin(struct slot *s);
static void start(struct slot *s);

/*
 * Takes the job's lease; while another worker holds it, waits (2 leases
 * at most, trying every 500 ms) for that worker to store the result.
 */
static void
take(struct slot *s)
{
	struct mi_fetch_pool *c = s->c;
	struct mi_err err = MI_ERR_INIT;
	const char *owner = NULL, *aid = NULL;
	jv rows, row;

	mi_json_str(s->job, "lease_owner", &owner, 0, NULL);
	rows = mi_jobs_take(c->db, jv_array_append(jv_array(),
	    jv_array_append(jv_array_append(jv_array(), jv_string(s->id)),
	    owner ? jv_string(owner) : jv_null())), 1, &err);
	if (!jv_is_valid(rows))
		fatal(c, &err);
	if (jv_array_length(jv_copy(rows)) > 0) {
		jv_free(s->job);
		s->job = jv_array_get(rows, 0);
		s->held = 1;
		start(s);
		return;
	}
	jv_free(rows);
	rows = mi_jobs_get(c->db, jv_array_append(jv_array(),
	    jv_string(s->id)), &err);
	if (!jv_is_valid(rows))
		fatal(c, &err);
	row = jv_array_length(jv_copy(rows)) > 0 ?
	    jv_array_get(jv_copy(rows), 0) : jv_null();
	jv_free(rows);
	if (jv_get_kind(row) == JV_KIND_OBJECT &&
	    mi_json_str(row, "artifact_id", &aid, 0, NULL) == 1) {
		jv_free(s->job);
		s->job = jv_null();
		done(s, linked_artifact(c, aid));
		jv_free(row);
		return;
	}
	if (jv_get_kind(row) != JV_KIND_OBJECT || mi_now_ms() > s->take_until) {
		jv_free(row);
		emit_error(s, s->job, "TIMEOUT", "the job is held by another "
		    "worker", 1);
		s->job = jv_null();
		return;
	}
	jv_free(row);
	s->state = S_TAKING;
	s->wake = mi_now_ms() + 500;
}

/* A record read: passed through, refused, or its job taken. */
static void
begin(struct slot *s)
{
	struct mi_fetch_pool *c = s->c;
	const char *st = NULL, *aid = NULL, *id = NULL;
	jv job = s->job, art;

	s->job = jv_null();
	s->tries = s->gone = s->refreshed = 0;
	if (mi_json_has_error(job)) {
		c->failed = 1;
		done(s, job);
		return;
	}
	if (mi_step_is_artifact(job)) {
		/* A step answered with its artifact (stored before, or from
		 * the step cache): nothing to fetch. */
		done(s, job);
		return;
	}
	if (jv_get_kind(job) != JV_KIND_OBJECT ||
	    mi_json_str(job, "id", &id, 1, NULL) != 1 ||
	    mi_json_str(job, "status", &st, 1, NULL) != 1) {
		if (jv_get_kind(job) != JV_KIND_OBJECT)
			job = jv_object_set(jv_object(), jv_string("job"), job);
		emit_error(s, job, "VALIDATION_ERROR",
		    "not a job record (no id or status)", 0);
		return;
	}
	snprintf(s->id, sizeof(s->id), "%s", id);
	if (strcmp(st, "failed") == 0 || strcmp(st, "timed_out") == 0) {
		const char *code = "PROVIDER_ERROR", *msg = "the job failed";

		mi_json_str(job, "error_code", &code, 0, NULL);
		mi_json_str(job, "error_message", &msg, 0, NULL);
		c->failed = 1;
		done(s, mi_json_error(job, code, msg, 0));
		return;
	}
	if (strcmp(st, "completed") != 0) {
		char msg[80];

		snprintf(msg, sizeof(msg), "the job is %s, not completed", st);
		emit_error(s, job, "VALIDATION_ERROR", msg, 0);
		return;
	}
	if (mi_json_str(job, "artifact_id", &aid, 0, NULL) == 1) {
		art = linked_artifact(c, aid);
		if (jv_get_kind(art) == JV_KIND_OBJECT) {
			jv_free(job);
			done(s, art);
			return;
		}
		jv_free(art);
	}
	s->job = job;
	s->take_until = mi_now_ms() + 2 * mi_jobs_lease_ms();
	take(s);
}

/* The job just taken: its provider and the names of its result. */
static int
prepare(struct slot *s)
{
	struct mi_err err = MI_ERR_INIT;
	const char *prov = NULL, *v = NULL;
	jv r;

	mi_json_str(s->job, "provider_id", &prov, 0, NULL);
	if ((s->p = mi_provider_get(prov, &err)) == NULL) {
		release(s->c, s);
		emit_error(s, s->job, "CONFIG_ERROR", err.msg, 0);
		s->job = jv_null();
		return -1;
	}
	/* The row may be replaced (a fresh result URL): copy its names. */
	memset(&s->req, 0, sizeof(s->req));
	s->tenant[0] = s->run[0] = s->type[0] = s->ext[0] = '\0';
	if (mi_json_str(s->job, "tenant_id", &v, 1, NULL) == 1)
		snprintf(s->tenant, sizeof(s->tenant), "%s", v);
	if (mi_json_str(s->job, "run_id", &v, 1, NULL) == 1)
		snprintf(s->run, sizeof(s->run), "%s", v);
	if (mi_json_str(s->job, "artifact_type", &v, 0, NULL) == 1 ||
	    mi_json_str(s->job, "media_type", &v, 1, NULL) == 1)
		snprintf(s->type, sizeof(s->type), "%s", v);
	s->req.tenant = s->tenant;
	s->req.run = s->run;
	s->req.type = s->type;
	r = jv_object_get(jv_object_get(jv_copy(s->job),
	    jv_string("provider_state")), jv_string("result"));
	if (jv_get_kind(r) == JV_KIND_OBJECT) {
		const char *e = NULL;

		if (mi_json_str(r, "ext", &e, 0, NULL) == 1 &&
		    mi_mime_by_ext(e) != NULL)
			snprintf(s->ext, sizeof(s->ext), "%s", e);
	}
	jv_free(r);
	s->req.declared_ext = s->ext[0] ? s->ext : NULL;
	s->req.from_provider = 1;
	s->req.max_size = s->c->max_size;
	return 0;
}

/* The download's end (on the multi handle, or at once for a spool file). */
static void
loaded(void *arg, int r, struct mi_http_resp *resp, struct mi_err *err)
{
	struct slot *s = arg;

	s->r = r;
	if (r == -1)
		s->err = *err;
	s->received = resp->received;
	s->content_length = resp->content_length;
	s->state = S_LOADED;
}

/* Starts (or starts again) the download of a job held. */
static void
start(struct slot *s)
{
	struct mi_err err = MI_ERR_INIT;
	const char *uri = NULL;

	if (s->p == NULL && prepare(s) == -1)
		return;
	s->state = S_LOADED;
	s->r = -1;
	s->checked = 0;
	mi_json_str(s->job, "result_uri", &uri, 0, NULL);
	if (uri == NULL) {
		mi_err_set(&s->err, EX_PROTOCOL, "the job has no result");
		return;
	}
	if ((s->tx = mi_store_begin(s->c->st, &s->req, &s->err)) == NULL)
		return;
	s->state = S_LOADING;
	if (mi_transport_fetch_start(s->c->m, &s->fetch, s->p,
	    fetch_input(s->job), uri, sink, s, loaded, &err) == -1) {
		s->state = S_LOADED;
		s->err = err;
	}
}

/* The result can't be stored (now): fail the job or leave it for
 * another try. */
static void
failed(struct slot *s)
{
	struct mi_fetch_pool *c = s->c;
	struct mi_err *err = &s->err;
	jv a = err->code == EX_NOINPUT ? stored_meanwhile(c, s->id) :
	    jv_null();
	const char *code = err->code == EX_IOERR ||
	    err->code == EX_CANTCREAT ? "STORAGE_ERROR" :
	    err->code == EX_CONFIG ? "CONFIG_ERROR" :
	    err->code == EX_TEMPFAIL ? "PROVIDER_UNAVAILABLE" :
	    "PROVIDER_ERROR";

	/* A worker that took the job over while this one was fetching
	 * stored and linked it, then removed the spool file. */
	if (jv_get_kind(a) == JV_KIND_OBJECT) {
		s->held = 0;
		jv_free(s->job);
		s->job = jv_null();
		done(s, a);
		return;
	}
	jv_free(a);
	if (err->code == EX_NOINPUT)
		mi_err_prefix(err, "the result is gone");
	/* A result that came and cannot be used fails the job; one that
	 * may come later keeps it for another try. */
	if (err->code == EX_PROTOCOL || err->code == EX_NOINPUT ||
	    err->code == EX_DATAERR) {
		jv f = fail_job(c, s->id, code, err->msg);

		s->held = 0;
		if (jv_get_kind(f) == JV_KIND_OBJECT) {
			jv_free(s->job);
			s->job = f;
		} else
			jv_free(f);
	} else
		release(c, s);
	emit_error(s, s->job, code, err->msg, err->code == EX_TEMPFAIL ||
	    err->code == EX_IOERR);
	s->job = jv_null();
}

static void stored(struct slot *s, struct mi_store_result *res);

/*
 * A download cut short or refused for a reason that may pass is tried
 * again this many times, the waits doubling from MI_FETCH_BACKOFF_MS up
 * to 30 s (about a minute in all by default): the result is paid for,
 * and a network that loses one answer in five still gets it.
 */
#define DOWNLOAD_RETRIES 6

/*
 * A download ended: stored, or tried again (transient failures and
 * truncation with backoff; a result that is gone once more, then afresh
 * from the provider), or failed.
 */
static void
after_load(struct slot *s)
{
	struct mi_fetch_pool *c = s->c;
	struct mi_store_result res;
	struct mi_err *err = &s->err;
	int r = s->r;

	if (r == 0 && s->received == 0)
		r = mi_err_set(err, EX_PROTOCOL, "the result is empty");
	if (r == 0 && s->content_length >= 0 &&
	    s->received != s->content_length)
		r = mi_err_set(err, EX_PROTOCOL, "the result is truncated "
		    "(%lld of %lld bytes)", s->received, s->content_length);
	if (r == -1 && s->tx)
		mi_store_abort(s->tx);
	else if (r == 0)
		r = mi_store_commit(s->tx, &res, err);
	s->tx = NULL;
	if (r == 0) {
		stored(s, &res);
		return;
	}
	if (err->code == EX_NOINPUT) {
		if (++s->gone <= 1) {
			s->state = S_BACKOFF;
			s->wake = mi_now_ms() + c->backoff_ms;
			return;
		}
		if (!s->refreshed) {
			jv row = refresh(c, s->p, s->job);

			s->refreshed = 1;
			if (jv_get_kind(row) == JV_KIND_OBJECT) {
				note(c, MI_NOTE_VERBOSE, "job %s: fetching a "
				    "fresh result URL", s->id);
				jv_free(s->job);
				s->job = row;
				s->gone = 0;
				start(s);
				return;
			}
			jv_free(row);
		}
	} else if ((err->code == EX_TEMPFAIL || (err->code == EX_PROTOCOL &&
	    strstr(err->msg, "truncated") != NULL) ||
	    strstr(err->msg, "transfer closed") != NULL) &&
	    ++s->tries <= DOWNLOAD_RETRIES) {
		long long wait = (long long)c->backoff_ms << (s->tries - 1);

		s->state = S_BACKOFF;
		s->wake = mi_now_ms() + (wait < 30000 ? wait : 30000);
		return;
	}
	failed(s);
}

/* A strict request's result misses it: the job fails and the next
 * provider of its chain makes it again (probe.h), in the same place of
 * the output. */
static void
strict_refused(struct slot *s, const char *msg)
{
	struct mi_err err = MI_ERR_INIT;
	jv f = fail_job(s->c, s->id, "PROVIDER_ERROR", msg), next;

	s->held = 0;
	note(s->c, MI_NOTE_WARN, "job %s: %s", s->id, msg);
	next = mi_probe_next(s->c->db, f, &err);
	if (!jv_is_valid(next))
		fatal(s->c, &err);
	jv_free(s->job);
	s->job = jv_null();
	s->p = NULL;
	if (jv_get_kind(next) == JV_KIND_OBJECT) {
		jv_free(f);
		s->job = next;
		begin(s);
		return;
	}
	jv_free(next);
	s->c->failed = 1;
	done(s, mi_json_error(f, "PROVIDER_ERROR", msg, 0));
}

/* The result is in the store: probe it, record the artifact, link it. */
static void
stored(struct slot *s, struct mi_store_result *res)
{
	struct mi_fetch_pool *c = s->c;
	struct mi_err err = MI_ERR_INIT;
	const char *uri = NULL, *artid = NULL;
	jv extra, art, p2, linked, job = s->job;
	int link_ok;

	extra = jv_object();
	extra = jv_object_set(extra, jv_string("skill_id"),
	    jv_object_get(jv_copy(job), jv_string("skill_id")));
	extra = jv_object_set(extra, jv_string("metadata"),
	    artifact_meta(job, s->p));
	extra = jv_object_set(extra, jv_string("run_step_id"),
	    jv_object_get(jv_copy(job), jv_string("run_step_id")));
	extra = jv_object_set(extra, jv_string("job_id"), jv_string(s->id));
	extra = jv_object_set(extra, jv_string("cache_hit"), jv_false());
	/* Facts, warnings, a model fitted to its budget (probe.h).  The
	 * leases are renewed first: nothing else runs while a probe or a
	 * fit lasts. */
	renew(c, 1);
	switch (mi_probe_stored(c->db, c->st, &s->req, res, jv_object_get(
	    jv_copy(job), jv_string("request")), &extra, &err)) {
	case -1:
		jv_free(extra);
		release(c, s);
		fatal(c, &err);
	case 1:
		jv_free(extra);
		strict_refused(s, err.msg);
		return;
	}
	art = mi_artifact_record(c->db, &s->req, res, extra, &err);
	if (!jv_is_valid(art)) {
		release(c, s);
		if (err.code == EX_TEMPFAIL || err.code == EX_UNAVAILABLE)
			fatal(c, &err);
		emit_error(s, job, "STORAGE_ERROR", err.msg, 0);
		s->job = jv_null();
		return;
	}
	mi_json_str(art, "id", &artid, 1, NULL);
	p2 = jv_object_set(jv_object(), jv_string("artifact_id"),
	    jv_string(artid));
	p2 = jv_object_set(p2, jv_string("release"), jv_true());
	linked = mi_jobs_patch(c->db, s->id, p2, &err);
	if (!jv_is_valid(linked))
		fatal(c, &err);
	s->held = 0;
	/* A lease lost meanwhile: the job's new holder links the same
	 * stored bytes, and needs the spool file for it. */
	link_ok = jv_get_kind(linked) == JV_KIND_OBJECT;
	jv_free(linked);
	/* Only a stored result enters the step cache. */
	if (mi_step_cache_put(c->db, s->id, artid, &err) == -1)
		fatal(c, &err);
	if (link_ok && mi_json_str(job, "result_uri", &uri, 0, NULL) == 1 &&
	    strncmp(uri, "file://", 7) == 0)
		unlink(uri + 7);
	{
		double cost = 0;
		const char *src = "estimate";

		mi_json_num(job, "cost_usd", &cost, 0, NULL);
		mi_json_str(job, "cost_source", &src, 0, NULL);
		note(c, MI_NOTE_INFO, "job %s: stored %s (%lld bytes%s), "
		    "cost $%.4f (%s)", s->id, res->rel, res->size,
		    res->deduplicated ? ", deduplicated" : "", cost, src);
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
			note(c, MI_NOTE_WARN, "job %s: %s: %s", s->id, code,
			    msg);
			jv_free(e);
		}
		jv_free(w);
	}
	jv_free(job);
	s->job = jv_null();
	done(s, art);
}

static void
slot_free(struct slot *s)
{
	if (s->tx)
		mi_store_abort(s->tx);
	jv_free(s->job);
	jv_free(s->out);
	free(s);
}

void
mi_fetch_pool_flush(struct mi_fetch_pool *c)
{
	struct mi_err err = MI_ERR_INIT;
	struct slot *s;

	/* Group commit: the rows these records report durable first. */
	if ((s = c->head) != NULL && s->state == S_DONE &&
	    mi_db_durable(c->db, &err) == -1)
		fatal(c, &err);
	while ((s = c->head) != NULL && s->state == S_DONE) {
		c->head = s->next;
		if (c->head == NULL)
			c->tail = &c->head;
		c->o.out(c->o.arg, s->out);
		s->out = jv_null();
		slot_free(s);
	}
}

static struct slot *
slot_add(struct mi_fetch_pool *c, jv rec)
{
	struct slot *s = calloc(1, sizeof(*s));
	struct mi_err err = MI_ERR_INIT;

	if (s == NULL) {
		mi_err_set(&err, EX_OSERR, "out of memory");
		fatal(c, &err);
	}
	s->c = c;
	s->job = rec;
	s->out = jv_null();
	s->state = S_TAKING;
	*c->tail = s;
	c->tail = &s->next;
	return s;
}

long long
mi_fetch_pool_step(struct mi_fetch_pool *c)
{
	long long now = mi_now_ms(), next = now + 200;
	struct slot *s;
	int again = 1;

	renew(c, 0);
	while (again && !stopped(c)) {
		again = 0;
		for (s = c->head; s && !stopped(c); s = s->next) {
			if (s->state == S_LOADED) {
				after_load(s);
				again = 1;
			} else if ((s->state == S_TAKING ||
			    s->state == S_BACKOFF) && s->wake <= mi_now_ms()) {
				if (s->state == S_TAKING)
					take(s);
				else
					start(s);
				again = 1;
			}
		}
	}
	for (s = c->head; s; s = s->next)
		if ((s->state == S_TAKING || s->state == S_BACKOFF) &&
		    s->wake < next)
			next = s->wake;
	return next;
}

void
mi_fetch_pool_stop(struct mi_fetch_pool *c)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_buf names;
	struct slot *s;
	int n, sig = c->o.stop != NULL ? (int)*c->o.stop : 0;
	jv ids;

	mi_http_multi_free(c->m);
	c->m = NULL;
	ids = held_ids(c);
	n = jv_array_length(jv_copy(ids));
	mi_buf_init(&names, 0);
	for (s = c->head; s; s = s->next)
		if (s->held) {
			mi_buf_adds(&names, names.len ? ", " : "");
			mi_buf_adds(&names, s->id);
			s->held = 0;
		}
	if (n > 0 && mi_jobs_release(c->db, ids, &err) == -1)
		note(c, MI_NOTE_WARN, "%s", err.msg);
	else if (n == 0)
		jv_free(ids);
	if (n > 0)
		note(c, MI_NOTE_INFO, "stopped by signal %d; job%s %s "
		    "released", sig, n > 1 ? "s" : "", names.buf);
	else
		note(c, MI_NOTE_INFO, "stopped by signal %d", sig);
	mi_buf_release(&names);
	while ((s = c->head) != NULL) {
		c->head = s->next;
		slot_free(s);
	}
	c->tail = &c->head;
}


struct mi_fetch_pool *
mi_fetch_pool_new(struct mi_db *db, struct mi_store *st,
    const struct mi_fetch_pool_opts *o, struct mi_err *err)
{
	struct mi_fetch_pool *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	c->o = *o;
	c->db = db;
	c->st = st;
	c->jobs = o->jobs;
	c->max_size = o->max_size;
	c->backoff_ms = o->backoff_ms;
	c->tail = &c->head;
	c->renewed = mi_now_ms();
	if ((c->m = mi_http_multi_new(c->jobs, err)) == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

void
mi_fetch_pool_free(struct mi_fetch_pool *c)
{
	struct slot *s;

	if (c == NULL)
		return;
	while ((s = c->head) != NULL) {
		c->head = s->next;
		slot_free(s);
	}
	mi_http_multi_free(c->m);
	free(c);
}

void
mi_fetch_pool_add(struct mi_fetch_pool *c, jv rec)
{
	begin(slot_add(c, rec));
}

void
mi_fetch_pool_add_invalid(struct mi_fetch_pool *c, const char *msg)
{
	emit_error(slot_add(c, jv_null()), jv_object(), "INVALID_JSON", msg,
	    0);
}

int
mi_fetch_pool_count(const struct mi_fetch_pool *c)
{
	const struct slot *s;
	int all = 0;

	for (s = c->head; s; s = s->next)
		all++;
	return all;
}

int
mi_fetch_pool_room(const struct mi_fetch_pool *c)
{
	const struct slot *s;
	int busy = 0, all = 0;

	for (s = c->head; s; s = s->next, all++)
		busy += s->state != S_DONE;
	return busy < c->jobs && all < AHEAD * c->jobs;
}

int
mi_fetch_pool_wait(struct mi_fetch_pool *c, const int *fds, int nfds,
    long timeout_ms, struct mi_err *err)
{
	return mi_http_multi_wait(c->m, fds, nfds, timeout_ms, err);
}

void
mi_fetch_pool_stats(const struct mi_fetch_pool *c,
    struct mi_fetch_pool_stats *st)
{
	st->failed = c->failed;
	st->config = c->config;
}
