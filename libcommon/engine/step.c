/*
 * engine/step.c - a job's steps with its provider: create and poll, and
 * what their outcomes do.
 *
 * A create is recorded as sent before it is sent, so an unknown outcome
 * is never sent twice (mi-recover reconciles it).  An outcome is written
 * at once; a retryable one is retried with backoff, a failure falls back
 * to the next provider of the chain when eligible, a job past its
 * deadline gets one last poll and then times out (cancelled at the
 * provider when it can be).  Only the per-poll counters wait: for the
 * batched flush when progress changed, else for the lease renewal
 * (takeover.c).  An outcome that comes while the database
 * is away is held, and written once it is back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "jobs.h"
#include "mime.h"
#include "json.h"
#include "names.h"
#include "provider.h"
#include "webhook.h"
#include "engine/engine.h"
#include "banned.h"

#define REF_MAX		(20 * 1024 * 1024)
/* How long after its deadline a job still gets its last poll. */
#define LAST_LOOK_MS	(5 * 60 * 1000LL)

/*
 * While the database is away (db.c connecting again), the loop goes on
 * so that exchanges under way end, but their outcomes are held: each is
 * written once the database is back, so an answer that came is never
 * asked for again (a create never sent twice) because of the outage.
 */
static int
hold(struct rjob *j, jv out, void (*cb)(void *, jv))
{
	struct mi_runner *r = j->r;
	struct held *h;

	if (!r->db_waiting || (h = calloc(1, sizeof(*h))) == NULL)
		return 0;
	h->j = j;
	h->out = out;
	h->cb = cb;
	*r->held_tail = h;
	r->held_tail = &h->next;
	return 1;
}

/* Runs the outcomes held while the database was away. */
void
eng_release_held(struct mi_runner *r)
{
	struct held *h;

	while ((h = r->held) != NULL && !r->db_waiting) {
		r->held = h->next;
		if (r->held == NULL)
			r->held_tail = &r->held;
		h->cb(h->j, h->out);
		free(h);
	}
}

/* Outcomes. */

static void finish_failed(struct mi_runner *r, struct rjob *j, jv outcome,
    const char *status);
static void time_out(struct mi_runner *r, struct rjob *j);
static void remote_cancel(struct mi_runner *r, struct rjob *j);

static int
fallback_eligible(const char *code)
{
	return strcmp(code, "VALIDATION_ERROR") != 0 &&
	    strcmp(code, "BUDGET_EXCEEDED") != 0 &&
	    strcmp(code, "STORAGE_ERROR") != 0;
}

/* Starts the next provider of j's chain; 0 when one took over. */
static int
fall_back(struct mi_runner *r, struct rjob *j, jv row)
{
	jv req = jv_object_get(jv_copy(row), jv_string("request"));
	jv cand = jv_object_get(jv_copy(row), jv_string("fallback"));
	struct choice c;
	int rc = -1;

	if (jv_get_kind(cand) != JV_KIND_ARRAY ||
	    jv_array_length(jv_copy(cand)) == 0 ||
	    jv_get_kind(req) != JV_KIND_OBJECT) {
		jv_free(cand);
		jv_free(req);
		return -1;
	}
	if (eng_choose(r, req, cand, 0, &c) == 0) {
		eng_note(r, MI_NOTE_INFO, "job %s: %s failed; falling back "
		    "to %s", j->id, mi_provider_id(j->p), mi_provider_id(c.p));
		rc = eng_enqueue(r, req, &c, j->id, j->step_attempt);
	} else if (!r->fatal)
		eng_note(r, MI_NOTE_WARN, "job %s: no fallback left: %s", j->id,
		    c.msg);
	jv_free(c.rest);
	jv_free(req);
	return rc;
}

static void
finish_failed(struct mi_runner *r, struct rjob *j, jv outcome,
    const char *status)
{
	struct mi_err err = MI_ERR_INIT;
	jv e = jv_object_get(jv_copy(outcome), jv_string("error"));
	const char *code = "PROVIDER_ERROR", *msg = "the provider failed";
	jv p = jv_object(), cost, row;
	int retryable = 0, allowed, chain, k;
	long window, cooldown;
	char code_s[40], msg_s[300];

	if (jv_get_kind(e) == JV_KIND_OBJECT) {
		mi_json_str(e, "code", &code, 0, NULL);
		mi_json_str(e, "message", &msg, 0, NULL);
		mi_json_bool(e, "retryable", &retryable, 0, NULL);
	}
	snprintf(code_s, sizeof(code_s), "%s", code);
	snprintf(msg_s, sizeof(msg_s), "%s", msg);
	msg = msg_s;
	p = jv_object_set(p, jv_string("status"), jv_string(status));
	p = jv_object_set(p, jv_string("error_code"), jv_string(code));
	p = jv_object_set(p, jv_string("error_message"), jv_string(msg));
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	p = jv_object_set(p, jv_string("attempts"), jv_number(j->attempts));
	if (j->progress > 0)
		p = jv_object_set(p, jv_string("progress"),
		    jv_number(j->progress));
	p = jv_object_set(p, jv_string("release"), jv_true());
	cost = jv_object_get(jv_copy(outcome), jv_string("cost_usd"));
	if (jv_get_kind(cost) == JV_KIND_NUMBER) {
		p = jv_object_set(p, jv_string("cost_usd"), cost);
		p = jv_object_set(p, jv_string("cost_source"),
		    jv_string("provider"));
	} else if (!j->accepted) {
		/* A refused create was not charged. */
		jv_free(cost);
		p = jv_object_set(p, jv_string("cost_usd"), jv_number(0));
		p = jv_object_set(p, jv_string("cost_source"),
		    jv_string("provider"));
	} else
		jv_free(cost);
	jv_free(e);
	jv_free(outcome);
	if (fallback_eligible(code_s) && strcmp(code_s, "CONFIG_ERROR") != 0 &&
	    strcmp(code_s, "VALIDATION_ERROR") != 0) {
		mi_provider_cooldown(j->p, &allowed, &window, &cooldown);
		if (mi_jobs_provider_failed(r->db, mi_provider_id(j->p),
		    allowed, window, cooldown, msg, &err) == 1)
			eng_note(r, MI_NOTE_WARN, "provider '%s' failed more "
			    "than %d times: cooling down for %ld ms",
			    mi_provider_id(j->p), allowed, cooldown);
		else if (err.code) {
			jv_free(p);
			eng_fatal(r, &err);
			return;
		}
	}
	/*
	 * The failure and the job that replaces it are written together:
	 * nobody who asks for the step in between sees a chain that ended
	 * and starts a second one.
	 */
	chain = fallback_eligible(code_s) && j->fallback != NULL &&
	    strcmp(j->fallback, "[]") != 0;
	if (chain && mi_db_begin(r->db, &err) == -1) {
		jv_free(p);
		eng_fatal(r, &err);
		return;
	}
	row = eng_patch(r, j, p);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		if (chain)
			mi_db_rollback(r->db);
		return;
	}
	eng_note(r, MI_NOTE_VERBOSE, "job %s: %s %s: %s", j->id,
	    mi_provider_id(j->p), status, msg);
	if (chain) {
		k = fall_back(r, j, row);
		if (r->fatal)
			mi_db_rollback(r->db);
		else if (mi_db_commit(r->db, &err) == -1)
			eng_fatal(r, &err);
		if (k == 0 || r->fatal) {
			jv_free(row);
			eng_drop(r, j);
			return;
		}
	}
	eng_drop(r, j);
	eng_emit(r, eng_with_error(row, retryable));
}

static void
finish_completed(struct mi_runner *r, struct rjob *j, jv outcome)
{
	jv res = jv_object_get(jv_copy(outcome), jv_string("result"));
	jv p = jv_object(), st, cost, meta, url, file, exp;
	char uri[4200];
	double c = 0;
	int have_cost = 0;

	if (jv_get_kind(res) != JV_KIND_OBJECT) {
		jv_free(res);
		jv_free(outcome);
		finish_failed(r, j, mi_outcome_error("failed",
		    "PROVIDER_ERROR", "completed without a result", 0),
		    "failed");
		return;
	}
	url = jv_object_get(jv_copy(res), jv_string("url"));
	file = jv_object_get(jv_copy(res), jv_string("file"));
	if (jv_get_kind(url) == JV_KIND_STRING)
		snprintf(uri, sizeof(uri), "%s", jv_string_value(url));
	else if (jv_get_kind(file) == JV_KIND_STRING)
		snprintf(uri, sizeof(uri), "file://%s", jv_string_value(file));
	else
		uri[0] = '\0';
	jv_free(url);
	jv_free(file);
	if (uri[0] == '\0') {
		jv_free(res);
		jv_free(outcome);
		finish_failed(r, j, mi_outcome_error("failed",
		    "PROVIDER_ERROR", "the result has no location", 0),
		    "failed");
		return;
	}
	st = jv_object_get(jv_copy(outcome), jv_string("state"));
	if (jv_get_kind(st) != JV_KIND_OBJECT) {
		jv_free(st);
		st = jv_object();
	}
	exp = jv_object_get(jv_copy(res), jv_string("expires_at"));
	if (jv_get_kind(exp) == JV_KIND_NUMBER && jv_number_value(exp) > 0)
		p = jv_object_set(p, jv_string("result_expires_ms"), exp);
	else {
		jv ttl = jv_object_get(mi_provider_meta(j->p),
		    jv_string("result_ttl_s"));

		jv_free(exp);
		if (jv_get_kind(ttl) == JV_KIND_NUMBER)
			p = jv_object_set(p, jv_string("result_expires_ms"),
			    jv_number((double)mi_wall_ms() +
			    jv_number_value(ttl) * 1000));
		jv_free(ttl);
	}
	st = jv_object_set(st, jv_string("result"), res);
	p = jv_object_set(p, jv_string("status"), jv_string("completed"));
	p = jv_object_set(p, jv_string("result_uri"), jv_string(uri));
	p = jv_object_set(p, jv_string("provider_state"), st);
	p = jv_object_set(p, jv_string("progress"), jv_number(100));
	p = jv_object_set(p, jv_string("attempts"), jv_number(j->attempts));
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	if (j->last_look)
		p = jv_object_set(p, jv_string("late"), jv_true());
	cost = jv_object_get(jv_copy(outcome), jv_string("cost_usd"));
	if (jv_get_kind(cost) == JV_KIND_NUMBER) {
		c = jv_number_value(cost);
		have_cost = 1;
		p = jv_object_set(p, jv_string("cost_usd"), cost);
		p = jv_object_set(p, jv_string("cost_source"),
		    jv_string("provider"));
	} else
		jv_free(cost);
	meta = jv_object_get(jv_copy(outcome), jv_string("provider_job_id"));
	if (jv_get_kind(meta) == JV_KIND_STRING)
		p = jv_object_set(p, jv_string("provider_job_id"), meta);
	else
		jv_free(meta);
	jv_free(outcome);
	eng_complete(r, j, p, have_cost, c);
}

static long long
backoff(struct rjob *j, jv outcome, long base)
{
	jv ra = jv_object_get(jv_copy(outcome), jv_string("retry_after_ms"));
	long long b = (long long)base << (j->tries < 10 ? j->tries : 10);

	if (b > 60000)
		b = 60000;
	if (jv_get_kind(ra) == JV_KIND_NUMBER && jv_number_value(ra) > b)
		b = (long long)jv_number_value(ra);
	jv_free(ra);
	/* Spread the retries of many jobs. */
	return b + (b > 10 ? random() % (b / 10) : 0);
}

static long long
jittered(long interval)
{
	long spread = interval / 10;

	return interval + (spread > 0 ? random() % (2 * spread + 1) - spread :
	    0);
}

static void
error_text(jv outcome, char *out, size_t outsz)
{
	jv e = jv_object_get(jv_copy(outcome), jv_string("error"));
	const char *m = "temporary failure";

	if (jv_get_kind(e) == JV_KIND_OBJECT)
		mi_json_str(e, "message", &m, 0, NULL);
	snprintf(out, outsz, "%s", m);
	jv_free(e);
}

/* Keeps what a processing outcome says (provider job id, state). */
static int
keep_processing(struct mi_runner *r, struct rjob *j, jv outcome, int created)
{
	jv p = jv_object(), v, row;
	int changed = created, pjid = 0, now = 0;
	double d;

	v = jv_object_get(jv_copy(outcome), jv_string("provider_job_id"));
	if (jv_get_kind(v) == JV_KIND_STRING) {
		if (j->pjid == NULL || strcmp(j->pjid, jv_string_value(v)))
			changed = pjid = 1;
		eng_set_str(&j->pjid, jv_string_value(v));
		p = jv_object_set(p, jv_string("provider_job_id"), v);
	} else
		jv_free(v);
	v = jv_object_get(jv_copy(outcome), jv_string("state"));
	if (jv_get_kind(v) == JV_KIND_OBJECT &&
	    jv_object_length(jv_copy(v)) > 0) {
		jv cur = j->state ? jv_parse(j->state) : jv_object();
		char *s;

		if (jv_get_kind(cur) != JV_KIND_OBJECT) {
			jv_free(cur);
			cur = jv_object();
		}
		cur = jv_object_merge(cur, jv_copy(v));
		if ((s = mi_json_dump(cur)) != NULL) {
			free(j->state);
			j->state = s;
		}
		jv_free(cur);
		p = jv_object_set(p, jv_string("provider_state"), v);
		changed = 1;
	} else
		jv_free(v);
	if (mi_json_num(outcome, "progress", &d, 0, NULL) == 1 && d >= 0 &&
	    d <= 100 && (int)d != j->progress) {
		j->progress = (int)d;
		j->dirty = 1;
		p = jv_object_set(p, jv_string("progress"), jv_number(d));
	}
	if (created) {
		p = jv_object_set(p, jv_string("status"),
		    jv_string("processing"));
		p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
		p = jv_object_set(p, jv_string("attempts"),
		    jv_number(j->attempts));
	}
	if (!changed) {
		jv_free(p);
		return 0;
	}
	/* The next poll is built afresh from the new state. */
	mi_poll_memo_clear(&j->memo);
	/*
	 * A step of the poll that asks to be polled again at once (fal:
	 * the status says done, the result document comes next) is not
	 * written: the new state goes with the job's next write.  A worker
	 * that dies in between leaves the state before the step, and whoever
	 * takes the job over polls that again and takes the same step.  A
	 * new provider id or a follow-up create is always written first.
	 */
	mi_json_bool(outcome, "poll_now", &now, 0, NULL);
	if (now && !created && !pjid && !jv_object_has(jv_copy(outcome),
	    jv_string("create"))) {
		j->state_unsaved = 1;
		jv_free(p);
		return 0;
	}
	if (created && !r->o.final && j->followup == NULL) {
		/* mi-submit's part ends: the job is handed on with the next
		 * batch of completions, its record after that. */
		eng_hand_on(r, j, p);
		return 1;
	}
	row = eng_patch(r, j, p);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		return -1;
	}
	jv_free(row);
	return 0;
}

/* The wait before the next poll: the backstop interval while a webhook
 * is expected and the provider's webhooks have been arriving. */
long long
eng_next_poll(struct mi_runner *r, struct rjob *j)
{
	if (j->hooked && !j->g->missed && r->hook_backstop_ms > j->interval)
		return jittered(r->hook_backstop_ms);
	return jittered(j->interval);
}

/* A poll, not a webhook, found j's end: the provider's webhooks are not
 * arriving, so its other jobs go back to the usual interval. */
static void
hook_missed(struct mi_runner *r, struct rjob *j)
{
	long long now = mi_now_ms();
	size_t i;

	if (!j->hooked || j->hinted || j->g->missed ||
	    r->hook_backstop_ms <= j->interval)
		return;
	j->g->missed = 1;
	eng_note(r, MI_NOTE_WARN, "job %s: no webhook from %s; polling every "
	    "%ld ms again", j->id, mi_provider_id(j->p), j->interval);
	for (i = 0; i < r->hn; i++) {
		struct rjob *x = r->heap[i];

		if (x->g == j->g && x->phase == P_POLL &&
		    x->due > now + x->interval)
			x->due = now + jittered(x->interval);
	}
	for (i = r->hn / 2 + 1; i-- > 0;)
		eng_heap_down(r, i);
}

/* A follow-up create the outcome asks for, or -1. */
static int
take_followup(struct rjob *j, jv outcome)
{
	jv c = jv_object_get(jv_copy(outcome), jv_string("create"));
	char *s;

	if (jv_get_kind(c) != JV_KIND_OBJECT) {
		jv_free(c);
		return -1;
	}
	s = mi_json_dump(c);
	jv_free(c);
	free(j->followup);
	j->followup = s;
	return s ? 0 : -1;
}

static void
on_created(void *arg, jv out)
{
	struct rjob *j = arg;
	struct mi_runner *r = j->r;
	const char *st = "failed";
	char msg[300];
	jv row;
	int k;

	if (hold(j, out, on_created))
		return;
	j->busy = 0;
	if (j->lost) {
		jv_free(out);
		eng_job_free(j);
		return;
	}
	mi_json_str(out, "status", &st, 0, NULL);
	if (strcmp(st, "processing") == 0) {
		int sent_followup = j->followup != NULL;
		int follow = take_followup(j, out) == 0;
		jv ns;

		if (sent_followup || follow) {
			/* The recorded follow-up is done with (or the next one
			 * recorded) in the write that keeps its answer. */
			ns = jv_object_get(jv_copy(out), jv_string("state"));
			if (jv_get_kind(ns) != JV_KIND_OBJECT) {
				jv_free(ns);
				ns = jv_object();
			}
			ns = jv_object_set(ns, jv_string("followup"), follow ?
			    jv_object_get(jv_copy(out), jv_string("create")) :
			    jv_null());
			out = jv_object_set(out, jv_string("state"), ns);
		}

		if (!follow) {
			free(j->followup);
			j->followup = NULL;
		}
		j->accepted = 1;
		j->tries = 0;
		if ((k = keep_processing(r, j, out, 1)) != 0) {
			jv_free(out);
			return;
		}
		if (follow)
			eng_schedule(r, j, P_CREATE, mi_now_ms());
		else {
			int now = 0;

			mi_json_bool(out, "poll_now", &now, 0, NULL);
			eng_schedule(r, j, P_POLL, mi_now_ms() +
			    (now ? 0 : eng_next_poll(r, j)));
		}
		jv_free(out);
		return;
	}
	if (strcmp(st, "completed") == 0) {
		free(j->followup);
		j->followup = NULL;
		finish_completed(r, j, out);
		return;
	}
	/* A follow-up refused for now is tried again as itself (never as
	 * the job's first create: that would make the first task again). */
	if (strcmp(st, "retry") == 0) {
		if (++j->tries > r->create_retries) {
			finish_failed(r, j, out, "failed");
			return;
		}
		error_text(out, msg, sizeof(msg));
		eng_note(r, MI_NOTE_VERBOSE, "job %s: %s; retrying", j->id,
		    msg);
		row = eng_patch(r, j, eng_obj1("submit_unknown", jv_false()));
		if (jv_get_kind(row) == JV_KIND_OBJECT)
			eng_schedule(r, j, P_CREATE, mi_now_ms() +
			    backoff(j, out, j->interval < 1000 ? j->interval :
			    1000));
		jv_free(row);
		jv_free(out);
		return;
	}
	if (strcmp(st, "unknown") == 0) {
		jv p = jv_object();

		char full[400];

		error_text(out, msg, sizeof(msg));
		jv_free(out);
		snprintf(full, sizeof(full), "%s; the create may have been "
		    "accepted: it is not sent again (mi-recover reconciles "
		    "it)", msg);
		p = jv_object_set(p, jv_string("error_code"),
		    jv_string("TIMEOUT"));
		p = jv_object_set(p, jv_string("error_message"),
		    jv_string(full));
		p = jv_object_set(p, jv_string("release"), jv_true());
		row = eng_patch(r, j, p);
		if (jv_get_kind(row) != JV_KIND_OBJECT) {
			jv_free(row);
			return;
		}
		eng_drop(r, j);
		eng_emit(r, mi_json_error(row, "TIMEOUT", full, 1));
		return;
	}
	free(j->followup);
	j->followup = NULL;
	finish_failed(r, j, out, "failed");
}

void
eng_on_polled(void *arg, jv out)
{
	struct rjob *j = arg;
	struct mi_runner *r = j->r;
	const char *st = "failed";
	long long now = mi_now_ms();
	int pnow = 0;

	if (hold(j, out, eng_on_polled))
		return;
	j->busy = 0;
	if (j->lost) {
		jv_free(out);
		eng_job_free(j);
		return;
	}
	mi_json_str(out, "status", &st, 0, NULL);
	if (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0)
		hook_missed(r, j);
	if (strcmp(st, "completed") == 0) {
		finish_completed(r, j, out);
		return;
	}
	if (strcmp(st, "failed") == 0) {
		finish_failed(r, j, out, "failed");
		return;
	}
	if (j->last_look) {
		/* Not done at the deadline: no follow-up is started. */
		jv_free(out);
		time_out(r, j);
		return;
	}
	if (strcmp(st, "processing") == 0) {
		jv c = jv_object_get(jv_copy(out), jv_string("create"));

		j->tries = 0;
		if (jv_get_kind(c) == JV_KIND_OBJECT) {
			/*
			 * The follow-up create is recorded with the state that
			 * asks for it, before it is sent: a process that takes
			 * the job over sends it (it never went out) or, once it
			 * was sent (submit_unknown), has it looked up, and
			 * never polls the last task as if it were the new one.
			 */
			jv ns = jv_object_get(jv_copy(out), jv_string("state"));

			if (jv_get_kind(ns) != JV_KIND_OBJECT) {
				jv_free(ns);
				ns = jv_object();
			}
			out = jv_object_set(out, jv_string("state"),
			    jv_object_set(ns, jv_string("followup"), c));
		} else
			jv_free(c);
		if (keep_processing(r, j, out, 0) != 0) {
			jv_free(out);
			return;
		}
		if (take_followup(j, out) == 0) {
			jv_free(out);
			eng_schedule(r, j, P_CREATE, now);
			return;
		}
		mi_json_bool(out, "poll_now", &pnow, 0, NULL);
		jv_free(out);
		eng_schedule(r, j, P_POLL, now + (pnow ? 0 : eng_next_poll(r, j)));
		return;
	}
	/* retry, or anything else: transient. */
	if (++j->tries > r->poll_retries) {
		remote_cancel(r, j);
		finish_failed(r, j, out, "failed");
		return;
	}
	eng_schedule(r, j, P_POLL, now + backoff(j, out, j->interval));
	jv_free(out);
}

/* Steps. */

static char *
b64(const unsigned char *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (out == NULL)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		*o++ = tab[p[i] >> 2];
		*o++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*o++ = tab[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		*o++ = tab[p[i + 2] & 63];
	}
	if (i < n) {
		*o++ = tab[p[i] >> 2];
		if (i + 1 < n) {
			*o++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
			*o++ = tab[(p[i + 1] & 15) << 2];
		} else {
			*o++ = tab[(p[i] & 3) << 4];
			*o++ = '=';
		}
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/*
 * The reference image of a request, for the definitions: {"url"} for an
 * http(s) URL, {"mime_type", "data" (base64)} for a stored asset of the
 * request's own tenant.  null when there is none; an error message when
 * it cannot be read.
 */
static jv
reference(jv req, char *msg, size_t msgsz)
{
	jv params = jv_object_get(jv_copy(req), jv_string("params"));
	const char *ref = NULL, *tenant = NULL, *at, *root;
	struct mi_asset_path ap;
	struct mi_err err = MI_ERR_INIT;
	const struct mi_mime *m;
	char path[4096], *data;
	struct mi_buf b;
	jv out = jv_null();
	FILE *fp;
	size_t n;

	msg[0] = '\0';
	if (jv_get_kind(params) != JV_KIND_OBJECT ||
	    mi_json_str(params, "reference_image", &ref, 0, NULL) != 1)
		goto out;
	if (strncmp(ref, "http://", 7) == 0 ||
	    strncmp(ref, "https://", 8) == 0) {
		if ((at = strstr(ref, "/api/assets/")) == NULL) {
			out = eng_obj1("url", jv_string(ref));
			goto out;
		}
	} else if ((at = strstr(ref, "/api/assets/")) == NULL) {
		snprintf(msg, msgsz, "reference_image '%.200s' is not a "
		    "stored asset", ref);
		goto out;
	}
	mi_json_str(req, "tenant_id", &tenant, 0, NULL);
	root = getenv("ASSET_STORAGE_DIR");
	if (mi_asset_path_parse(at, &ap, &err) == -1 || tenant == NULL ||
	    strcmp(ap.tenant, tenant) != 0 || root == NULL) {
		snprintf(msg, msgsz, "reference_image '%.200s' is not an "
		    "asset of this tenant", ref);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s/%s/%s/%s.%s", root, ap.tenant,
	    ap.run, ap.type, ap.hash, ap.ext);
	if ((fp = fopen(path, "rb")) == NULL) {
		snprintf(msg, msgsz, "reference_image '%.200s' is missing",
		    ref);
		goto out;
	}
	mi_buf_init(&b, REF_MAX);
	for (;;) {
		char chunk[65536];

		if ((n = fread(chunk, 1, sizeof(chunk), fp)) == 0)
			break;
		if (mi_buf_add(&b, chunk, n) == -1)
			break;
	}
	fclose(fp);
	m = mi_mime_by_ext(ap.ext);
	if ((data = b64((unsigned char *)b.buf, b.len)) != NULL) {
		out = jv_object_set(eng_obj1("mime_type",
		    jv_string(m ? m->type : "application/octet-stream")),
		    jv_string("data"), jv_string(data));
		free(data);
	}
	mi_buf_release(&b);
out:
	jv_free(params);
	return out;
}

/*
 * The further images of a request, read as reference() reads
 * reference_image: {"last_frame": ref, "images": [ref, ...]} from
 * params.last_frame and params.reference_images (at most 4), or null.
 */
static jv
more_references(jv req, char *msg, size_t msgsz)
{
	jv params = jv_object_get(jv_copy(req), jv_string("params"));
	jv out = jv_object(), lf, imgs;
	int i, n;

	msg[0] = '\0';
	if (jv_get_kind(params) != JV_KIND_OBJECT) {
		jv_free(params);
		jv_free(out);
		return jv_null();
	}
	lf = jv_object_get(jv_copy(params), jv_string("last_frame"));
	imgs = jv_object_get(params, jv_string("reference_images"));
	if (jv_get_kind(lf) == JV_KIND_STRING) {
		jv q = jv_object_set(jv_copy(req), jv_string("params"),
		    eng_obj1("reference_image", jv_copy(lf)));

		out = jv_object_set(out, jv_string("last_frame"),
		    reference(q, msg, msgsz));
		jv_free(q);
	}
	n = jv_get_kind(imgs) == JV_KIND_ARRAY ?
	    jv_array_length(jv_copy(imgs)) : 0;
	if (n > 0 && !msg[0]) {
		jv list = jv_array();

		for (i = 0; i < n && i < 4 && !msg[0]; i++) {
			jv q = jv_object_set(jv_copy(req), jv_string("params"),
			    eng_obj1("reference_image",
			    jv_array_get(jv_copy(imgs), i)));

			list = jv_array_append(list, reference(q, msg, msgsz));
			jv_free(q);
		}
		out = jv_object_set(out, jv_string("images"), list);
	}
	jv_free(lf);
	jv_free(imgs);
	if (jv_get_kind(out) == JV_KIND_OBJECT &&
	    jv_object_length(jv_copy(out)) == 0) {
		jv_free(out);
		return jv_null();
	}
	return out;
}

/*
 * The patch that records j's create as sent, its outcome unknown, before
 * it leaves; *hook: the webhook URL it gives the provider, or NULL.
 */
static jv
create_intent(struct rjob *j, char **hook)
{
	jv p = jv_object();

	*hook = NULL;
	p = jv_object_set(p, jv_string("submit_add"), jv_number(1));
	p = jv_object_set(p, jv_string("submit_unknown"), jv_true());
	p = jv_object_set(p, jv_string("started"), jv_true());
	if (j->followup == NULL && j->t == &mi_transport_http &&
	    mi_webhook_expected(mi_provider_meta(j->p), NULL)) {
		*hook = mi_webhook_url(mi_provider_meta(j->p), j->id,
		    j->g->tenant);
		j->hooked = 1;
		p = jv_object_set(p, jv_string("provider_state"),
		    eng_obj1("webhook", jv_true()));
	}
	return p;
}

static void create_send(struct mi_runner *r, struct rjob *j, jv row,
    char *hook);

void
eng_do_create(struct mi_runner *r, struct rjob *j)
{
	char *hook;
	jv p = create_intent(j, &hook);

	create_send(r, j, eng_patch(r, j, p), hook);
}

void
eng_do_creates(struct mi_runner *r, struct rjob **js, int n)
{
	struct mi_err err = MI_ERR_INIT;
	char *hooks[ENG_CREATE_BATCH];
	jv items, rows;
	int i;

	if (n == 1) {
		eng_do_create(r, js[0]);
		return;
	}
	items = jv_array();
	for (i = 0; i < n; i++) {
		jv it = eng_obj1("id", jv_string(js[i]->id));

		it = jv_object_set(it, jv_string("p"),
		    eng_with_state(js[i], create_intent(js[i], &hooks[i])));
		items = jv_array_append(items, it);
	}
	/* Every intent in one statement, before any create leaves. */
	rows = mi_jobs_patch_many(r->db, items, &err);
	if (!jv_is_valid(rows)) {
		jv_free(rows);
		for (i = 0; i < n; i++)
			free(hooks[i]);
		eng_fatal(r, &err);
		return;
	}
	for (i = 0; i < n && !r->fatal; i++) {
		struct rjob *j = js[i];
		jv row = jv_object_get(jv_copy(rows), jv_string(j->id));

		if (jv_get_kind(row) != JV_KIND_OBJECT) {
			jv_free(row);
			eng_note(r, MI_NOTE_WARN, "job %s: lease lost to "
			    "another worker", j->id);
			eng_drop(r, j);
			free(hooks[i]);
			continue;
		}
		create_send(r, j, row, hooks[i]);
	}
	for (; i < n; i++)
		free(hooks[i]);
	jv_free(rows);
}

/* Sends j's create, its intent recorded in row (consumed; not an object:
 * the lease was lost, or the database failed). */
static void
create_send(struct mi_runner *r, struct rjob *j, jv row, char *hook)
{
	struct mi_err err = MI_ERR_INIT;
	char spool[4200], name[64], msg[300];
	jv in, ref;
	int rc;

	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		free(hook);
		return;
	}
	if (j->deadline == 0) {
		const char *s = NULL;

		mi_json_str(row, "started_at", &s, 0, NULL);
		j->deadline = mi_now_ms() + (mi_jobs_time_ms(s) + j->timeout -
		    mi_wall_ms());
	}
	jv_free(row);
	in = eng_job_input(j);
	if (hook) {
		in = jv_object_set(in, jv_string("webhook_url"),
		    jv_string(hook));
		free(hook);
	}
	hook = NULL;
	eng_set_phase(j, P_CREATING);
	j->busy = 1;
	if (j->followup) {
		jv req = jv_parse(j->followup);

		mi_poll_memo_clear(&j->memo);
		rc = mi_transport_send(r->loop, j->p, req, in, "submitted", 1,
		    NULL, NULL, on_created, j, &err);
	} else {
		jv rq = jv_object_get(jv_copy(in), jv_string("request"));

		ref = reference(rq, msg, sizeof(msg));
		if (!msg[0]) {
			jv more = more_references(rq, msg, sizeof(msg));

			if (jv_get_kind(more) == JV_KIND_OBJECT)
				in = jv_object_set(in, jv_string("references"),
				    more);
			else
				jv_free(more);
		}
		jv_free(rq);
		if (msg[0]) {
			jv_free(ref);
			jv_free(in);
			j->busy = 0;
			finish_failed(r, j, mi_outcome_error("failed",
			    "VALIDATION_ERROR", msg, 0), "failed");
			return;
		}
		if (jv_get_kind(ref) != JV_KIND_NULL)
			in = jv_object_set(in, jv_string("reference"), ref);
		else
			jv_free(ref);
		snprintf(name, sizeof(name), "%s", j->id);
		if (j->t != &mi_transport_http &&
		    mi_spool_path(name, spool, sizeof(spool), &err) == -1) {
			jv_free(in);
			rc = -1;
		} else
			rc = j->t->submit(r->loop, j->p, in, spool, on_created,
			    j, &err);
	}
	if (rc == -1) {
		j->busy = 0;
		finish_failed(r, j, mi_outcome_error("failed",
		    err.code == EX_CONFIG ? "CONFIG_ERROR" :
		    err.code == EX_IOERR ? "STORAGE_ERROR" : "PROVIDER_ERROR",
		    err.msg, 0), "failed");
	}
}

struct rcancel {
	struct mi_runner *r;
	char id[40], provider[64];
};

static void
on_cancel(void *arg, jv outcome)
{
	struct rcancel *c = arg;
	struct mi_runner *r = c->r;
	struct mi_err err = MI_ERR_INIT;
	jv n;
	int ok = 0;

	r->cancels--;
	if (r->closing) {
		jv_free(outcome);
		free(c);
		return;
	}
	n = mi_cancel_record(r->db, c->id, outcome, &err);
	if (!jv_is_valid(n))
		eng_note(r, MI_NOTE_WARN, "job %s: unable to record the "
		    "cancel: %s", c->id, err.msg);
	else {
		mi_json_bool(n, "accepted", &ok, 0, NULL);
		eng_note(r, MI_NOTE_INFO, "job %s: cancelled at %s: %s", c->id,
		    c->provider, ok ? "accepted" : "refused");
	}
	jv_free(n);
	free(c);
}

/* A job mi gives up on may still run, and bill, at the provider: cancel
 * it there where the definition can.  The answer is recorded later. */
static void
remote_cancel(struct mi_runner *r, struct rjob *j)
{
	struct mi_err err = MI_ERR_INIT;
	struct rcancel *c;
	int k;

	if (!j->accepted || j->pjid == NULL || !j->t->polled ||
	    (c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->r = r;
	snprintf(c->id, sizeof(c->id), "%s", j->id);
	snprintf(c->provider, sizeof(c->provider), "%s",
	    mi_provider_id(j->p));
	k = mi_cancel_start(r->loop, j->p, eng_job_input(j), on_cancel, c,
	    &err);
	if (k == 1) {
		r->cancels++;
		eng_note(r, MI_NOTE_VERBOSE, "job %s: cancelling at %s", j->id,
		    c->provider);
		return;
	}
	if (k == -1)
		eng_note(r, MI_NOTE_WARN, "job %s: no cancel: %s", j->id,
		    err.msg);
	free(c);
}

static void
time_out(struct mi_runner *r, struct rjob *j)
{
	char msg[120];

	snprintf(msg, sizeof(msg), "no result from %s within %.1f s",
	    mi_provider_id(j->p), j->timeout / 1000.0);
	remote_cancel(r, j);
	finish_failed(r, j, mi_outcome_error("timed_out", "TIMEOUT", msg, 1),
	    "timed_out");
}

void
eng_do_poll(struct mi_runner *r, struct rjob *j)
{
	struct mi_err err = MI_ERR_INIT;

	if (j->deadline && mi_now_ms() >= j->deadline) {
		/*
		 * A last look before giving up: a result that is ready now
		 * was paid for, and is taken (as late).  A job found long
		 * after its deadline (nobody held it then) was given up
		 * when the deadline passed.
		 */
		if (j->last_look || !j->t->polled || j->pjid == NULL ||
		    mi_now_ms() - j->deadline > LAST_LOOK_MS) {
			time_out(r, j);
			return;
		}
		j->last_look = 1;
		eng_note(r, MI_NOTE_VERBOSE, "job %s: deadline reached; "
		    "polling once more", j->id);
	}
	if (!j->t->polled || j->pjid == NULL) {
		finish_failed(r, j, mi_outcome_error("failed",
		    "PROVIDER_ERROR", "nothing to poll", 0), "failed");
		return;
	}
	eng_set_phase(j, P_POLLING);
	j->busy = 1;
	/* Written with the next lease renewal (eng_renew): a poll that
	 * changes nothing costs no write of its own. */
	j->attempts++;
	r->polls++;
	/* The definition's input is built only if the definition runs. */
	if (j->t->poll(r->loop, j->p, jv_invalid(), &j->memo, eng_on_polled, j,
	    &err) == -1) {
		j->busy = 0;
		finish_failed(r, j, mi_outcome_error("failed",
		    err.code == EX_CONFIG ? "CONFIG_ERROR" : "PROVIDER_ERROR",
		    err.msg, 0), "failed");
	}
}
