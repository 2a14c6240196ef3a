/*
 * engine/takeover.c - jobs that another worker holds or held, webhook
 * deliveries, and the bookkeeping that keeps leases.
 *
 * A job record handed to mi_runner_job is taken over once its lease is
 * free; a step's job that another worker runs is followed until it ends
 * (follow maps id -> answers owed).  A webhook delivery for a job in
 * hand is taken as its poll's outcome, or, when it carries none, makes
 * the poll due at once.  flush writes the per-poll counters of jobs
 * whose progress changed; renew extends the lease of every job in hand,
 * writes every job's counters with it, and drops the ones whose lease
 * another worker took.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "json.h"
#include "names.h"
#include "steps.h"
#include "webhook.h"
#include "engine/engine.h"
#include "banned.h"

/* Taking over handed-over jobs. */

static void
follow_add(struct mi_runner *r, const char *id, double k)
{
	jv n = jv_object_get(jv_copy(r->follow), jv_string(id));

	if (jv_get_kind(n) == JV_KIND_NUMBER)
		k += jv_number_value(n);
	jv_free(n);
	r->follow = jv_object_set(r->follow, jv_string(id), jv_number(k));
	if (r->next_follow == 0)
		r->next_follow = mi_now_ms();
}

static void adopt(struct mi_runner *r, jv row);

/*
 * The jobs followed for other requests of their steps: a final job is
 * answered (as many times as it is owed; a failed one that a fallback
 * replaced is followed on to its replacement), a live one is taken over
 * when its lease is free.
 */
void
eng_check_follow(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	jv owed = r->follow, rows, pairs = jv_array(), taken;
	int i, n, m;

	r->follow = jv_object();
	rows = mi_jobs_get(r->db, jv_keys(jv_copy(owed)), &err);
	if (!jv_is_valid(rows)) {
		jv_free(owed);
		jv_free(pairs);
		eng_fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n && !r->fatal; i++) {
		jv row = jv_array_get(jv_copy(rows), i), k, next;
		const char *id = NULL, *st = NULL;

		mi_json_str(row, "id", &id, 0, NULL);
		mi_json_str(row, "status", &st, 0, NULL);
		k = jv_object_get(jv_copy(owed), jv_string(id ? id : ""));
		m = jv_get_kind(k) == JV_KIND_NUMBER ?
		    (int)jv_number_value(k) : 0;
		jv_free(k);
		if (id == NULL || st == NULL || m <= 0) {
			jv_free(row);
			continue;
		}
		if (strcmp(st, "pending") == 0 ||
		    strcmp(st, "processing") == 0) {
			follow_add(r, id, m);
			if (eng_find(r, id) == NULL)
				pairs = jv_array_append(pairs, jv_array_append(
				    jv_array_append(jv_array(), jv_string(id)),
				    jv_null()));
			jv_free(row);
			continue;
		}
		if (strcmp(st, "completed") != 0) {
			next = mi_jobs_successor(r->db, id, &err);
			if (!jv_is_valid(next)) {
				jv_free(row);
				eng_fatal(r, &err);
				break;
			}
			if (jv_get_kind(next) == JV_KIND_OBJECT &&
			    mi_json_str(next, "id", &id, 1, NULL) == 1) {
				follow_add(r, id, m);
				jv_free(next);
				jv_free(row);
				continue;
			}
			jv_free(next);
		}
		while (m-- > 0)
			eng_emit(r, strcmp(st, "completed") == 0 ?
			    jv_copy(row) : eng_with_error(jv_copy(row), 0));
		jv_free(row);
	}
	jv_free(rows);
	jv_free(owed);
	if (r->fatal || jv_array_length(jv_copy(pairs)) == 0) {
		jv_free(pairs);
		return;
	}
	taken = mi_jobs_take(r->db, pairs, 0, &err);
	if (!jv_is_valid(taken)) {
		eng_fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(taken));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(taken), i), k;
		const char *id = NULL;

		/* Driven here from now on: one answer comes from that. */
		if (mi_json_str(row, "id", &id, 0, NULL) == 1) {
			eng_note(r, MI_NOTE_INFO, "job %s: its owner is gone; "
			    "taken over", id);
			follow_add(r, id, -1);
			k = jv_object_get(jv_copy(r->follow), jv_string(id));
			if (jv_get_kind(k) != JV_KIND_NUMBER ||
			    jv_number_value(k) <= 0)
				r->follow = jv_object_delete(r->follow,
				    jv_string(id));
			jv_free(k);
		}
		adopt(r, row);
	}
	jv_free(taken);
}

void
mi_runner_job(struct mi_runner *r, jv job)
{
	const char *id = NULL, *st = NULL, *owner = NULL;
	int reused = 0;

	if (mi_json_has_error(job) || mi_step_is_artifact(job)) {
		/* Errors, and artifacts (a step answered with its stored
		 * result or from the cache), go on untouched. */
		eng_pass(r, job);
		return;
	}
	if (jv_get_kind(job) != JV_KIND_OBJECT ||
	    mi_json_str(job, "id", &id, 1, NULL) != 1 ||
	    mi_json_str(job, "status", &st, 1, NULL) != 1 ||
	    !mi_name_uuid_ok(id)) {
		if (jv_get_kind(job) != JV_KIND_OBJECT)
			job = eng_obj1("job", job);
		eng_emit(r, mi_json_error(job, "VALIDATION_ERROR",
		    "not a job record (no id or status)", 0));
		return;
	}
	if (strcmp(st, "failed") == 0 || strcmp(st, "timed_out") == 0) {
		eng_emit(r, eng_with_error(job, 0));
		return;
	}
	if (strcmp(st, "pending") != 0 && strcmp(st, "processing") != 0) {
		eng_emit(r, job);
		return;
	}
	if (mi_json_bool(job, "reused", &reused, 0, NULL) == 1 && reused) {
		/* Another request for the same step started this job: wait
		 * for it, and take it over only once its owner is gone. */
		follow_add(r, id, 1);
		jv_free(job);
		return;
	}
	mi_json_str(job, "lease_owner", &owner, 0, NULL);
	r->take = jv_array_append(r->take, jv_array_append(jv_array_append(
	    jv_array(), jv_string(id)), owner ? jv_string(owner) : jv_null()));
	r->takerec = jv_object_set(r->takerec, jv_string(id), job);
}

static void
adopt(struct mi_runner *r, jv row)
{
	struct mi_err err = MI_ERR_INIT;
	const char *st = NULL;
	struct rjob *j;
	int unknown = 0;
	double sc = 0;
	const char *up = NULL;
	long long last = 0, due;
	jv fu;

	mi_json_str(row, "status", &st, 0, NULL);
	if (mi_json_str(row, "updated_at", &up, 0, NULL) == 1)
		last = mi_jobs_time_ms(up);
	if ((j = eng_job_new(r, row, &err)) == NULL) {
		eng_emit(r, mi_json_error(row, err.code == EX_CONFIG ?
		    "CONFIG_ERROR" : "VALIDATION_ERROR", err.msg, 0));
		return;
	}
	if (strcmp(st, "pending") == 0) {
		eng_set_phase(j, P_WAIT);
		eng_wait_add(j->g, j);
		jv_free(row);
		return;
	}
	mi_json_bool(row, "submit_unknown", &unknown, 0, NULL);
	mi_json_num(row, "submit_count", &sc, 0, NULL);
	fu = jv_object_get(jv_copy(row), jv_string("provider_state"));
	if (jv_get_kind(fu) == JV_KIND_OBJECT)
		fu = jv_object_get(fu, jv_string("followup"));
	jv_free(row);
	if (jv_get_kind(fu) == JV_KIND_OBJECT && !unknown) {
		/*
		 * A follow-up create was recorded and never went out (a
		 * create is marked submit_unknown before it is sent): it
		 * is sent now, not the last task polled again.
		 */
		free(j->followup);
		j->followup = mi_json_dump(fu);
		jv_free(fu);
		if (j->followup) {
			eng_note(r, MI_NOTE_VERBOSE, "job %s: its recorded "
			    "follow-up create was never sent; sending it",
			    j->id);
			eng_schedule(r, j, P_CREATE, mi_now_ms());
			return;
		}
	} else
		jv_free(fu);
	if (j->pjid && !unknown && j->t->polled) {
		due = mi_now_ms();
		if (j->hooked) {
			/*
			 * It waits for a webhook: one already recorded is
			 * taken at once (eng_take_hooks), else the backstop
			 * poll comes when it would have from the job's last
			 * change.  A job handed on just after its create
			 * costs no poll at all.
			 */
			r->hooks = jv_array_append(r->hooks,
			    jv_string(j->id));
			if (last > 0)
				last += eng_next_poll(r, j);
			if (last > mi_wall_ms())
				due += last - mi_wall_ms();
		}
		eng_schedule(r, j, P_POLL, due);
		return;
	}
	if (j->pjid == NULL && !unknown && sc == 0) {
		eng_schedule(r, j, P_CREATE, mi_now_ms());
		return;
	}
	/* A create went out and nobody knows what became of it. */
	row = eng_patch(r, j, eng_obj1("release", jv_true()));
	if (jv_get_kind(row) == JV_KIND_OBJECT) {
		eng_drop(r, j);
		eng_emit(r, mi_json_error(row, "TIMEOUT", "the create's "
		    "outcome is unknown; mi-recover reconciles it", 1));
	} else
		jv_free(row);
}

void
eng_take_over(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	jv rows, left, ids, cur;
	int i, n;

	if (jv_array_length(jv_copy(r->take)) == 0)
		return;
	rows = mi_jobs_take(r->db, r->take, 0, &err);
	r->take = jv_array();
	if (!jv_is_valid(rows)) {
		eng_fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);
		const char *id = NULL;

		mi_json_str(row, "id", &id, 0, NULL);
		if (id)
			r->takerec = jv_object_delete(r->takerec,
			    jv_string(id));
		if (id && eng_find(r, id) != NULL) {
			/*
			 * Already in hand (its lease lapsed under load and
			 * this worker's own scan took it again): the one in
			 * hand goes on.  A second would poll it too, and make
			 * its follow-up create twice.
			 */
			eng_note(r, MI_NOTE_VERBOSE, "job %s: already in "
			    "hand", id);
			jv_free(row);
			continue;
		}
		adopt(r, row);
	}
	jv_free(rows);
	/* The ones not taken: final meanwhile, or another worker's. */
	left = r->takerec;
	r->takerec = jv_object();
	if (jv_object_length(jv_copy(left)) == 0) {
		jv_free(left);
		return;
	}
	ids = jv_keys(jv_copy(left));
	cur = mi_jobs_get(r->db, ids, &err);
	if (!jv_is_valid(cur)) {
		jv_free(left);
		eng_fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(cur));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(cur), i);
		const char *id = NULL, *st = NULL, *owner = "another worker";

		mi_json_str(row, "id", &id, 0, NULL);
		mi_json_str(row, "status", &st, 0, NULL);
		mi_json_str(row, "lease_owner", &owner, 0, NULL);
		left = jv_object_delete(left, jv_string(id));
		if (strcmp(st, "failed") == 0 || strcmp(st, "timed_out") == 0)
			eng_emit(r, eng_with_error(row, 0));
		else if (strcmp(st, "completed") == 0)
			eng_emit(r, row);
		else {
			char msg[400];

			snprintf(msg, sizeof(msg), "job is held by %s", owner);
			eng_emit(r, mi_json_error(row, "TIMEOUT", msg, 1));
		}
	}
	jv_free(cur);
	jv_object_foreach(left, k, v) {
		jv_free(k);
		eng_emit(r, mi_json_error(v, "NOT_FOUND", "no such job", 0));
	}
	jv_free(left);
}

/* Bookkeeping. */

/*
 * Writes the per-poll counters (attempts, progress, the next poll) of
 * the jobs whose progress changed, or with all of every job in hand,
 * renewing their leases; kept (unless NULL) gets the ids still held.
 * A poll whose answer changed nothing marks nothing: its counters go
 * with the next renewal, which is written whatever the polls do.
 */
static int
flush(struct mi_runner *r, int all, jv *kept, struct mi_err *err)
{
	struct mi_jobs_tick *t;
	long long skew = mi_wall_ms() - mi_now_ms();
	size_t i, n = 0;
	int rc;

	if ((t = calloc(r->n ? r->n : 1, sizeof(*t))) == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	for (i = 0; i < r->nbuck; i++) {
		struct rjob *j;

		for (j = r->tab[i]; j && n < r->n; j = j->hnext) {
			if (!j->dirty && !all)
				continue;
			j->dirty = 0;
			t[n].id = j->id;
			t[n].attempts = j->attempts;
			t[n].progress = j->progress > 0 ? j->progress : -1;
			t[n].next_ms = j->phase == P_POLL ? j->due + skew :
			    mi_wall_ms();
			n++;
		}
	}
	rc = mi_jobs_flush(r->db, t, n, kept, err);
	free(t);
	return rc;
}

void
eng_flush(struct mi_runner *r, int all)
{
	struct mi_err err = MI_ERR_INIT;

	if (flush(r, all, NULL, &err) == -1)
		eng_fatal(r, &err);
}

/* Every lease in hand renewed, with the counters of every job. */
void
eng_renew(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	jv kept, held;
	size_t i;
	int k;

	if (r->n == 0)
		return;
	if (flush(r, 1, &kept, &err) == -1) {
		jv_free(kept);
		eng_fatal(r, &err);
		return;
	}
	if ((size_t)jv_array_length(jv_copy(kept)) < r->n) {
		held = jv_object();
		k = jv_array_length(jv_copy(kept));
		for (i = 0; i < (size_t)k; i++)
			held = jv_object_set(held, jv_array_get(jv_copy(kept),
			    (int)i), jv_true());
		for (i = 0; i < r->nbuck; i++) {
			struct rjob *j, *nx;

			for (j = r->tab[i]; j; j = nx) {
				jv h = jv_object_get(jv_copy(held),
				    jv_string(j->id));

				nx = j->hnext;
				if (!jv_is_valid(h)) {
					eng_note(r, MI_NOTE_WARN, "job %s: lease "
					    "lost to another worker", j->id);
					eng_drop(r, j);
				}
				jv_free(h);
			}
		}
		jv_free(held);
	}
	jv_free(kept);
}

/* Freed slots wake the claims; deliveries for jobs in hand are taken. */
void
eng_notified(struct mi_runner *r)
{
	jv all = mi_db_notifications(r->db);
	struct group *g;
	int i, n = jv_array_length(jv_copy(all));

	for (i = 0; i < n; i++) {
		jv e = jv_array_get(jv_copy(all), i);
		jv ch = jv_array_get(jv_copy(e), 0), pl = jv_array_get(e, 1);

		if (strcmp(jv_string_value(ch), MI_JOBS_CHANNEL) == 0) {
			for (g = r->groups; g; g = g->next)
				if (g->head)
					g->want = 1;
		} else if (eng_find(r, jv_string_value(pl)) != NULL)
			r->hooks = jv_array_append(r->hooks, jv_copy(pl));
		jv_free(ch);
		jv_free(pl);
	}
	jv_free(all);
}

/*
 * A notification without a delivery: the job may have been ended by
 * another program (mi-cancel).  Such a job goes out as it now is.
 */
static void
ended_elsewhere(struct mi_runner *r, jv ids, jv rows)
{
	struct mi_err err = MI_ERR_INIT;
	jv seen = jv_object(), rest = jv_array(), cur;
	int i, n = jv_array_length(jv_copy(rows));

	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);

		seen = jv_object_set(seen, jv_object_get(row,
		    jv_string("job_id")), jv_true());
	}
	n = jv_array_length(jv_copy(ids));
	for (i = 0; i < n; i++) {
		jv id = jv_array_get(jv_copy(ids), i);
		jv h = jv_object_get(jv_copy(seen), jv_copy(id));

		if (jv_is_valid(h))
			jv_free(id);
		else
			rest = jv_array_append(rest, id);
		jv_free(h);
	}
	jv_free(seen);
	jv_free(ids);
	if (jv_array_length(jv_copy(rest)) == 0) {
		jv_free(rest);
		return;
	}
	cur = mi_jobs_get(r->db, rest, &err);
	if (!jv_is_valid(cur)) {
		eng_fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(cur));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(cur), i);
		const char *id = NULL, *st = "";
		struct rjob *j;

		mi_json_str(row, "id", &id, 0, NULL);
		mi_json_str(row, "status", &st, 0, NULL);
		if (id && (j = eng_find(r, id)) != NULL && !j->busy &&
		    (strcmp(st, "failed") == 0 ||
		    strcmp(st, "timed_out") == 0)) {
			eng_note(r, MI_NOTE_INFO, "job %s: %s elsewhere", j->id,
			    st);
			eng_drop(r, j);
			eng_emit(r, eng_with_error(row, 0));
		} else
			jv_free(row);
	}
	jv_free(cur);
}

/*
 * Applies the deliveries of jobs in hand exactly as poll answers (a hint
 * polls at once).  A job with a poll under way keeps its delivery until
 * the poll has ended.
 */
void
eng_take_hooks(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	int i, n = jv_array_length(jv_copy(r->hooks));
	jv ids, later, rows;

	if (n == 0)
		return;
	ids = jv_array();
	later = jv_array();
	for (i = 0; i < n; i++) {
		jv id = jv_array_get(jv_copy(r->hooks), i);
		struct rjob *j = eng_find(r, jv_string_value(id));

		if (j == NULL)
			jv_free(id);
		else if (j->busy)
			later = jv_array_append(later, id);
		else
			ids = jv_array_append(ids, id);
	}
	jv_free(r->hooks);
	r->hooks = later;
	if (jv_array_length(jv_copy(ids)) == 0) {
		jv_free(ids);
		return;
	}
	rows = mi_webhook_take(r->db, jv_copy(ids), &err);
	if (!jv_is_valid(rows)) {
		jv_free(ids);
		eng_fatal(r, &err);
		return;
	}
	ended_elsewhere(r, ids, rows);
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);
		jv out = jv_object_get(jv_copy(row), jv_string("outcome"));
		const char *id = NULL;
		struct rjob *j;

		mi_json_str(row, "job_id", &id, 0, NULL);
		j = id ? eng_find(r, id) : NULL;
		if (j == NULL || j->busy || (j->phase != P_POLL &&
		    j->phase != P_POLLING)) {
			jv_free(out);
		} else if (jv_get_kind(out) != JV_KIND_OBJECT) {
			jv_free(out);
			eng_note(r, MI_NOTE_VERBOSE, "job %s: webhook: polling "
			    "now", j->id);
			j->g->missed = 0;
			j->hinted = 1;
			eng_schedule(r, j, P_POLL, mi_now_ms());
		} else {
			eng_note(r, MI_NOTE_VERBOSE, "job %s: webhook", j->id);
			j->g->missed = 0;
			j->busy = 1;
			eng_on_polled(j, out);
		}
		jv_free(row);
	}
	jv_free(rows);
}
