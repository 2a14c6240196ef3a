/*
 * recover/lookup.c - creates whose outcome is unknown (sent, but no
 * answer recorded).
 *
 * A lost create is never sent again blindly.  It is looked up at the
 * provider (its task list, LOOKUP_PAGES pages at most) once the create
 * is old enough to show there (settle_ms; until then the job is held in
 * later); a task that no other job knows is taken as the job's.  A
 * synchronous provider's answer may wait in the spool.  Where the
 * provider cannot say, its definition's lost_create decides: send it
 * again (once; unknown twice fails the job) or hold the job for an
 * operator (it fails, nothing is sent); every decision is an event in
 * the job's recovery log.
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "db.h"
#include "jobs.h"
#include "json.h"
#include "provider.h"
#include "recover/worker.h"
#include "banned.h"

/* Creates whose outcome is unknown. */

/* How long a lookup waits for its answer before the jobs in hand get a
 * turn. */
#define PUMP_MS 20

static void
got_outcome(void *arg, jv outcome)
{
	jv *out = arg;

	jv_free(*out);
	*out = outcome;
}

/*
 * The input of a definition's lookup for row (borrowed): .lookup is the
 * last answer's next (consumed; its page, and whatever else the
 * definition keeps there, such as a provider's cursor), or page 1.
 */
static jv
lookup_input(jv row, jv next)
{
	jv job = jv_object(), in = jv_object(), v;
	static const char *const keys[] = { "id", "media_type",
		"provider_job_id", "provider_state", "attempts", NULL };
	const char *s = NULL;
	int i;

	for (i = 0; keys[i]; i++) {
		v = jv_object_get(jv_copy(row), jv_string(keys[i]));
		job = jv_object_set(job, jv_string(keys[i]), jv_is_valid(v) ?
		    v : (jv_free(v), jv_null()));
	}
	if (mi_json_str(row, "started_at", &s, 0, NULL) == 1 ||
	    mi_json_str(row, "created_at", &s, 0, NULL) == 1)
		job = jv_object_set(job, jv_string("started_ms"),
		    jv_number((double)mi_jobs_time_ms(s)));
	v = jv_object_get(jv_copy(row), jv_string("request"));
	in = jv_object_set(in, jv_string("request"), jv_is_valid(v) ? v :
	    (jv_free(v), jv_object()));
	in = jv_object_set(in, jv_string("job"), job);
	if (jv_get_kind(next) != JV_KIND_OBJECT) {
		jv_free(next);
		next = jv_object_set(jv_object(), jv_string("page"),
		    jv_number(1));
	}
	return jv_object_set(in, jv_string("lookup"), next);
}

/*
 * While a lookup waits (a provider slow to answer it), the worker's
 * heartbeat and the leases it holds outside the runner are kept, the
 * job being looked up (id) among them: none lapses to another worker
 * meanwhile.
 */
static void
keep_leases(struct mi_recover *c, const char *id)
{
	struct mi_err err = MI_ERR_INIT;
	long long now = mi_now_ms();
	jv kept;

	if (now >= c->next_beat) {
		rec_heartbeat(c, 1);
		c->next_beat = now + c->lease_ms / 3;
	}
	if (now < c->next_renew)
		return;
	rec_renew_queued(c);
	kept = mi_jobs_renew(c->db, jv_array_append(jv_array(),
	    jv_string(id)), &err);
	if (!jv_is_valid(kept))
		rec_die(c, &err);
	jv_free(kept);
	c->next_renew = now + c->lease_ms / 3;
}

/*
 * One lookup exchange, waited for; the outcome.  The jobs in hand go on
 * meanwhile, a slice at a time: an answer to a synchronous create that
 * has come is recorded now, not once every page of the lookup is read
 * (a worker killed in between would leave that create unknown, and it
 * would be sent again).
 */
static jv
exchange(struct mi_recover *c, const char *id, struct mi_provider *p, jv req,
    jv in)
{
	struct mi_err err = MI_ERR_INIT;
	jv out = jv_invalid();

	if (mi_transport_send(c->loop, p, req, in, "lookup", 0, NULL, NULL,
	    got_outcome, &out, &err) == -1)
		return mi_outcome_error("retry", "PROVIDER_UNAVAILABLE",
		    err.msg, 1);
	while (!jv_is_valid(out) && mi_loop_busy(c->loop) > 0) {
		if (mi_loop_wait(c->loop, NULL, 0, PUMP_MS, &err) == -1)
			break;
		if (jv_is_valid(out))
			break;
		if (mi_runner_run(c->r, NULL, 0, 0, &err) == -1)
			rec_die(c, &err);
		keep_leases(c, id);
	}
	if (!jv_is_valid(out)) {
		jv_free(out);
		out = mi_outcome_error("retry", "PROVIDER_UNAVAILABLE",
		    "the lookup got no answer", 1);
	}
	return out;
}

/* The message of a lookup that failed for now (out consumed). */
static void
lookup_error(jv out, char *msg, size_t msgsz)
{
	jv e = jv_object_get(jv_copy(out), jv_string("error"));
	const char *m = "the provider is unavailable";

	if (jv_get_kind(e) == JV_KIND_OBJECT)
		mi_json_str(e, "message", &m, 0, NULL);
	snprintf(msg, msgsz, "lookup: %s", m);
	jv_free(e);
	jv_free(out);
}

/* Whether another job already knows the provider's task tid. */
static int
known_elsewhere(struct mi_recover *c, const char *id, const char *tid)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[2] = { id, tid };
	jv v = mi_db_json1(c->db, "SELECT to_jsonb(EXISTS (SELECT 1"
	    " FROM app.generation_jobs j WHERE j.id <> $1::uuid"
	    " AND (j.provider_job_id = $2 OR j.provider_state @>"
	    "  jsonb_build_object('preview_task_id', $2) OR"
	    "  j.provider_state @> jsonb_build_object('refine_task_id', $2))))",
	    2, params, &err);
	int r;

	if (!jv_is_valid(v))
		rec_die(c, &err);
	r = jv_get_kind(v) == JV_KIND_TRUE;
	jv_free(v);
	return r;
}

/* The first candidate of a found outcome no other job knows, or NULL. */
static const char *
pick(struct mi_recover *c, const char *id, jv out, jv *cands)
{
	const char *tid = NULL;
	int i, n;

	*cands = jv_object_get(jv_copy(out), jv_string("candidates"));
	if (jv_get_kind(*cands) != JV_KIND_ARRAY) {
		jv_free(*cands);
		*cands = jv_array();
		if (mi_json_str(out, "provider_job_id", &tid, 0, NULL) == 1)
			*cands = jv_array_append(*cands, jv_string(tid));
	}
	n = jv_array_length(jv_copy(*cands));
	for (i = 0; i < n; i++) {
		jv t = jv_array_get(jv_copy(*cands), i);

		if (jv_get_kind(t) == JV_KIND_STRING &&
		    !known_elsewhere(c, id, jv_string_value(t))) {
			/* The string lives on in *cands. */
			tid = jv_string_value(t);
			jv_free(t);
			return tid;
		}
		jv_free(t);
	}
	return NULL;
}

/* The job's create is found at the provider: it is polled from now on. */
static void
found(struct mi_recover *c, const char *id, const char *tid, jv out)
{
	jv p = jv_object(), st, row;

	st = jv_object_get(jv_copy(out), jv_string("state"));
	p = jv_object_set(p, jv_string("provider_job_id"), jv_string(tid));
	if (jv_get_kind(st) != JV_KIND_OBJECT) {
		jv_free(st);
		st = jv_object();
	}
	/* A recorded follow-up create is the task found: done with. */
	p = jv_object_set(p, jv_string("provider_state"), jv_object_set(st,
	    jv_string("followup"), jv_null()));
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	p = jv_object_set(p, jv_string("status"), jv_string("processing"));
	row = rec_patch(c, id, p);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		rec_set_state(c, id, "left");
		return;
	}
	jv_free(row);
	row = rec_event(c, id, jv_object_set(rec_ev1("create found"),
	    jv_string("provider_job_id"), jv_string(tid)));
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		rec_set_state(c, id, "left");
		return;
	}
	rec_note(c, MI_NOTE_VERBOSE,
	    "job %s: the lost create is task %s at the provider", id, tid);
	mi_runner_job(c->r, row);
}

/*
 * Puts the job back in the queue to be created afresh: its provider state
 * is cleared (every key set to null) and it waits for a slot again.
 */
void
rec_resubmit(struct mi_recover *c, jv row, jv ev)
{
	const char *id = NULL, *why = "created again";
	char idbuf[40], whybuf[64];
	jv st, clear = jv_object(), p = jv_object(), r;

	mi_json_str(row, "id", &id, 0, NULL);
	snprintf(idbuf, sizeof(idbuf), "%s", id);
	st = jv_object_get(jv_copy(row), jv_string("provider_state"));
	if (jv_get_kind(st) == JV_KIND_OBJECT) {
		jv_object_foreach(st, k, v) {
			jv_free(v);
			clear = jv_object_set(clear, k, jv_null());
		}
	}
	jv_free(st);
	jv_free(row);
	mi_json_str(ev, "event", &why, 0, NULL);
	snprintf(whybuf, sizeof(whybuf), "%s", why);
	why = whybuf;
	r = rec_event(c, idbuf, ev);
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		rec_set_state(c, idbuf, "left");
		return;
	}
	jv_free(r);
	p = jv_object_set(p, jv_string("status"), jv_string("pending"));
	p = jv_object_set(p, jv_string("provider_job_id"), jv_null());
	p = jv_object_set(p, jv_string("provider_state"), clear);
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	p = jv_object_set(p, jv_string("progress"), jv_number(0));
	r = rec_patch(c, idbuf, p);
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		rec_set_state(c, idbuf, "left");
		return;
	}
	rec_note(c, MI_NOTE_VERBOSE, "job %s: %s; created again", idbuf, why);
	mi_runner_job(c->r, r);
}

/*
 * The provider has no task of the job's lost create: the job is created
 * again, or, when the outcome says where to resume (a follow-up create
 * never made), polled from there.  row and out are consumed.
 */
static void
absent_create(struct mi_recover *c, jv row, jv out)
{
	jv res = jv_object_get(out, jv_string("resume")), p, st, r;
	const char *id = NULL, *tid = NULL;
	char idbuf[40];

	if (jv_get_kind(res) != JV_KIND_OBJECT ||
	    mi_json_str(res, "provider_job_id", &tid, 1, NULL) != 1) {
		jv_free(res);
		rec_resubmit(c, row, rec_ev1("create absent"));
		return;
	}
	mi_json_str(row, "id", &id, 0, NULL);
	snprintf(idbuf, sizeof(idbuf), "%s", id);
	jv_free(row);
	r = rec_event(c, idbuf, jv_object_set(rec_ev1("create absent"),
	    jv_string("resumed_at"), jv_string(tid)));
	jv_free(r);
	p = jv_object_set(jv_object(), jv_string("provider_job_id"),
	    jv_string(tid));
	st = jv_object_get(jv_copy(res), jv_string("state"));
	if (jv_get_kind(st) != JV_KIND_OBJECT) {
		jv_free(st);
		st = jv_object();
	}
	/* Polled from there, the last task asks for its follow-up again. */
	p = jv_object_set(p, jv_string("provider_state"), jv_object_set(st,
	    jv_string("followup"), jv_null()));
	jv_free(res);
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	r = rec_patch(c, idbuf, p);
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		rec_set_state(c, idbuf, "left");
		return;
	}
	rec_note(c, MI_NOTE_VERBOSE,
	    "job %s: the lost follow-up create never reached the "
	    "provider; polling task %s again",
	    idbuf, tid);
	mi_runner_job(c->r, r);
}

/*
 * The provider cannot settle a lost create: the definition's lost_create
 * decides, with its reason, between sending it again (once) and holding
 * the job for an operator (it fails, and nothing is sent).  The decision
 * goes into the job's recovery log and the step's debug output (stderr).
 */
static void
by_policy(struct mi_recover *c, struct mi_provider *p, jv row)
{
	struct mi_err err = MI_ERR_INIT;
	const char *id = NULL, *pol = "resend", *why = NULL, *op = NULL;
	char idbuf[40], reason[300], msg[400], opbuf[8];
	jv v, ev, meta;

	mi_json_str(row, "id", &id, 0, NULL);
	snprintf(idbuf, sizeof(idbuf), "%s", id);
	v = mi_provider_call(p, "lost_create", lookup_input(row,
	    jv_null()), &err);
	if (jv_get_kind(v) == JV_KIND_OBJECT) {
		mi_json_str(v, "policy", &pol, 0, NULL);
		mi_json_str(v, "reason", &why, 0, NULL);
	} else
		why = err.msg[0] ? err.msg : NULL;
	snprintf(reason, sizeof(reason), "%s", why ? why : "no reason given");
	/* The operator's choice (MI_<ID>_LOST_CREATE) comes first. */
	meta = mi_provider_meta(p);
	if (mi_json_str(meta, "lost_create", &op, 0, NULL) == 1 &&
	    strcmp(op, pol) != 0) {
		snprintf(reason, sizeof(reason), "%s by the operator's "
		    "setting, where the definition says %s: %.200s", op, pol,
		    why ? why : "no reason given");
		snprintf(opbuf, sizeof(opbuf), "%s", op);
		pol = opbuf;
	}
	jv_free(meta);
	if (strcmp(pol, "resend") != 0 && strcmp(pol, "hold") != 0) {
		snprintf(reason, sizeof(reason), "unknown policy '%.40s' (held "
		    "to be safe): %.200s", pol, why ? why : "");
		pol = "hold";
	}
	if (strcmp(pol, "hold") == 0) {
		jv_free(v);
		jv_free(row);
		snprintf(msg, sizeof(msg), "held for an operator: the create's "
		    "outcome is unknown and it is not sent again (%s)", reason);
		rec_note(c, MI_NOTE_WARN, "job %s: %s", idbuf, msg);
		ev = jv_object_set(rec_ev1("create held"), jv_string("reason"),
		    jv_string(reason));
		rec_finish(c, idbuf, "failed", "PROVIDER_UNAVAILABLE", msg, ev);
		return;
	}
	jv_free(v);
	if (rec_has_event(row, "create re-sent")) {
		jv_free(row);
		rec_finish(c, idbuf, "failed", "PROVIDER_UNAVAILABLE", "the "
		    "create's outcome is unknown again after it was sent a "
		    "second time; it is not sent a third time",
		    rec_ev1("create unknown twice"));
		return;
	}
	rec_note(c, MI_NOTE_WARN,
	    "job %s: the create's outcome is unknown and the provider "
	    "cannot settle it: sent again once (%s)",
	    idbuf, reason);
	rec_resubmit(c, row, jv_object_set(rec_ev1("create re-sent"),
	    jv_string("reason"), jv_string(reason)));
}

/*
 * A synchronous create whose whole answer came, and whose process ended
 * before it could write so (the database was away, or it was killed):
 * the result is in the spool as {id}.{ext}.  Returns 1 when the job was
 * completed from it.  row is consumed either way.
 */
static int
spooled_answer(struct mi_recover *c, struct mi_provider *p, jv row)
{
	char dir[PATH_MAX], path[PATH_MAX + 300], ext[16] = "", idbuf[40];
	struct mi_err err = MI_ERR_INIT;
	const char *id = NULL;
	struct dirent *de;
	struct stat sb;
	size_t n;
	jv pt, res, r;
	DIR *d;

	if (mi_transport_of(p) != &mi_transport_sync ||
	    mi_json_str(row, "id", &id, 0, NULL) != 1 ||
	    mi_spool_dir(dir, sizeof(dir), &err) == -1 ||
	    (d = opendir(dir)) == NULL) {
		jv_free(row);
		return 0;
	}
	n = strlen(id);
	path[0] = '\0';
	while ((de = readdir(d)) != NULL) {
		const char *e = de->d_name + n + 1;

		if (strncmp(de->d_name, id, n) != 0 || de->d_name[n] != '.' ||
		    strcmp(e, "raw") == 0 || strlen(e) >= sizeof(ext) ||
		    strchr(e, '.') != NULL)
			continue;
		snprintf(ext, sizeof(ext), "%s", e);
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		break;
	}
	closedir(d);
	if (path[0] == '\0' || stat(path, &sb) == -1 || sb.st_size == 0) {
		jv_free(row);
		return 0;
	}
	res = jv_object_set(jv_object_set(jv_object(), jv_string("file"),
	    jv_string(path)), jv_string("ext"), jv_string(ext));
	pt = jv_object();
	pt = jv_object_set(pt, jv_string("status"), jv_string("completed"));
	pt = jv_object_set(pt, jv_string("result_uri"),
	    jv_string_fmt("file://%s", path));
	pt = jv_object_set(pt, jv_string("provider_state"),
	    jv_object_set(jv_object(), jv_string("result"), res));
	pt = jv_object_set(pt, jv_string("progress"), jv_number(100));
	pt = jv_object_set(pt, jv_string("submit_unknown"), jv_false());
	snprintf(idbuf, sizeof(idbuf), "%s", id);
	r = rec_patch(c, idbuf, pt);
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		jv_free(row);
		rec_set_state(c, idbuf, "left");
		return 1;
	}
	jv_free(r);
	r = rec_event(c, idbuf, jv_object_set(rec_ev1("create answered"),
	    jv_string("file"), jv_string(path)));
	jv_free(row);
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		return 1;
	}
	rec_note(c, MI_NOTE_VERBOSE,
	    "job %s: the lost answer is in the spool; stored from "
	    "there",
	    idbuf);
	c->fq = jv_array_append(c->fq, r);
	return 1;
}

/*
 * A create lost a moment ago may still be on its way into the provider
 * (a killed sender's request in a proxy, a provider slow to register a
 * task): asked now, the provider could say "absent" and a second create
 * follow.  So a lost create is looked up only MI_LOOKUP_SETTLE_MS
 * (default 10000) after the last sign of it: its owner's lease expiring,
 * or the row's last change (a create given up as unknown).  Until then
 * the job is held here, its lease kept.  Returns 1 when held (row
 * consumed).
 */
static int
too_recent(struct mi_recover *c, const char *id, jv row)
{
	jv log = jv_object_get(jv_copy(row), jv_string("recovery"));
	long long last = -1, t, wait;
	const char *s = NULL;
	int i, n;

	/*
	 * The first takeover since the create went out marks its loss: the
	 * wait is not begun again by each worker that takes the job over
	 * (a worker killed while it waits must not put the lookup off for
	 * ever).
	 */
	n = jv_get_kind(log) == JV_KIND_ARRAY ? jv_array_length(jv_copy(log)) :
	    0;
	for (i = n - 1; i >= 0; i--) {
		jv e = jv_array_get(jv_copy(log), i);
		int stop_here = 0;

		s = NULL;
		if (mi_json_str(e, "event", &s, 0, NULL) == 1 &&
		    strcmp(s, "taken over") == 0) {
			long long at = 0;

			if (mi_json_str(e, "lease_expired_at", &s, 0, NULL) == 1)
				at = mi_jobs_time_ms(s);
			if (mi_json_str(e, "last_update", &s, 0, NULL) == 1 &&
			    (t = mi_jobs_time_ms(s)) > at)
				at = t;
			last = at;
		} else if (s && (strcmp(s, "create re-sent") == 0 ||
		    strcmp(s, "create absent") == 0 ||
		    strcmp(s, "create again") == 0 ||
		    strcmp(s, "create found") == 0))
			stop_here = 1;
		jv_free(e);
		if (stop_here)
			break;
	}
	jv_free(log);
	wait = last + c->settle_ms - mi_wall_ms();
	if (last <= 0 || wait <= 0)
		return 0;
	rec_note(c, MI_NOTE_VERBOSE,
	    "job %s: its create was lost %lld ms ago: looked up in "
	    "%lld ms",
	    id, c->settle_ms - wait, wait);
	c->later = jv_object_set(c->later, jv_string(id), jv_array_append(
	    jv_array_append(jv_array(), jv_number((double)(mi_now_ms() +
	    wait))), row));
	return 1;
}

/* Held lost creates whose time has come are looked up. */
long long
rec_run_later(struct mi_recover *c)
{
	long long now = mi_now_ms(), next = -1;
	jv due = jv_array(), keep = jv_object();
	int i, n;

	jv_object_foreach(c->later, k, v) {
		jv at = jv_array_get(jv_copy(v), 0);

		if (jv_number_value(at) <= now)
			due = jv_array_append(due, jv_array_get(jv_copy(v),
			    1));
		else {
			if (next < 0 || jv_number_value(at) < next)
				next = (long long)jv_number_value(at);
			keep = jv_object_set(keep, jv_copy(k), jv_copy(v));
		}
		jv_free(at);
		jv_free(k);
		jv_free(v);
	}
	jv_free(c->later);
	c->later = keep;
	n = jv_array_length(jv_copy(due));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(due), i), log;

		/* Looked up now: the settle is over. */
		log = jv_object_get(jv_copy(row), jv_string("recovery"));
		row = jv_object_set(row, jv_string("recovery"),
		    jv_get_kind(log) == JV_KIND_ARRAY ? jv_array_append(log,
		    jv_object_set(jv_object(), jv_string("event"),
		    jv_string("settled"))) : (jv_free(log), jv_array()));
		rec_unknown_create(c, row);
	}
	jv_free(due);
	/* Those put off to the next turn are due at once. */
	jv_object_foreach(c->later, k, v) {
		jv at = jv_array_get(jv_copy(v), 0);

		if (next < 0 || jv_number_value(at) < next)
			next = (long long)jv_number_value(at);
		jv_free(at);
		jv_free(k);
		jv_free(v);
	}
	return next;
}

/*
 * A create went out and nobody knows what became of it.  Past its
 * deadline the job times out.  Else the provider is asked, where its
 * definition can look tasks up: found, the job is polled; absent, it is
 * created again.  Else it is created again, once: a second create whose
 * outcome is unknown fails the job rather than risk a third.
 */
void
rec_unknown_create(struct mi_recover *c, jv row)
{
	struct mi_err err = MI_ERR_INIT;
	const char *id = NULL, *prov = NULL, *started = NULL;
	char idbuf[40], msg[300];
	struct mi_provider *p;
	double timeout = 0;
	jv cursor = jv_null();
	int page;

	mi_json_str(row, "id", &id, 0, NULL);
	snprintf(idbuf, sizeof(idbuf), "%s", id);
	/* One place per job in a worker: an older row of it held for later
	 * (taken again by a scan meanwhile) is dropped, and a job the
	 * runner drives already is left to it. */
	c->later = jv_object_delete(c->later, jv_string(idbuf));
	if (mi_runner_holds(c->r, idbuf)) {
		jv_free(row);
		return;
	}
	mi_json_str(row, "provider_id", &prov, 0, NULL);
	mi_json_str(row, "started_at", &started, 0, NULL);
	mi_json_num(row, "timeout_ms", &timeout, 0, NULL);
	if (prov == NULL || (p = mi_provider_get(prov, &err)) == NULL) {
		jv_free(row);
		/* A definition or setting that does not load is the
		 * operator's to fix: said at every turn, not only -v. */
		rec_note(c, MI_NOTE_WARN, "job %s: left for later: %s", idbuf,
		    err.msg[0] ? err.msg : "no provider");
		rec_left(c, idbuf, err.msg);
		return;
	}
	/* A result already here is used, past the deadline or not. */
	if (spooled_answer(c, p, jv_copy(row))) {
		jv_free(row);
		return;
	}
	if (too_recent(c, idbuf, row))
		return;
	if (mi_now_ms() >= c->lookups_until) {
		/*
		 * Lookups take a share of the worker's turn, not all of it
		 * (a provider slow to answer would hold every takeover
		 * up): past it, the job waits in hand for the next turn.
		 */
		c->later = jv_object_set(c->later, jv_string(idbuf),
		    jv_array_append(jv_array_append(jv_array(),
		    jv_number((double)mi_now_ms())), row));
		return;
	}
	if (started && timeout > 0 &&
	    mi_jobs_time_ms(started) + (long long)timeout < mi_wall_ms()) {
		snprintf(msg, sizeof(msg), "no result from %s within %.1f s "
		    "(its create's outcome was unknown)", prov ? prov : "the "
		    "provider", timeout / 1000);
		jv_free(row);
		rec_finish(c, idbuf, "timed_out", "TIMEOUT", msg,
		    rec_ev1("timed out"));
		return;
	}
	for (page = 1; page <= LOOKUP_PAGES; ) {
		jv in, req, out, cands;
		const char *st = NULL, *code = NULL, *tid;
		double next = 0;

		if (jv_get_kind(cursor) != JV_KIND_OBJECT)
			cursor = jv_object();
		in = lookup_input(row, jv_object_set(cursor, jv_string("page"),
		    jv_number(page)));
		cursor = jv_null();
		req = mi_provider_call(p, "lookup", jv_copy(in), &err);
		if (!jv_is_valid(req) || jv_get_kind(req) != JV_KIND_OBJECT) {
			/* The provider cannot be asked. */
			jv_free(req);
			jv_free(in);
			break;
		}
		out = exchange(c, idbuf, p, req, in);
		mi_json_str(out, "status", &st, 0, NULL);
		if (st && strcmp(st, "processing") == 0) {
			tid = pick(c, idbuf, out, &cands);
			if (tid) {
				jv_free(row);
				found(c, idbuf, tid, out);
				jv_free(cands);
				jv_free(out);
				return;
			}
			/* Every match is another job's: the next page (and
			 * its cursor, when the outcome names one). */
			jv_free(cands);
			cursor = jv_object_get(jv_copy(out), jv_string("next"));
			if (jv_get_kind(cursor) != JV_KIND_OBJECT) {
				jv_free(cursor);
				cursor = jv_null();
			}
			jv_free(out);
			page++;
			continue;
		}
		if (st && strcmp(st, "failed") == 0) {
			jv e = jv_object_get(jv_copy(out), jv_string("error"));
			int absent = jv_get_kind(e) == JV_KIND_OBJECT &&
			    mi_json_str(e, "code", &code, 0, NULL) == 1 &&
			    strcmp(code, "NOT_FOUND") == 0;

			jv_free(e);
			if (absent) {
				absent_create(c, row, out);
				return;
			}
			jv_free(out);
			break;
		}
		if (st == NULL || strcmp(st, "retry") == 0) {
			lookup_error(out, msg, sizeof(msg));
			jv_free(row);
			rec_left(c, idbuf, msg);
			return;
		}
		if (st && strcmp(st, "unknown") == 0) {
			jv nx = jv_object_get(jv_copy(out), jv_string("next"));

			if (jv_get_kind(nx) == JV_KIND_OBJECT &&
			    mi_json_num(nx, "page", &next, 0, NULL) == 1 &&
			    next > page) {
				/* The rest of next (a cursor) goes along. */
				cursor = nx;
				jv_free(out);
				page = (int)next;
				continue;
			}
			jv_free(nx);
		}
		jv_free(out);
		break;
	}
	jv_free(cursor);
	by_policy(c, p, row);
}
