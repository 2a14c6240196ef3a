/*
 * fetch/job.c - one record's way to its artifact (fetch/fetch.h): its
 * job taken, its result downloaded into the store (tried again, or
 * fetched afresh), probed, recorded and linked to the job.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
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

/* The job was not taken: stored by another worker meanwhile, or held by
 * one (waited for 2 leases at most, trying every 500 ms). */
static void
not_taken(struct slot *s)
{
	struct mi_fetch_pool *c = s->c;
	jv art;
	int found;

	art = fetch_stored_meanwhile(c, s->id, &found);
	if (jv_get_kind(art) == JV_KIND_OBJECT) {
		jv_free(s->job);
		s->job = jv_null();
		fetch_done(s, art);
		return;
	}
	jv_free(art);
	if (!found || mi_now_ms() > s->take_until) {
		fetch_error(s, s->job, "TIMEOUT", "the job is held by another "
		    "worker", 1);
		s->job = jv_null();
		return;
	}
	s->state = S_TAKING;
	s->wake = mi_now_ms() + 500;
}

/* Slots taken in one statement at most. */
#define TAKE_BATCH 64

/*
 * Takes the leases of every job due (S_TAKING, its wake passed) in one
 * statement, and starts the download of each job taken.  Returns how
 * many slots it tried.
 */
int
fetch_take_due(struct mi_fetch_pool *c)
{
	struct mi_err err = MI_ERR_INIT;
	struct slot *v[TAKE_BATCH], *s;
	long long now = mi_now_ms();
	jv pairs = jv_array(), rows;
	int i, k, n = 0, nrows;

	for (s = c->head; s && n < TAKE_BATCH; s = s->next) {
		const char *owner = NULL;

		if (s->state != S_TAKING || s->wake > now)
			continue;
		v[n++] = s;
		mi_json_str(s->job, "lease_owner", &owner, 0, NULL);
		pairs = jv_array_append(pairs, jv_array_append(jv_array_append(
		    jv_array(), jv_string(s->id)), owner ? jv_string(owner) :
		    jv_null()));
	}
	if (n == 0) {
		jv_free(pairs);
		return 0;
	}
	/* Claimed before the statement: a slot is tried once a turn. */
	for (i = 0; i < n; i++)
		v[i]->wake = LLONG_MAX;
	rows = mi_jobs_take(c->db, pairs, 1, &err);
	if (!jv_is_valid(rows))
		fetch_fatal(c, &err);
	nrows = jv_array_length(jv_copy(rows));
	for (k = 0; k < nrows; k++) {
		jv row = jv_array_get(jv_copy(rows), k);
		const char *id = NULL;

		mi_json_str(row, "id", &id, 1, NULL);
		for (i = 0; i < n; i++)
			if (v[i] != NULL && id && strcmp(v[i]->id, id) == 0)
				break;
		if (i == n) {
			jv_free(row);
			continue;
		}
		s = v[i];
		v[i] = NULL;
		jv_free(s->job);
		s->job = row;
		s->held = 1;
		fetch_start(s);
	}
	jv_free(rows);
	for (i = 0; i < n; i++)
		if (v[i] != NULL)
			not_taken(v[i]);
	return n;
}

/* A record read: passed through, refused, or its job taken. */
void
fetch_begin(struct slot *s)
{
	struct mi_fetch_pool *c = s->c;
	const char *st = NULL, *aid = NULL, *id = NULL;
	jv job = s->job, art;

	s->job = jv_null();
	s->tries = s->gone = s->refreshed = 0;
	if (mi_json_has_error(job)) {
		c->failed = 1;
		fetch_done(s, job);
		return;
	}
	if (mi_step_is_artifact(job)) {
		/* A step answered with its artifact (stored before, or from
		 * the step cache): nothing to fetch. */
		fetch_done(s, job);
		return;
	}
	if (jv_get_kind(job) != JV_KIND_OBJECT ||
	    mi_json_str(job, "id", &id, 1, NULL) != 1 ||
	    mi_json_str(job, "status", &st, 1, NULL) != 1) {
		if (jv_get_kind(job) != JV_KIND_OBJECT)
			job = jv_object_set(jv_object(), jv_string("job"), job);
		fetch_error(s, job, "VALIDATION_ERROR",
		    "not a job record (no id or status)", 0);
		return;
	}
	snprintf(s->id, sizeof(s->id), "%s", id);
	if (strcmp(st, "failed") == 0 || strcmp(st, "timed_out") == 0) {
		const char *code = "PROVIDER_ERROR", *msg = "the job failed";

		mi_json_str(job, "error_code", &code, 0, NULL);
		mi_json_str(job, "error_message", &msg, 0, NULL);
		c->failed = 1;
		fetch_done(s, mi_json_error(job, code, msg, 0));
		return;
	}
	if (strcmp(st, "completed") != 0) {
		char msg[80];

		snprintf(msg, sizeof(msg), "the job is %s, not completed", st);
		fetch_error(s, job, "VALIDATION_ERROR", msg, 0);
		return;
	}
	if (mi_json_str(job, "artifact_id", &aid, 0, NULL) == 1) {
		art = fetch_linked_artifact(c, aid);
		if (jv_get_kind(art) == JV_KIND_OBJECT) {
			jv_free(job);
			fetch_done(s, art);
			return;
		}
		jv_free(art);
	}
	s->job = job;
	s->take_until = mi_now_ms() + 2 * mi_jobs_lease_ms();
	/* Taken with the other records of this turn (fetch_take_due). */
	s->state = S_TAKING;
	s->wake = 0;
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
		fetch_release(s->c, s);
		fetch_error(s, s->job, "CONFIG_ERROR", err.msg, 0);
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
void
fetch_start(struct slot *s)
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
	/* A spool file (a synchronous answer) becomes the stored file: no
	 * second file, no copy. */
	if ((s->tx = strncmp(uri, "file://", 7) == 0 ?
	    mi_store_begin_adopt(s->c->st, &s->req, uri + 7, &s->err) :
	    mi_store_begin(s->c->st, &s->req, &s->err)) == NULL)
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
	jv a = err->code == EX_NOINPUT ?
	    fetch_stored_meanwhile(c, s->id, NULL) : jv_null();
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
		fetch_done(s, a);
		return;
	}
	jv_free(a);
	if (err->code == EX_NOINPUT)
		mi_err_prefix(err, "the result is gone");
	/* A result that came and cannot be used fails the job; one that
	 * may come later keeps it for another try. */
	if (err->code == EX_PROTOCOL || err->code == EX_NOINPUT ||
	    err->code == EX_DATAERR) {
		jv f = fetch_fail_job(c, s->id, code, err->msg);

		s->held = 0;
		if (jv_get_kind(f) == JV_KIND_OBJECT) {
			jv_free(s->job);
			s->job = f;
		} else
			jv_free(f);
	} else
		fetch_release(c, s);
	fetch_error(s, s->job, code, err->msg, err->code == EX_TEMPFAIL ||
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
void
fetch_after_load(struct slot *s)
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
		r = mi_store_commit_deferred(s->tx, &res, err);
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
			jv row = fetch_refresh(c, s->p, s->job);

			s->refreshed = 1;
			if (jv_get_kind(row) == JV_KIND_OBJECT) {
				fetch_note(c, MI_NOTE_VERBOSE, "job %s: "
				    "fetching a fresh result URL", s->id);
				jv_free(s->job);
				s->job = row;
				s->gone = 0;
				fetch_start(s);
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
	jv f = fetch_fail_job(s->c, s->id, "PROVIDER_ERROR", msg), next;

	s->held = 0;
	fetch_note(s->c, MI_NOTE_WARN, "job %s: %s", s->id, msg);
	next = mi_probe_next(s->c->db, f, &err);
	if (!jv_is_valid(next))
		fetch_fatal(s->c, &err);
	jv_free(s->job);
	s->job = jv_null();
	s->p = NULL;
	if (jv_get_kind(next) == JV_KIND_OBJECT) {
		jv_free(f);
		s->job = next;
		fetch_begin(s);
		return;
	}
	jv_free(next);
	s->c->failed = 1;
	fetch_done(s, mi_json_error(f, "PROVIDER_ERROR", msg, 0));
}

/*
 * The rows of stored results, all in one transaction: for each slot the
 * artifact (an insert that finds the row a first run made); then the
 * jobs' links to them in one statement (links[i]: the job's row, null
 * when its lease was lost); then the step cache entries (sent with the
 * commit).  A transaction lost with its connection runs again from the
 * start: a first run that did commit left the jobs released, so the
 * links find no row, as for a lease lost.  Returns 0 with arts[] and
 * links[] filled, or -1 and err (nothing written).
 */
static int
record_rows(struct mi_fetch_pool *c, struct slot **v, int n, jv *arts,
    jv *links, struct mi_err *err)
{
	const char *artid = NULL;
	jv items, rows = jv_invalid();
	int i, k, try;

	for (try = 0; try < 3; try++) {
		if (try > 0)
			*err = (struct mi_err)MI_ERR_INIT;
		for (i = 0; i < n; i++)
			arts[i] = links[i] = jv_invalid();
		if (mi_db_begin(c->db, err) == -1)
			return -1;
		items = jv_array();
		for (i = 0; i < n; i++) {
			jv p;

			arts[i] = mi_artifact_record(c->db, &v[i]->req,
			    v[i]->res, jv_copy(v[i]->extra), err);
			if (!jv_is_valid(arts[i]))
				break;
			mi_json_str(arts[i], "id", &artid, 1, NULL);
			p = jv_object_set(jv_object(),
			    jv_string("artifact_id"), jv_string(artid));
			p = jv_object_set(p, jv_string("release"), jv_true());
			items = jv_array_append(items, jv_object_set(
			    jv_object_set(jv_object(), jv_string("id"), jv_string(v[i]->id)), jv_string("p"), p));
		}
		if (i == n) {
			rows = mi_jobs_patch_many(c->db, items, err);
			items = jv_null();
		}
		jv_free(items);
		for (k = 0; i == n && jv_is_valid(rows) && k < n; k++) {
			links[k] = jv_object_get(jv_copy(rows),
			    jv_string(v[k]->id));
			if (jv_get_kind(links[k]) != JV_KIND_OBJECT) {
				jv_free(links[k]);
				links[k] = jv_null();	/* lease lost */
			}
			mi_json_str(arts[k], "id", &artid, 1, NULL);
			if (mi_step_cache_put(c->db, v[k]->id, artid,
			    err) == -1) {
				jv_free(rows);
				rows = jv_invalid();
			}
		}
		/* Durable with its commit: the records that report these
		 * rows need no barrier of their own (fetch/pool.c). */
		if (i == n && jv_is_valid(rows) &&
		    mi_db_commit_durable(c->db, err) == 0) {
			jv_free(rows);
			return 0;
		}
		jv_free(rows);
		rows = jv_invalid();
		for (k = 0; k < n; k++) {
			jv_free(arts[k]);
			jv_free(links[k]);
			arts[k] = links[k] = jv_invalid();
		}
		mi_db_rollback(c->db);
		if (!mi_db_tx_lost(c->db))
			return -1;
	}
	return -1;
}

static void stored_rows(struct slot *s, jv art, jv linked);

/* The rows of one slot, in a transaction of its own. */
static void
record_one(struct slot *s)
{
	struct mi_fetch_pool *c = s->c;
	struct mi_err err = MI_ERR_INIT;
	jv art, linked;

	if (record_rows(c, &s, 1, &art, &linked, &err) == -1) {
		fetch_release(c, s);
		if (err.code == EX_TEMPFAIL || err.code == EX_UNAVAILABLE)
			fetch_fatal(c, &err);
		fetch_error(s, s->job, "STORAGE_ERROR", err.msg, 0);
		s->job = jv_null();
		return;
	}
	stored_rows(s, art, linked);
}

/* Slots stored at once: their rows wait, beyond this many, for the next
 * transaction. */
#define ROWS_BATCH 64

void
fetch_record_stored(struct mi_fetch_pool *c)
{
	struct mi_err err = MI_ERR_INIT;
	struct slot *v[ROWS_BATCH], *s;
	jv arts[ROWS_BATCH], links[ROWS_BATCH];
	int i, n;

	for (;;) {
		n = 0;
		for (s = c->head; s && n < ROWS_BATCH; s = s->next)
			if (s->state == S_STORED)
				v[n++] = s;
		if (n == 0)
			return;
		/* The new names durable before any row points at them. */
		if (mi_store_sync(c->st, &err) == -1) {
			for (i = 0; i < n; i++) {
				fetch_release(c, v[i]);
				fetch_error(v[i], v[i]->job, "STORAGE_ERROR",
				    err.msg, 1);
				v[i]->job = jv_null();
			}
			continue;
		}
		if (n == 1) {
			record_one(v[0]);
			continue;
		}
		if (record_rows(c, v, n, arts, links, &err) == 0) {
			for (i = 0; i < n; i++)
				stored_rows(v[i], arts[i], links[i]);
			continue;
		}
		if (err.code == EX_TEMPFAIL || err.code == EX_UNAVAILABLE) {
			for (i = 0; i < n; i++)
				fetch_release(c, v[i]);
			fetch_fatal(c, &err);
		}
		/* One slot's rows failed the batch: each alone, so that only
		 * its own record says so. */
		for (i = 0; i < n; i++)
			record_one(v[i]);
	}
}

/* The result is in the store: probe it, record the artifact, link it. */
static void
stored(struct slot *s, struct mi_store_result *res)
{
	struct mi_fetch_pool *c = s->c;
	struct mi_err err = MI_ERR_INIT;
	jv extra, job = s->job;

	extra = jv_object();
	extra = jv_object_set(extra, jv_string("skill_id"),
	    jv_object_get(jv_copy(job), jv_string("skill_id")));
	extra = jv_object_set(extra, jv_string("metadata"),
	    fetch_artifact_meta(job, s->p));
	extra = jv_object_set(extra, jv_string("run_step_id"),
	    jv_object_get(jv_copy(job), jv_string("run_step_id")));
	extra = jv_object_set(extra, jv_string("job_id"), jv_string(s->id));
	extra = jv_object_set(extra, jv_string("cache_hit"), jv_false());
	/* Facts, warnings, a model fitted to its budget (probe.h).  The
	 * leases are renewed first: nothing else runs while a probe or a
	 * fit lasts. */
	fetch_renew(c, 1);
	switch (mi_probe_stored(c->db, c->st, &s->req, res, jv_object_get(
	    jv_copy(job), jv_string("request")), &extra, &err)) {
	case -1:
		jv_free(extra);
		fetch_release(c, s);
		fetch_fatal(c, &err);
	case 1:
		jv_free(extra);
		strict_refused(s, err.msg);
		return;
	}
	/* The artifact row, its link to the job and the step cache entry
	 * commit together, with those of the other results stored now,
	 * once the directories they were linked into are durable
	 * (fetch_record_stored). */
	if ((s->res = malloc(sizeof(*res))) == NULL) {
		jv_free(extra);
		fetch_release(c, s);
		mi_err_set(&err, EX_OSERR, "out of memory");
		fetch_fatal(c, &err);
	}
	*s->res = *res;
	jv_free(s->extra);
	s->extra = extra;
	s->state = S_STORED;
}

/* The rows are written: art and linked (consumed) are what they gave. */
static void
stored_rows(struct slot *s, jv art, jv linked)
{
	struct mi_fetch_pool *c = s->c;
	struct mi_store_result *res = s->res;
	const char *uri = NULL;
	jv job = s->job;
	int link_ok;

	s->held = 0;
	/* A lease lost meanwhile: the job's new holder links the same
	 * stored bytes, and needs the spool file for it. */
	link_ok = jv_get_kind(linked) == JV_KIND_OBJECT;
	jv_free(linked);
	if (link_ok && mi_json_str(job, "result_uri", &uri, 0, NULL) == 1 &&
	    strncmp(uri, "file://", 7) == 0)
		unlink(uri + 7);
	{
		double cost = 0;
		const char *src = "estimate";

		mi_json_num(job, "cost_usd", &cost, 0, NULL);
		mi_json_str(job, "cost_source", &src, 0, NULL);
		fetch_note(c, MI_NOTE_INFO, "job %s: stored %s (%lld bytes%s), "
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
			fetch_note(c, MI_NOTE_WARN, "job %s: %s: %s", s->id,
			    code, msg);
			jv_free(e);
		}
		jv_free(w);
	}
	jv_free(job);
	s->job = jv_null();
	fetch_done(s, art);
}
