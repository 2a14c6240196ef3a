/*
 * engine/job.c - a job in hand and its row.
 *
 * eng_job_new() builds a job from its row (borrowed) and puts it in the
 * table; eng_drop() takes it out of the table, heap and waiting list,
 * and frees it unless an exchange still refers to it (then the callback
 * that ends the exchange frees it).  eng_patch() is the one way a job's
 * row changes: a lease lost on the way drops the job.  eng_emit() and
 * eng_pass() are the only ways a record leaves the runner, eng_note()
 * the only way a diagnostic does; eng_fatal() keeps the first error that
 * the runner cannot go on from, for mi_runner_run to return.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "json.h"
#include "provider.h"
#include "engine/engine.h"
#include "banned.h"

/* Jobs. */

static char *
dump_key(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));
	char *s = NULL;

	if (jv_get_kind(v) == JV_KIND_STRING)
		s = strdup(jv_string_value(v));
	else if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL)
		s = mi_json_dump(v);
	jv_free(v);
	return s;
}

void
eng_job_free(struct rjob *j)
{
	mi_poll_memo_clear(&j->memo);
	free(j->request);
	free(j->state);
	free(j->fallback);
	free(j->pjid);
	free(j->followup);
	free(j);
}

/* Takes a job out of the runner; frees it unless an operation still
 * refers to it (then it is freed when the operation ends). */
void
eng_drop(struct mi_runner *r, struct rjob *j)
{
	if (j->phase == P_WAIT && j->g)
		eng_wait_del(j->g, j);
	eng_heap_remove(r, j);
	eng_tab_del(r, j);
	if (j->busy)
		j->lost = 1;
	else
		eng_job_free(j);
}

static jv
memo_input(void *arg)
{
	return eng_job_input(arg);
}

/* A job from its row (borrowed); NULL when the row is unusable. */
struct rjob *
eng_job_new(struct mi_runner *r, jv row, struct mi_err *err)
{
	const char *id, *tenant, *prov, *media, *started = NULL, *s;
	struct rjob *j;
	double d;

	if (mi_json_str(row, "id", &id, 1, err) == -1 ||
	    mi_json_str(row, "tenant_id", &tenant, 1, err) == -1 ||
	    mi_json_str(row, "provider_id", &prov, 1, err) == -1 ||
	    mi_json_str(row, "media_type", &media, 1, err) == -1)
		return NULL;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	j->r = r;
	j->heap = -1;
	j->memo.progress = -1;
	j->memo.input = memo_input;
	j->memo.input_arg = j;
	j->memo.read = &r->polls_read;
	snprintf(j->id, sizeof(j->id), "%s", id);
	snprintf(j->media, sizeof(j->media), "%s", media);
	if ((j->p = mi_provider_get(prov, err)) == NULL) {
		free(j);
		return NULL;
	}
	j->t = mi_transport_of(j->p);
	if ((j->g = eng_group_of(r, tenant, j->p)) == NULL) {
		free(j);
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	j->request = dump_key(row, "request");
	j->state = dump_key(row, "provider_state");
	j->fallback = dump_key(row, "fallback");
	if (mi_json_str(row, "provider_job_id", &s, 0, NULL) == 1)
		j->pjid = strdup(s);
	if (mi_json_num(row, "attempts", &d, 0, NULL) == 1)
		j->attempts = (int)d;
	j->step_attempt = mi_json_num(row, "step_attempt", &d, 0, NULL) == 1 &&
	    d >= 1 ? (int)d : 1;
	if (mi_json_num(row, "progress", &d, 0, NULL) == 1)
		j->progress = (int)d;
	j->interval = mi_json_num(row, "poll_interval_ms", &d, 0, NULL) == 1 &&
	    d > 0 ? (long)d : mi_provider_poll_interval_ms(j->p, media);
	j->accepted = j->pjid != NULL;
	j->hooked = j->state && strstr(j->state, "\"webhook\":true") != NULL;
	if (mi_json_num(row, "timeout_ms", &d, 0, NULL) != 1 || d <= 0)
		d = (double)mi_provider_timeout_ms(j->p, media);
	j->timeout = (long)d;
	mi_json_str(row, "started_at", &started, 0, NULL);
	if (started) {
		long long t0 = mi_jobs_time_ms(started);

		if (t0 > 0)
			j->deadline = mi_now_ms() + (t0 + (long long)d -
			    mi_wall_ms());
	}
	if (j->request == NULL)
		j->request = strdup("{}");
	eng_tab_add(r, j);
	return j;
}

void
eng_set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = s ? strdup(s) : NULL;
}

/* The input of the definition's functions. */
jv
eng_job_input(struct rjob *j)
{
	jv job = jv_object(), in = jv_object(), req, st;

	req = j->request ? jv_parse(j->request) : jv_object();
	st = j->state ? jv_parse(j->state) : jv_object();
	if (!jv_is_valid(req)) {
		jv_free(req);
		req = jv_object();
	}
	if (!jv_is_valid(st)) {
		jv_free(st);
		st = jv_object();
	}
	job = jv_object_set(job, jv_string("id"), jv_string(j->id));
	job = jv_object_set(job, jv_string("media_type"),
	    jv_string(j->media));
	job = jv_object_set(job, jv_string("provider_job_id"),
	    j->pjid ? jv_string(j->pjid) : jv_null());
	job = jv_object_set(job, jv_string("provider_state"), st);
	job = jv_object_set(job, jv_string("attempts"),
	    jv_number(j->attempts));
	in = jv_object_set(in, jv_string("request"), req);
	return jv_object_set(in, jv_string("job"), job);
}

/* Out now, or with group commit after the next barrier (eng_deliver). */
static void
out(struct mi_runner *r, jv rec, int passed)
{
	struct outrec *o;

	/* During a batch's admission records wait for its commit. */
	if ((!r->group && !r->admitting) ||
	    (o = malloc(sizeof(*o))) == NULL) {
		if (r->group && mi_db_durable(r->db, &r->ferr) == -1)
			r->fatal = 1;
		r->o.emit(r->o.arg, rec, passed);
		return;
	}
	o->rec = rec;
	o->passed = passed;
	o->order = r->admitting ? r->batch_order : 0;
	o->next = NULL;
	*r->outq_tail = o;
	r->outq_tail = &o->next;
}

void
eng_note(struct mi_runner *r, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mi_note_send(r->o.note, r->o.arg, level, fmt, ap);
	va_end(ap);
}

void
eng_fatal(struct mi_runner *r, const struct mi_err *err)
{
	if (!r->fatal) {
		r->fatal = 1;
		r->ferr = *err;
	}
}

/*
 * Group commit: one durability barrier for every write so far, then the
 * records that report them.  Runs before the loop drives the network
 * (so no paid request leaves before the write that records it is
 * durable) and whenever records wait.
 */
void
eng_deliver(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	struct outrec *o;

	if (r->admitting)
		return;
	eng_flush_done(r);
	if (r->outq == NULL && !(r->group && mi_db_unflushed(r->db)))
		return;
	if (r->group && mi_db_durable(r->db, &err) == -1) {
		eng_fatal(r, &err);
		return;
	}
	while ((o = r->outq) != NULL) {
		r->outq = o->next;
		if (r->outq == NULL)
			r->outq_tail = &r->outq;
		r->o.emit(r->o.arg, o->rec, o->passed);
		free(o);
	}
}

void
eng_emit(struct mi_runner *r, jv rec)
{
	r->finished++;
	out(r, rec, 0);
}

/* A record that arrived with an error goes out untouched. */
void
eng_pass(struct mi_runner *r, jv rec)
{
	out(r, rec, 1);
}

/* The row with "error" from its error_code and error_message. */
jv
eng_with_error(jv row, int retryable)
{
	const char *code = "PROVIDER_ERROR", *msg = "job failed";

	mi_json_str(row, "error_code", &code, 0, NULL);
	mi_json_str(row, "error_message", &msg, 0, NULL);
	return mi_json_error(row, code, msg, retryable);
}

/*
 * p (consumed) with the state j holds and has not written yet (a poll at
 * once, keep_processing in step.c): the whole state, p's own keys on top.
 */
jv
eng_with_state(struct rjob *j, jv p)
{
	jv cur, ps;

	if (!j->state_unsaved)
		return p;
	j->state_unsaved = 0;
	cur = j->state ? jv_parse(j->state) : jv_invalid();
	if (jv_get_kind(cur) != JV_KIND_OBJECT) {
		jv_free(cur);
		return p;
	}
	ps = jv_object_get(jv_copy(p), jv_string("provider_state"));
	if (jv_get_kind(ps) == JV_KIND_OBJECT)
		cur = jv_object_merge(cur, ps);
	else
		jv_free(ps);
	return jv_object_set(p, jv_string("provider_state"), cur);
}

/* Applies patch to j's row; on a lost lease drops j and returns null. */
jv
eng_patch(struct mi_runner *r, struct rjob *j, jv p)
{
	struct mi_err err = MI_ERR_INIT;
	jv row = mi_jobs_patch(r->db, j->id, eng_with_state(j, p), &err);

	if (!jv_is_valid(row)) {
		eng_fatal(r, &err);
		return row;
	}
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		eng_note(r, MI_NOTE_WARN, "job %s: lease lost to another "
		    "worker", j->id);
		eng_drop(r, j);
	}
	return row;
}

static void
queue_done(struct mi_runner *r, struct rjob *j, jv p, int have_cost,
    double cost, int handed)
{
	struct done *d = calloc(1, sizeof(*d));
	jv row;

	p = eng_with_state(j, p);
	if (d == NULL) {
		/* No room to wait: written alone, now. */
		row = eng_patch(r, j, p);
		if (jv_get_kind(row) != JV_KIND_OBJECT) {
			jv_free(row);
			return;
		}
		eng_drop(r, j);
		eng_emit(r, row);
		return;
	}
	snprintf(d->id, sizeof(d->id), "%s", j->id);
	snprintf(d->provider, sizeof(d->provider), "%s", mi_provider_id(j->p));
	d->patch = p;
	d->have_cost = have_cost;
	d->cost = cost;
	d->late = j->last_look;
	d->handed = handed;
	*r->done_tail = d;
	r->done_tail = &d->next;
	r->ndone++;
	eng_drop(r, j);
	if (r->ndone >= ENG_DONE_BATCH)
		eng_flush_done(r);
}

void
eng_complete(struct mi_runner *r, struct rjob *j, jv p, int have_cost,
    double cost)
{
	queue_done(r, j, p, have_cost, cost, 0);
}

void
eng_hand_on(struct mi_runner *r, struct rjob *j, jv p)
{
	queue_done(r, j, p, 0, 0, 1);
}

/*
 * The completions waiting, in one statement (one commit), then their
 * records in the order they came.  A job whose lease was lost meanwhile
 * has no row back: its new holder reports it.
 */
void
eng_flush_done(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	struct done *d, *list = r->done;
	jv items = jv_array(), rows;

	if (list == NULL)
		return;
	r->done = NULL;
	r->done_tail = &r->done;
	r->ndone = 0;
	for (d = list; d; d = d->next) {
		jv it = eng_obj1("id", jv_string(d->id));

		items = jv_array_append(items, jv_object_set(it,
		    jv_string("p"), d->patch));
		d->patch = jv_invalid();
	}
	rows = r->fatal ? (jv_free(items), jv_invalid()) :
	    mi_jobs_patch_many(r->db, items, &err);
	if (!jv_is_valid(rows) && !r->fatal)
		eng_fatal(r, &err);
	while ((d = list) != NULL) {
		jv row = jv_is_valid(rows) ? jv_object_get(jv_copy(rows),
		    jv_string(d->id)) : jv_null();
		double c = d->cost;

		list = d->next;
		if (jv_get_kind(row) == JV_KIND_OBJECT && d->handed)
			eng_emit(r, row);
		else if (jv_get_kind(row) == JV_KIND_OBJECT) {
			if (!d->have_cost)
				mi_json_num(row, "cost_usd", &c, 0, NULL);
			eng_note(r, MI_NOTE_INFO, "job %s: completed by %s, "
			    "cost $%.4f (%s)%s", d->id, d->provider, c,
			    d->have_cost ? "provider" : "estimate", d->late ?
			    ", found at the deadline (late)" : "");
			eng_emit(r, row);
		} else {
			if (jv_is_valid(rows))
				eng_note(r, MI_NOTE_WARN, "job %s: lease lost "
				    "to another worker", d->id);
			jv_free(row);
		}
		free(d);
	}
	jv_free(rows);
}

/* o[key] (o borrowed), null when absent. */
jv
eng_field(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));

	if (!jv_is_valid(v)) {
		jv_free(v);
		return jv_null();
	}
	return v;
}

jv
eng_obj1(const char *k, jv v)
{
	return jv_object_set(jv_object(), jv_string(k), v);
}
