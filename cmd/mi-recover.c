/*
 * mi-recover - takes over every job not in a final state whose lease is
 * free and drives it to its end: pending jobs wait for a slot and are
 * submitted, processing jobs are polled (a create whose outcome is
 * unknown is first looked up at the provider, or else sent again once),
 * completed jobs not yet stored go to mi-fetch children.  Writes artifact
 * records and the records of jobs that ended failed or timed out.  Exits
 * 0 (every job it took is final), 64, 69 (no database), 75 (jobs left for
 * a later run, or stopped by a signal) or 78.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "db.h"
#include "err.h"
#include "jobs.h"
#include "json.h"
#include "names.h"
#include "provider.h"
#include "runner.h"
#include "transport.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-recover [-qv] [--once | --watch] [-f fetchers] [-n max-jobs]\n"
    "  -1, --once       take what is free now, finish it, exit (default)\n"
    "  -w, --watch      keep taking jobs over until SIGTERM\n"
    "  -f, --fetchers N mi-fetch processes storing results, 1-6 (default 2)\n"
    "  -n, --max-jobs N jobs in hand at once (default 1000)\n"
    "  -q, --quiet      no summary on stderr\n"
    "  -v, --verbose    say more on stderr\n"
    "      --help       this text\n"
    "      --version    print the version";

/* Records in the pipe of one mi-fetch at once: few, so that a stop
 * leaves little for a child to finish and the rest can be released. */
#define FETCH_DEPTH	2
#define MAX_FETCHERS	6
/* Pages of a provider's task list searched for a lost create. */
#define LOOKUP_PAGES	20
/* Takeovers of one job within one --once run before it is left. */
#define MAX_TAKES	4

struct fetcher {
	pid_t pid;
	long long not_before;	/* no new child before (one died young) */
	long long started;
	int in, out;		/* its stdin, its stdout */
	struct mi_buf w;	/* not yet written to it */
	struct mi_buf r;	/* a partial line from it */
	jv sent;		/* ids written, oldest first, answer due */
};

struct ctx {
	struct mi_db *db;
	struct mi_runner *r;
	struct mi_loop *loop;	/* lookups */
	int once, quiet, nfetch, max_jobs;
	long lease_ms;
	char start[64];		/* --once: the run's start (database time) */
	char fetch_prog[PATH_MAX];
	struct fetcher f[MAX_FETCHERS];
	jv fq;			/* completed rows waiting for a fetcher */
	jv seen;		/* id -> times taken in this run */
	jv state;		/* id -> "final" or "left" */
	jv reclaim;		/* id -> monotonic ms to wait until */
	jv backoff;		/* id -> [monotonic ms, tries]: store failed */
	jv later;		/* id -> [monotonic ms, row]: lost creates
				 * too recent to look up, held */
	long settle_ms;
	long long store_full;	/* monotonic ms until which the store is
				 * taken to be full; 0: not full */
	long store_full_ms;	/* the next such wait */
	long long next_scan, next_beat, next_renew, next_clean;
	int last_found;
	long taken, stored, failed, timed_out;
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	stop = sig;
}

/* What became of each job, for the summary and exit status of --once
 * (a worker keeps no such memory: it would grow without end). */
static void
set_state(struct ctx *c, const char *id, const char *st)
{
	if (!c->once)
		return;
	c->state = jv_object_set(c->state, jv_string(id), jv_string(st));
}

static void
out_record(jv rec)
{
	mi_json_write(stdout, rec);
}

/* A final job record (failed or timed out) to stdout, counted. */
static void
out_final(struct ctx *c, jv row)
{
	const char *id = "", *st = "", *code = "PROVIDER_ERROR";
	const char *msg = "the job failed";

	mi_json_str(row, "id", &id, 0, NULL);
	mi_json_str(row, "status", &st, 0, NULL);
	if (strcmp(st, "timed_out") == 0)
		c->timed_out++;
	else
		c->failed++;
	set_state(c, id, "final");
	if (!mi_json_has_error(row)) {
		mi_json_str(row, "error_code", &code, 0, NULL);
		mi_json_str(row, "error_message", &msg, 0, NULL);
		row = mi_json_error(row, code, msg, 0);
	}
	out_record(row);
}

/* A job not finished here (another worker has it, or it waits for a
 * later try); its lease, if still ours, is given up. */
static void
left(struct ctx *c, const char *id, const char *why)
{
	struct mi_err err = MI_ERR_INIT;

	if (mi_jobs_release(c->db, jv_array_append(jv_array(), jv_string(id)),
	    &err) == -1)
		mi_die_err(&err);
	set_state(c, id, "left");
	mi_verbose("job %s: left for later: %s", id, why);
}

/* Appends a recovery event to the job (its lease is ours); the row. */
static jv
event(struct ctx *c, const char *id, jv ev)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[3];
	char *text = mi_json_dump(ev);
	jv row;

	jv_free(ev);
	if (text == NULL)
		mi_die(EX_OSERR, "out of memory");
	params[0] = id;
	params[1] = text;
	params[2] = mi_jobs_owner();
	row = mi_db_json1(c->db, "UPDATE app.generation_jobs j SET"
	    " recovery = j.recovery || jsonb_build_array($2::jsonb ||"
	    "  jsonb_build_object('at', now(), 'by', $3::text)),"
	    " updated_at = now()"
	    " WHERE j.id = $1::uuid AND j.lease_owner = $3::text"
	    " RETURNING to_jsonb(j)", 3, params, &err);
	free(text);
	if (!jv_is_valid(row))
		mi_die_err(&err);
	return row;
}

static jv
ev1(const char *name)
{
	return jv_object_set(jv_object(), jv_string("event"), jv_string(name));
}

/* Applies a patch (mi_jobs_patch keys); the row, or null: lease lost. */
static jv
patch(struct ctx *c, const char *id, jv p)
{
	struct mi_err err = MI_ERR_INIT;
	jv row = mi_jobs_patch(c->db, id, p, &err);

	if (!jv_is_valid(row))
		mi_die_err(&err);
	return row;
}

/* Ends a job here with status (failed, timed_out), code and message. */
static void
finish(struct ctx *c, const char *id, const char *status, const char *code,
    const char *msg, jv ev)
{
	jv p = jv_object(), row;

	jv_free(event(c, id, ev));
	p = jv_object_set(p, jv_string("status"), jv_string(status));
	p = jv_object_set(p, jv_string("error_code"), jv_string(code));
	p = jv_object_set(p, jv_string("error_message"), jv_string(msg));
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	p = jv_object_set(p, jv_string("release"), jv_true());
	row = patch(c, id, p);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		set_state(c, id, "left");
		return;
	}
	out_final(c, row);
}

/* Whether the job's recovery log holds an event of that name. */
static int
has_event(jv row, const char *name)
{
	jv log = jv_object_get(jv_copy(row), jv_string("recovery"));
	int i, n, found = 0;

	if (jv_get_kind(log) != JV_KIND_ARRAY) {
		jv_free(log);
		return 0;
	}
	n = jv_array_length(jv_copy(log));
	for (i = 0; i < n && !found; i++) {
		jv e = jv_array_get(jv_copy(log), i);
		const char *s = NULL;

		found = mi_json_str(e, "event", &s, 0, NULL) == 1 &&
		    strcmp(s, name) == 0;
		jv_free(e);
	}
	jv_free(log);
	return found;
}

/* Creates whose outcome is unknown. */

static void
got_outcome(void *arg, jv outcome)
{
	jv *out = arg;

	jv_free(*out);
	*out = outcome;
}

/* The input of a definition's lookup for row (borrowed), page. */
static jv
lookup_input(jv row, int page)
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
	return jv_object_set(in, jv_string("lookup"), jv_object_set(
	    jv_object(), jv_string("page"), jv_number(page)));
}

/* One lookup exchange, waited for; the outcome. */
static jv
exchange(struct ctx *c, struct mi_provider *p, jv req, jv in)
{
	struct mi_err err = MI_ERR_INIT;
	jv out = jv_invalid();

	if (mi_transport_send(c->loop, p, req, in, "lookup", 0, NULL, NULL,
	    got_outcome, &out, &err) == -1)
		return mi_outcome_error("retry", "PROVIDER_UNAVAILABLE",
		    err.msg, 1);
	while (!jv_is_valid(out) && mi_loop_busy(c->loop) > 0)
		if (mi_loop_wait(c->loop, NULL, 0, 1000, &err) == -1)
			break;
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
known_elsewhere(struct ctx *c, const char *id, const char *tid)
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
		mi_die_err(&err);
	r = jv_get_kind(v) == JV_KIND_TRUE;
	jv_free(v);
	return r;
}

/* The first candidate of a found outcome no other job knows, or NULL. */
static const char *
pick(struct ctx *c, const char *id, jv out, jv *cands)
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
found(struct ctx *c, const char *id, const char *tid, jv out)
{
	jv p = jv_object(), st, row;

	st = jv_object_get(jv_copy(out), jv_string("state"));
	p = jv_object_set(p, jv_string("provider_job_id"), jv_string(tid));
	if (jv_get_kind(st) == JV_KIND_OBJECT)
		p = jv_object_set(p, jv_string("provider_state"), st);
	else
		jv_free(st);
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	p = jv_object_set(p, jv_string("status"), jv_string("processing"));
	row = patch(c, id, p);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		set_state(c, id, "left");
		return;
	}
	jv_free(row);
	row = event(c, id, jv_object_set(ev1("create found"),
	    jv_string("provider_job_id"), jv_string(tid)));
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		set_state(c, id, "left");
		return;
	}
	mi_verbose("job %s: the lost create is task %s at the provider",
	    id, tid);
	mi_runner_job(c->r, row);
}

/*
 * Puts the job back in the queue to be created afresh: its provider state
 * is cleared (every key set to null) and it waits for a slot again.
 */
static void
resubmit(struct ctx *c, jv row, jv ev)
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
	r = event(c, idbuf, ev);
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		set_state(c, idbuf, "left");
		return;
	}
	jv_free(r);
	p = jv_object_set(p, jv_string("status"), jv_string("pending"));
	p = jv_object_set(p, jv_string("provider_job_id"), jv_null());
	p = jv_object_set(p, jv_string("provider_state"), clear);
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	p = jv_object_set(p, jv_string("progress"), jv_number(0));
	r = patch(c, idbuf, p);
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		set_state(c, idbuf, "left");
		return;
	}
	mi_verbose("job %s: %s; created again", idbuf, why);
	mi_runner_job(c->r, r);
}

/*
 * The provider has no task of the job's lost create: the job is created
 * again, or, when the outcome says where to resume (a follow-up create
 * never made), polled from there.  row and out are consumed.
 */
static void
absent_create(struct ctx *c, jv row, jv out)
{
	jv res = jv_object_get(out, jv_string("resume")), p, st, r;
	const char *id = NULL, *tid = NULL;
	char idbuf[40];

	if (jv_get_kind(res) != JV_KIND_OBJECT ||
	    mi_json_str(res, "provider_job_id", &tid, 1, NULL) != 1) {
		jv_free(res);
		resubmit(c, row, ev1("create absent"));
		return;
	}
	mi_json_str(row, "id", &id, 0, NULL);
	snprintf(idbuf, sizeof(idbuf), "%s", id);
	jv_free(row);
	r = event(c, idbuf, jv_object_set(ev1("create absent"),
	    jv_string("resumed_at"), jv_string(tid)));
	jv_free(r);
	p = jv_object_set(jv_object(), jv_string("provider_job_id"),
	    jv_string(tid));
	st = jv_object_get(jv_copy(res), jv_string("state"));
	if (jv_get_kind(st) == JV_KIND_OBJECT)
		p = jv_object_set(p, jv_string("provider_state"), st);
	else
		jv_free(st);
	jv_free(res);
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	r = patch(c, idbuf, p);
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		set_state(c, idbuf, "left");
		return;
	}
	mi_verbose("job %s: the lost follow-up create never reached the "
	    "provider; polling task %s again", idbuf, tid);
	mi_runner_job(c->r, r);
}

/*
 * The provider cannot settle a lost create: the definition's lost_create
 * decides, with its reason, between sending it again (once) and holding
 * the job for an operator (it fails, and nothing is sent).  The decision
 * goes into the job's recovery log and the step's debug output (stderr).
 */
static void
by_policy(struct ctx *c, struct mi_provider *p, jv row)
{
	struct mi_err err = MI_ERR_INIT;
	const char *id = NULL, *pol = "resend", *why = NULL;
	char idbuf[40], reason[300], msg[400];
	jv v, ev;

	mi_json_str(row, "id", &id, 0, NULL);
	snprintf(idbuf, sizeof(idbuf), "%s", id);
	v = mi_provider_call(p, "lost_create", lookup_input(row, 1), &err);
	if (jv_get_kind(v) == JV_KIND_OBJECT) {
		mi_json_str(v, "policy", &pol, 0, NULL);
		mi_json_str(v, "reason", &why, 0, NULL);
	} else
		why = err.msg[0] ? err.msg : NULL;
	snprintf(reason, sizeof(reason), "%s", why ? why : "no reason given");
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
		mi_warn("job %s: %s", idbuf, msg);
		ev = jv_object_set(ev1("create held"), jv_string("reason"),
		    jv_string(reason));
		finish(c, idbuf, "failed", "PROVIDER_UNAVAILABLE", msg, ev);
		return;
	}
	jv_free(v);
	if (has_event(row, "create re-sent")) {
		jv_free(row);
		finish(c, idbuf, "failed", "PROVIDER_UNAVAILABLE", "the "
		    "create's outcome is unknown again after it was sent a "
		    "second time; it is not sent a third time",
		    ev1("create unknown twice"));
		return;
	}
	mi_warn("job %s: the create's outcome is unknown and the provider "
	    "cannot settle it: sent again once (%s)", idbuf, reason);
	resubmit(c, row, jv_object_set(ev1("create re-sent"),
	    jv_string("reason"), jv_string(reason)));
}

/*
 * A synchronous create whose whole answer came, and whose process ended
 * before it could write so (the database was away, or it was killed):
 * the result is in the spool as {id}.{ext}.  Returns 1 when the job was
 * completed from it (row consumed).
 */
static int
spooled_answer(struct ctx *c, struct mi_provider *p, jv row)
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
	    (d = opendir(dir)) == NULL)
		return 0;
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
	if (path[0] == '\0' || stat(path, &sb) == -1 || sb.st_size == 0)
		return 0;
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
	r = patch(c, idbuf, pt);
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		jv_free(row);
		set_state(c, idbuf, "left");
		return 1;
	}
	jv_free(r);
	r = event(c, idbuf, jv_object_set(ev1("create answered"),
	    jv_string("file"), jv_string(path)));
	jv_free(row);
	if (jv_get_kind(r) != JV_KIND_OBJECT) {
		jv_free(r);
		return 1;
	}
	mi_verbose("job %s: the lost answer is in the spool; stored from "
	    "there", idbuf);
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
too_recent(struct ctx *c, const char *id, jv row)
{
	jv log = jv_object_get(jv_copy(row), jv_string("recovery"));
	long long last = -1, t, wait;
	const char *s = NULL;
	int i, n;

	n = jv_get_kind(log) == JV_KIND_ARRAY ? jv_array_length(jv_copy(log)) :
	    0;
	for (i = n - 1; i >= 0 && last < 0; i--) {
		jv e = jv_array_get(jv_copy(log), i);

		if (mi_json_str(e, "event", &s, 0, NULL) == 1 &&
		    strcmp(s, "taken over") == 0) {
			if (mi_json_str(e, "lease_expired_at", &s, 0, NULL) == 1)
				last = mi_jobs_time_ms(s);
			if (mi_json_str(e, "last_update", &s, 0, NULL) == 1 &&
			    (t = mi_jobs_time_ms(s)) > last)
				last = t;
			if (last < 0)
				last = 0;
		}
		jv_free(e);
	}
	jv_free(log);
	wait = last + c->settle_ms - mi_wall_ms();
	if (last <= 0 || wait <= 0)
		return 0;
	mi_verbose("job %s: its create was lost %lld ms ago: looked up in "
	    "%lld ms", id, c->settle_ms - wait, wait);
	c->later = jv_object_set(c->later, jv_string(id), jv_array_append(
	    jv_array_append(jv_array(), jv_number((double)(mi_now_ms() +
	    wait))), row));
	return 1;
}

/* Held lost creates whose time has come are looked up. */
static void unknown_create(struct ctx *c, jv row);

static long long
run_later(struct ctx *c)
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
		unknown_create(c, row);
	}
	jv_free(due);
	return next;
}

/*
 * A create went out and nobody knows what became of it.  Past its
 * deadline the job times out.  Else the provider is asked, where its
 * definition can look tasks up: found, the job is polled; absent, it is
 * created again.  Else it is created again, once: a second create whose
 * outcome is unknown fails the job rather than risk a third.
 */
static void
unknown_create(struct ctx *c, jv row)
{
	struct mi_err err = MI_ERR_INIT;
	const char *id = NULL, *prov = NULL, *started = NULL;
	char idbuf[40], msg[300];
	struct mi_provider *p;
	double timeout = 0;
	int page;

	mi_json_str(row, "id", &id, 0, NULL);
	snprintf(idbuf, sizeof(idbuf), "%s", id);
	mi_json_str(row, "provider_id", &prov, 0, NULL);
	mi_json_str(row, "started_at", &started, 0, NULL);
	mi_json_num(row, "timeout_ms", &timeout, 0, NULL);
	if (prov == NULL || (p = mi_provider_get(prov, &err)) == NULL) {
		jv_free(row);
		left(c, idbuf, err.msg);
		return;
	}
	/* A result already here is used, past the deadline or not. */
	if (spooled_answer(c, p, jv_copy(row))) {
		jv_free(row);
		return;
	}
	if (too_recent(c, idbuf, row))
		return;
	if (started && timeout > 0 &&
	    mi_jobs_time_ms(started) + (long long)timeout < mi_wall_ms()) {
		snprintf(msg, sizeof(msg), "no result from %s within %.1f s "
		    "(its create's outcome was unknown)", prov ? prov : "the "
		    "provider", timeout / 1000);
		jv_free(row);
		finish(c, idbuf, "timed_out", "TIMEOUT", msg, ev1("timed out"));
		return;
	}
	for (page = 1; page <= LOOKUP_PAGES; ) {
		jv in = lookup_input(row, page), req, out, cands;
		const char *st = NULL, *code = NULL, *tid;
		double next = 0;

		req = mi_provider_call(p, "lookup", jv_copy(in), &err);
		if (!jv_is_valid(req) || jv_get_kind(req) != JV_KIND_OBJECT) {
			/* The provider cannot be asked. */
			jv_free(req);
			jv_free(in);
			break;
		}
		out = exchange(c, p, req, in);
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
			jv_free(cands);
			jv_free(out);
			page++;		/* every match is another job's */
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
			left(c, idbuf, msg);
			return;
		}
		if (st && strcmp(st, "unknown") == 0) {
			jv nx = jv_object_get(jv_copy(out), jv_string("next"));

			if (jv_get_kind(nx) == JV_KIND_OBJECT &&
			    mi_json_num(nx, "page", &next, 0, NULL) == 1 &&
			    next > page) {
				jv_free(nx);
				jv_free(out);
				page = (int)next;
				continue;
			}
			jv_free(nx);
		}
		jv_free(out);
		break;
	}
	by_policy(c, p, row);
}

/* Scanning. */

/*
 * Leases up to n jobs whose lease is free: not final, or completed and
 * not stored; oldest first, skipping rows other workers are locking.  A
 * job that had an owner gets a "taken over" event.  --once takes only
 * jobs older than its start, or jobs it has had in hand.
 */
static const char take_sql[] =
    "WITH c AS (SELECT q.id, q.status, q.lease_owner, q.lease_expires_at,"
    "  q.updated_at"
    "  FROM app.generation_jobs q"
    "  WHERE (q.status IN ('pending', 'processing') OR"
    "   (q.status = 'completed' AND q.artifact_id IS NULL))"
    "  AND (q.lease_expires_at IS NULL OR q.lease_expires_at < now())"
    "  AND ($4 = '' OR q.created_at <= $4::timestamptz"
    "   OR q.id = ANY($5::uuid[]))"
    "  AND NOT q.id = ANY($6::uuid[])"
    "  ORDER BY q.created_at LIMIT $3::int FOR UPDATE SKIP LOCKED)"
    " UPDATE app.generation_jobs j SET lease_owner = $1::text,"
    " lease_expires_at = now() + $2::int * interval '1 ms',"
    " updated_at = now(),"
    " recovery = CASE WHEN c.lease_owner IS NOT NULL OR"
    "  c.status <> 'pending' THEN j.recovery || jsonb_build_array("
    "  jsonb_build_object('at', now(), 'by', $1::text, 'event',"
    "  'taken over', 'from', c.lease_owner, 'status', c.status,"
    "  'lease_expired_at', c.lease_expires_at,"
    "  'last_update', c.updated_at)) ELSE j.recovery END"
    " FROM c WHERE j.id = c.id"
    " RETURNING to_jsonb(j)";

/* An array literal of the keys of o (borrowed): all of them, or those
 * whose number is at least over. */
static char *
id_array(jv o, int over)
{
	struct mi_buf b = MI_BUF_INIT;
	int first = 1;

	mi_buf_adds(&b, "{");
	jv_object_foreach(o, k, v) {
		if (over == 0 || (jv_get_kind(v) == JV_KIND_NUMBER &&
		    jv_number_value(v) >= over)) {
			mi_buf_addf(&b, "%s%s", first ? "" : ",",
			    jv_string_value(k));
			first = 0;
		}
		jv_free(k);
		jv_free(v);
	}
	mi_buf_adds(&b, "}");
	return mi_buf_detach(&b, NULL);
}

/*
 * The jobs not to take now: those taken MAX_TAKES times in this --once
 * run, and those whose result could not be stored, until their backoff
 * ends.
 */
static char *
skip_array(struct ctx *c)
{
	long long now = mi_now_ms();
	jv ids = jv_object(), keep = jv_object();
	char *out;

	jv_object_foreach(c->seen, k, v) {
		if (c->once && jv_get_kind(v) == JV_KIND_NUMBER &&
		    jv_number_value(v) >= MAX_TAKES)
			ids = jv_object_set(ids, jv_copy(k), jv_true());
		jv_free(k);
		jv_free(v);
	}
	jv_object_foreach(c->backoff, k, v) {
		jv until = jv_array_get(jv_copy(v), 0);

		if (jv_number_value(until) > now)
			ids = jv_object_set(ids, jv_copy(k), jv_true());
		if (c->once || jv_number_value(until) > now - 3600000)
			keep = jv_object_set(keep, jv_copy(k), jv_copy(v));
		jv_free(until);
		jv_free(k);
		jv_free(v);
	}
	jv_free(c->backoff);
	c->backoff = keep;
	out = id_array(ids, 0);
	jv_free(ids);
	return out;
}

/*
 * A result the store refused (STORAGE_ERROR): the job waits, 5 s then
 * twice as long each time, rather than being downloaded again at once;
 * a full disk stops the fetching of every job for a while (and ends a
 * --once pass early), instead of downloading everything again in vain.
 */
static void
store_failed(struct ctx *c, const char *id, const char *msg)
{
	jv v = jv_object_get(jv_copy(c->backoff), jv_string(id));
	long long now = mi_now_ms();
	double tries = 0;

	if (jv_get_kind(v) == JV_KIND_ARRAY) {
		jv t = jv_array_get(jv_copy(v), 1);

		tries = jv_number_value(t);
		jv_free(t);
	}
	jv_free(v);
	tries++;
	c->backoff = jv_object_set(c->backoff, jv_string(id),
	    jv_array_append(jv_array_append(jv_array(), jv_number((double)(
	    now + (5000LL << (tries < 8 ? (int)tries - 1 : 7))))),
	    jv_number(tries)));
	if (strstr(msg, "No space left") || strstr(msg, "Disk quota") ||
	    strstr(msg, "ENOSPC")) {
		if (c->store_full == 0)
			mi_warn("the store is full (%s): no result is fetched "
			    "for %ld s", msg, c->store_full_ms / 1000);
		c->store_full = now + c->store_full_ms;
		if (c->store_full_ms < 600000)
			c->store_full_ms *= 2;
	}
}

static int
in_hand(struct ctx *c)
{
	int i, n = mi_runner_count(c->r) + jv_array_length(jv_copy(c->fq)) +
	    jv_object_length(jv_copy(c->later));

	for (i = 0; i < c->nfetch; i++)
		n += jv_array_length(jv_copy(c->f[i].sent));
	return n;
}

static void
dispatch(struct ctx *c, jv row)
{
	const char *id = NULL, *st = NULL, *pjid = NULL;
	int unknown = 0;
	double sc = 0;

	mi_json_str(row, "id", &id, 0, NULL);
	mi_json_str(row, "status", &st, 0, NULL);
	if (id == NULL || st == NULL) {
		jv_free(row);
		return;
	}
	c->reclaim = jv_object_delete(c->reclaim, jv_string(id));
	set_state(c, id, "taken");
	if (strcmp(st, "completed") == 0) {
		c->fq = jv_array_append(c->fq, row);
		return;
	}
	mi_json_str(row, "provider_job_id", &pjid, 0, NULL);
	mi_json_bool(row, "submit_unknown", &unknown, 0, NULL);
	mi_json_num(row, "submit_count", &sc, 0, NULL);
	if (strcmp(st, "processing") == 0 && unknown) {
		unknown_create(c, row);
		return;
	}
	/* The last create was refused (it was to be tried again). */
	if (strcmp(st, "processing") == 0 && pjid == NULL && sc > 0) {
		resubmit(c, row, ev1("create again"));
		return;
	}
	mi_runner_job(c->r, row);
}

/* Milliseconds until the first lease of an open job expires (capped). */
static long
next_expiry(struct ctx *c, long cap)
{
	struct mi_err err = MI_ERR_INIT;
	jv v = mi_db_json1(c->db, "SELECT to_jsonb(ceil(extract(epoch FROM"
	    " min(j.lease_expires_at) - now()) * 1000))"
	    " FROM app.generation_jobs j"
	    " WHERE (j.status IN ('pending', 'processing') OR"
	    "  (j.status = 'completed' AND j.artifact_id IS NULL))"
	    " AND j.lease_expires_at >= now()", 0, NULL, &err);
	long ms = cap;

	if (!jv_is_valid(v))
		mi_die_err(&err);
	if (jv_get_kind(v) == JV_KIND_NUMBER && jv_number_value(v) < cap)
		ms = (long)jv_number_value(v);
	jv_free(v);
	return ms < 0 ? 0 : ms;
}

static void
scan(struct ctx *c)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[6];
	char lease[32], lim[16], *mine, *skip;
	int i, n, room = c->max_jobs - in_hand(c);
	long interval = c->lease_ms / 2 < 1000 ? c->lease_ms / 2 : 1000;
	jv rows;

	c->last_found = 0;
	if (room > 0) {
		snprintf(lease, sizeof(lease), "%ld", c->lease_ms);
		snprintf(lim, sizeof(lim), "%d", room);
		mine = id_array(c->seen, 0);
		skip = skip_array(c);
		params[0] = mi_jobs_owner();
		params[1] = lease;
		params[2] = lim;
		params[3] = c->start;
		params[4] = mine;
		params[5] = skip;
		rows = mi_db_json(c->db, take_sql, 6, params, &err);
		free(mine);
		free(skip);
		if (!jv_is_valid(rows))
			mi_die_err(&err);
		n = c->last_found = jv_array_length(jv_copy(rows));
		for (i = 0; i < n; i++) {
			jv row = jv_array_get(jv_copy(rows), i), t;
			const char *id = NULL;

			mi_json_str(row, "id", &id, 0, NULL);
			t = jv_object_get(jv_copy(c->seen), jv_string(id));
			if (c->once)
				c->seen = jv_object_set(c->seen, jv_string(id),
				    jv_number(jv_get_kind(t) == JV_KIND_NUMBER ?
				    jv_number_value(t) + 1 : 1));
			jv_free(t);
			c->taken++;
			dispatch(c, row);
		}
		jv_free(rows);
	}
	/* Take a lapsing lease over as soon as it lapses. */
	c->next_scan = mi_now_ms() + next_expiry(c, interval) + 20;
}

/* The heartbeat of this worker (app.recovery_workers). */
static void
heartbeat(struct ctx *c, int alive)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[2];
	char lease[32];

	snprintf(lease, sizeof(lease), "%ld", c->lease_ms);
	params[0] = mi_jobs_owner();
	params[1] = lease;
	if (mi_db_exec(c->db, alive ?
	    "INSERT INTO app.recovery_workers (owner, lease_ms, expires_at)"
	    " VALUES ($1, $2::int, now() + $2::int * interval '1 ms')"
	    " ON CONFLICT (owner) DO UPDATE SET expires_at ="
	    " EXCLUDED.expires_at" :
	    "DELETE FROM app.recovery_workers WHERE owner = $1 OR"
	    " expires_at < now() - interval '1 day'",
	    alive ? 2 : 1, params, NULL, &err) == -1)
		mi_die_err(&err);
}

/* Fetchers: mi-fetch children, fed job records through a pipe. */

static void
fetch_program(struct ctx *c)
{
	char self[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	snprintf(c->fetch_prog, sizeof(c->fetch_prog), "mi-fetch");
	if (n <= 0)
		return;
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) == NULL)
		return;
	*slash = '\0';
	if ((size_t)snprintf(c->fetch_prog, sizeof(c->fetch_prog),
	    "%s/mi-fetch", self) >= sizeof(c->fetch_prog) ||
	    access(c->fetch_prog, X_OK) == -1)
		snprintf(c->fetch_prog, sizeof(c->fetch_prog), "mi-fetch");
}

static void
fetcher_start(struct ctx *c, struct fetcher *f)
{
	int in[2], out[2];
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1)
		mi_die(EX_OSERR, "unable to make a pipe: %s", strerror(errno));
	if ((pid = fork()) == -1)
		mi_die(EX_OSERR, "unable to fork: %s", strerror(errno));
	if (pid == 0) {
		static char name[] = "mi-fetch", verbose[] = "-v";
		char *argv[3] = { name, NULL, NULL };

		if (mi_verbosity > 0)
			argv[1] = verbose;
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if (dup2(in[0], 0) == -1 || dup2(out[1], 1) == -1)
			_exit(EX_OSERR);
		execvp(c->fetch_prog, argv);
		fprintf(stderr, "mi-recover: unable to run '%s': %s\n",
		    c->fetch_prog, strerror(errno));
		_exit(EX_UNAVAILABLE);
	}
	close(in[0]);
	close(out[1]);
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	f->pid = pid;
	f->started = mi_now_ms();
	f->in = in[1];
	f->out = out[0];
	mi_buf_reset(&f->w);
	mi_buf_reset(&f->r);
	jv_free(f->sent);
	f->sent = jv_array();
}

/* The job records still due from a fetcher that is gone are taken
 * again when their lease lapses. */
static void
fetcher_lost(struct ctx *c, struct fetcher *f)
{
	int i, n = jv_array_length(jv_copy(f->sent)), status;
	long long until = mi_now_ms() + 2 * c->lease_ms + 1000;

	for (i = 0; i < n; i++) {
		jv id = jv_array_get(jv_copy(f->sent), i);

		c->reclaim = jv_object_set(c->reclaim, id,
		    jv_number((double)until));
	}
	if (f->in >= 0)
		close(f->in);
	close(f->out);
	f->in = f->out = -1;
	waitpid(f->pid, &status, 0);
	if (WIFSIGNALED(status))
		mi_warn("mi-fetch (pid %ld) was killed by signal %d; %d jobs "
		    "are taken again", (long)f->pid, WTERMSIG(status), n);
	else if (n > 0)
		mi_warn("mi-fetch (pid %ld) exited with status %d; %d jobs "
		    "are taken again", (long)f->pid, WEXITSTATUS(status), n);
	f->pid = -1;
	jv_free(f->sent);
	f->sent = jv_array();
	/* One that cannot even start is not restarted in a tight loop. */
	if (mi_now_ms() - f->started < 1000)
		f->not_before = mi_now_ms() + 1000;
}

static void
fetcher_flush(struct ctx *c, struct fetcher *f)
{
	ssize_t n;

	while (f->in >= 0 && f->w.len > 0) {
		n = write(f->in, f->w.buf, f->w.len);
		if (n > 0) {
			memmove(f->w.buf, f->w.buf + n, f->w.len - (size_t)n);
			f->w.len -= (size_t)n;
			f->w.buf[f->w.len] = '\0';
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		/* EPIPE: the child is gone; its stdout tells the rest. */
		close(f->in);
		f->in = -1;
		mi_buf_reset(&f->w);
		(void)c;
		return;
	}
}

/* One answer of a fetcher: an artifact, or the job as an error record. */
static void
fetched(struct ctx *c, struct fetcher *f, const char *line)
{
	struct mi_err err = MI_ERR_INIT;
	jv rec = mi_json_parse(line, &err), id;
	const char *st = NULL, *ids;

	id = jv_array_length(jv_copy(f->sent)) > 0 ?
	    jv_array_get(jv_copy(f->sent), 0) : jv_string("");
	if (jv_array_length(jv_copy(f->sent)) > 0)
		f->sent = jv_array_slice(f->sent, 1,
		    jv_array_length(jv_copy(f->sent)));
	ids = jv_string_value(id);
	if (!jv_is_valid(rec)) {
		jv_free(rec);
		mi_warn("job %s: mi-fetch wrote no JSON", ids);
		set_state(c, ids, "left");
	} else if (mi_json_has_error(rec)) {
		mi_json_str(rec, "status", &st, 0, NULL);
		if (st && (strcmp(st, "failed") == 0 ||
		    strcmp(st, "timed_out") == 0))
			out_final(c, rec);
		else {
			jv e = jv_object_get(jv_copy(rec), jv_string("error"));
			const char *m = "not stored";

			mi_json_str(e, "message", &m, 0, NULL);
			mi_verbose("job %s: left for later: %s", ids, m);
			if (mi_json_str(e, "code", &st, 0, NULL) == 1 &&
			    strcmp(st, "STORAGE_ERROR") == 0)
				store_failed(c, ids, m);
			jv_free(e);
			jv_free(rec);
			set_state(c, ids, "left");
		}
	} else {
		c->stored++;
		set_state(c, ids, "final");
		out_record(rec);
	}
	jv_free(id);
}

/* Reads what a fetcher wrote; a fetcher at its end is replaced. */
static void
fetcher_read(struct ctx *c, struct fetcher *f)
{
	char buf[65536], *nl;
	ssize_t n;

	if (f->pid <= 0)
		return;
	for (;;) {
		n = read(f->out, buf, sizeof(buf));
		if (n > 0) {
			mi_buf_add(&f->r, buf, (size_t)n);
			while ((nl = memchr(f->r.buf, '\n', f->r.len)) != NULL) {
				size_t k = (size_t)(nl - f->r.buf) + 1;

				*nl = '\0';
				if (nl > f->r.buf)
					fetched(c, f, f->r.buf);
				memmove(f->r.buf, f->r.buf + k, f->r.len - k);
				f->r.len -= k;
				f->r.buf[f->r.len] = '\0';
			}
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		fetcher_lost(c, f);
		return;
	}
}

/* Hands waiting completed jobs to fetchers with room. */
static void
feed(struct ctx *c)
{
	int i;

	if (c->store_full > mi_now_ms()) {
		int n = jv_array_length(jv_copy(c->fq));

		for (i = 0; i < n; i++) {
			jv row = jv_array_get(jv_copy(c->fq), i);
			const char *id = NULL;

			if (mi_json_str(row, "id", &id, 0, NULL) == 1)
				left(c, id, "the store is full");
			jv_free(row);
		}
		jv_free(c->fq);
		c->fq = jv_array();
		return;
	}
	if (c->store_full) {
		/* The wait is over: the next result tries the store. */
		c->store_full = 0;
	}

	for (i = 0; i < c->nfetch; i++) {
		struct fetcher *f = &c->f[i];

		while (jv_array_length(jv_copy(c->fq)) > 0 &&
		    jv_array_length(jv_copy(f->sent)) < FETCH_DEPTH) {
			jv row = jv_array_get(jv_copy(c->fq), 0);
			const char *id = NULL;
			char *text;

			if (f->pid <= 0 && !stop &&
			    mi_now_ms() >= f->not_before)
				fetcher_start(c, f);
			if (f->pid <= 0 || f->in < 0) {
				jv_free(row);
				break;
			}
			c->fq = jv_array_slice(c->fq, 1,
			    jv_array_length(jv_copy(c->fq)));
			mi_json_str(row, "id", &id, 0, NULL);
			f->sent = jv_array_append(f->sent, jv_string(id));
			if ((text = mi_json_dump(row)) == NULL)
				mi_die(EX_OSERR, "out of memory");
			mi_buf_adds(&f->w, text);
			mi_buf_adds(&f->w, "\n");
			free(text);
			jv_free(row);
		}
		fetcher_flush(c, f);
	}
}

/* Keeps the leases of jobs waiting for a fetcher (or in its pipe). */
static void
renew_queued(struct ctx *c)
{
	struct mi_err err = MI_ERR_INIT;
	jv ids = jv_array(), kept, held = jv_object(), q = jv_array();
	int i, n;

	n = jv_array_length(jv_copy(c->fq));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(c->fq), i);

		ids = jv_array_append(ids, jv_object_get(row,
		    jv_string("id")));
	}
	for (i = 0; i < c->nfetch; i++)
		ids = jv_array_concat(ids, jv_copy(c->f[i].sent));
	jv_object_foreach(c->later, k, v) {
		ids = jv_array_append(ids, k);
		jv_free(v);
	}
	if (jv_array_length(jv_copy(ids)) == 0) {
		jv_free(ids);
		jv_free(held);
		jv_free(q);
		return;
	}
	kept = mi_jobs_renew(c->db, ids, &err);
	if (!jv_is_valid(kept))
		mi_die_err(&err);
	n = jv_array_length(jv_copy(kept));
	for (i = 0; i < n; i++)
		held = jv_object_set(held, jv_array_get(jv_copy(kept), i),
		    jv_true());
	jv_free(kept);
	/* A queued job whose lease was lost belongs to another worker. */
	n = jv_array_length(jv_copy(c->fq));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(c->fq), i);
		jv id = jv_object_get(jv_copy(row), jv_string("id"));
		jv h = jv_object_get(jv_copy(held), jv_copy(id));

		if (jv_is_valid(h))
			q = jv_array_append(q, row);
		else {
			set_state(c, jv_string_value(id), "left");
			jv_free(row);
		}
		jv_free(h);
		jv_free(id);
	}
	jv_free(held);
	jv_free(c->fq);
	c->fq = q;
}

/* Spool files (results of synchronous and local providers) whose job
 * is final, stored, or gone. */
static void
clean_spool(struct ctx *c)
{
	struct mi_err err = MI_ERR_INIT;
	char dir[PATH_MAX], path[PATH_MAX + 300], id[40];
	const char *params[1];
	struct mi_buf b = MI_BUF_INIT;
	struct dirent *de;
	jv rows, names = jv_object();
	DIR *d;
	int i, n, first = 1;

	if (getenv("MI_SPOOL_DIR") == NULL &&
	    getenv("ASSET_STORAGE_DIR") == NULL)
		return;
	if (mi_spool_dir(dir, sizeof(dir), &err) == -1 ||
	    (d = opendir(dir)) == NULL)
		return;
	mi_buf_adds(&b, "{");
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) < 37 || de->d_name[36] != '.')
			continue;
		snprintf(id, sizeof(id), "%.36s", de->d_name);
		if (!mi_name_uuid_ok(id))
			continue;
		names = jv_object_set(names, jv_string(de->d_name),
		    jv_string(id));
		mi_buf_addf(&b, "%s%s", first ? "" : ",", id);
		first = 0;
	}
	closedir(d);
	mi_buf_adds(&b, "}");
	if (first) {
		mi_buf_release(&b);
		jv_free(names);
		return;
	}
	params[0] = b.buf;
	rows = mi_db_json(c->db, "SELECT jsonb_build_object('id', j.id,"
	    " 'keep', (j.lease_expires_at > now()) OR"
	    "  j.status IN ('pending', 'processing') OR"
	    "  (j.status = 'completed' AND j.artifact_id IS NULL),"
	    " 'result_uri', j.result_uri)"
	    " FROM app.generation_jobs j WHERE j.id = ANY($1::uuid[])",
	    1, params, &err);
	mi_buf_release(&b);
	if (!jv_is_valid(rows))
		mi_die_err(&err);
	jv_object_foreach(names, name, jid) {
		int keep = 0, known = 0;
		struct stat sb;

		n = jv_array_length(jv_copy(rows));
		for (i = 0; i < n && !known; i++) {
			jv row = jv_array_get(jv_copy(rows), i);
			const char *rid = NULL;

			mi_json_str(row, "id", &rid, 0, NULL);
			if (rid && strcmp(rid, jv_string_value(jid)) == 0) {
				known = 1;
				mi_json_bool(row, "keep", &keep, 0, NULL);
			}
			jv_free(row);
		}
		snprintf(path, sizeof(path), "%s/%s", dir,
		    jv_string_value(name));
		/* A file without a job: removed once surely abandoned. */
		if (!known && (stat(path, &sb) == -1 ||
		    sb.st_mtime > time(NULL) - 600))
			keep = 1;
		if (!keep && unlink(path) == 0)
			mi_verbose("removed the spool file '%s'", path);
		jv_free(name);
		jv_free(jid);
	}
	jv_free(names);
	jv_free(rows);
}

/*
 * Named temporary files of the store: where O_TMPFILE is not supported
 * the store writes {root}/{tenant}/.objects/.tmp.XXXXXX, which a killed
 * writer leaves behind.  One untouched for an hour has no writer left.
 */
static void
clean_store(void)
{
	const char *root = getenv("ASSET_STORAGE_DIR");
	char dir[PATH_MAX], path[PATH_MAX + 300];
	struct dirent *te, *oe;
	struct stat sb;
	DIR *d, *od;

	if (root == NULL || (d = opendir(root)) == NULL)
		return;
	while ((te = readdir(d)) != NULL) {
		if (te->d_name[0] == '.' || (size_t)snprintf(dir, sizeof(dir),
		    "%s/%s/.objects", root, te->d_name) >= sizeof(dir) ||
		    (od = opendir(dir)) == NULL)
			continue;
		while ((oe = readdir(od)) != NULL) {
			if (strncmp(oe->d_name, ".tmp.", 5) != 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, oe->d_name);
			if (stat(path, &sb) == 0 &&
			    sb.st_mtime < time(NULL) - 3600 &&
			    unlink(path) == 0)
				mi_verbose("removed the temporary file '%s'",
				    path);
		}
		closedir(od);
	}
	closedir(d);
}

/* The runner's records. */

static void
emitted(void *arg, jv rec, int passed)
{
	struct ctx *c = arg;
	const char *id = "", *st = "";
	jv t;

	(void)passed;
	mi_json_str(rec, "id", &id, 0, NULL);
	mi_json_str(rec, "status", &st, 0, NULL);
	/* Jobs of fallbacks made here are this run's too. */
	t = jv_object_get(jv_copy(c->seen), jv_string(id));
	if (!jv_is_valid(t) && id[0] && c->once)
		c->seen = jv_object_set(c->seen, jv_string(id), jv_number(0));
	jv_free(t);
	if (strcmp(st, "failed") == 0 || strcmp(st, "timed_out") == 0) {
		out_final(c, rec);
		return;
	}
	if (mi_json_has_error(rec)) {
		jv e = jv_object_get(jv_copy(rec), jv_string("error"));
		const char *m = "not finished";

		mi_json_str(e, "message", &m, 0, NULL);
		mi_verbose("job %s: left for later: %s", id, m);
		set_state(c, id, "left");
		jv_free(e);
		jv_free(rec);
		return;
	}
	if (strcmp(st, "completed") == 0) {
		c->fq = jv_array_append(c->fq, rec);
		return;
	}
	set_state(c, id, "left");
	jv_free(rec);
}

static void
noted(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level == MI_NOTE_WARN)
		mi_warn("%s", msg);
	else if (level == MI_NOTE_INFO || mi_verbosity > 0)
		fprintf(stderr, "%s: %s\n", mi_getprogname(), msg);
}

/* The main loop. */

static int
busy(struct ctx *c)
{
	int i;

	if (in_hand(c) > 0)
		return 1;
	for (i = 0; i < c->nfetch; i++)
		if (c->f[i].w.len > 0)
			return 1;
	return 0;
}

/* Drops reclaims whose wait is over; whether any is left. */
static int
reclaiming(struct ctx *c)
{
	long long now = mi_now_ms();
	jv keep = jv_object();
	int n;

	jv_object_foreach(c->reclaim, k, v) {
		if (jv_number_value(v) > now)
			keep = jv_object_set(keep, k, v);
		else {
			set_state(c, jv_string_value(k), "left");
			jv_free(k);
			jv_free(v);
		}
	}
	jv_free(c->reclaim);
	c->reclaim = keep;
	n = jv_object_length(jv_copy(keep));
	return n > 0;
}

static void
run(struct ctx *c)
{
	struct mi_err err = MI_ERR_INIT;
	int fds[MAX_FETCHERS], i, n;
	long long now, wake, later;

	for (;;) {
		now = mi_now_ms();
		if (stop)
			return;
		if (now >= c->next_beat) {
			heartbeat(c, 1);
			c->next_beat = now + c->lease_ms / 3;
		}
		if (now >= c->next_renew) {
			renew_queued(c);
			c->next_renew = now + c->lease_ms / 3;
		}
		if (now >= c->next_clean) {
			clean_spool(c);
			clean_store();
			c->next_clean = now + 60000;
		}
		if (c->once && !busy(c))
			c->next_scan = now;	/* done? one more look */
		if (now >= c->next_scan)
			scan(c);
		later = run_later(c);
		feed(c);
		if (c->once && !busy(c) && c->last_found == 0 &&
		    !reclaiming(c))
			return;
		/* A full store ends a pass: a later run finds room. */
		if (c->once && c->store_full > mi_now_ms() && !busy(c))
			return;
		wake = c->next_scan;
		if (c->next_beat < wake)
			wake = c->next_beat;
		if (c->next_renew < wake)
			wake = c->next_renew;
		for (i = 0; i < c->nfetch; i++)
			if ((c->f[i].w.len > 0 || (c->f[i].pid <= 0 &&
			    jv_array_length(jv_copy(c->fq)) > 0)) &&
			    now + 20 < wake)
				wake = now + 20;
		if (c->once && !busy(c) && now + 200 < wake)
			wake = now + 200;	/* waiting for a reclaim */
		if (later >= 0 && later < wake)
			wake = later;
		for (i = n = 0; i < c->nfetch; i++)
			if (c->f[i].pid > 0)
				fds[n++] = c->f[i].out;
		if (mi_runner_run(c->r, fds, n,
		    wake > now ? wake - now : 0, &err) == -1)
			mi_die_err(&err);
		for (i = 0; i < c->nfetch; i++)
			fetcher_read(c, &c->f[i]);
	}
}

/* Gives up everything in hand and lets the fetchers finish. */
static void
shut_down(struct ctx *c)
{
	struct mi_err err = MI_ERR_INIT;
	jv ids = jv_array();
	int i, n, status;
	long long until;

	mi_runner_release(c->r);
	n = jv_array_length(jv_copy(c->fq));
	for (i = 0; i < n; i++)
		ids = jv_array_append(ids, jv_object_get(jv_array_get(
		    jv_copy(c->fq), i), jv_string("id")));
	for (i = 0; i < c->nfetch; i++)
		ids = jv_array_concat(ids, jv_copy(c->f[i].sent));
	jv_object_foreach(c->later, k, v) {
		ids = jv_array_append(ids, k);
		jv_free(v);
	}
	if (mi_jobs_release(c->db, ids, &err) == -1)
		mi_warn("%s", err.msg);
	for (i = 0; i < c->nfetch; i++)
		if (c->f[i].pid > 0 && c->f[i].in >= 0) {
			close(c->f[i].in);
			c->f[i].in = -1;
		}
	/* A fetcher ends when its records are stored. */
	until = mi_now_ms() + 30000;
	for (i = 0; i < c->nfetch; i++) {
		struct fetcher *f = &c->f[i];

		if (f->pid <= 0)
			continue;
		while (waitpid(f->pid, &status, WNOHANG) == 0) {
			if (mi_now_ms() > until) {
				kill(f->pid, SIGKILL);
				waitpid(f->pid, &status, 0);
				break;
			}
			fetcher_read(c, f);
			mi_sleep_ms(20);
		}
		f->pid = -1;
	}
	heartbeat(c, 0);
}

/* Prints the figures of the run; returns the jobs left unfinished. */
static int
summary(struct ctx *c)
{
	int left = 0;

	jv_object_foreach(c->state, k, v) {
		if (strcmp(jv_string_value(v), "final") != 0)
			left++;
		jv_free(k);
		jv_free(v);
	}
	if (!c->quiet)
		fprintf(stderr, "mi-recover: took %ld jobs over: %ld stored, "
		    "%ld failed, %ld timed out, %d left for later\n",
		    c->taken, c->stored, c->failed, c->timed_out, left);
	return left;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "fetchers", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "max-jobs", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, '1' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "watch", no_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 }
	};
	struct mi_runner_opts ro = { 1, 0, emitted, noted, NULL };
	struct mi_err err = MI_ERR_INIT;
	unsigned long long v;
	const char *s;
	struct ctx c;
	jv t;
	int ch, i, once = 0, watch = 0, left;

	mi_setprogname(argv[0]);
	memset(&c, 0, sizeof(c));
	c.nfetch = 2;
	c.max_jobs = 1000;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "1f:hn:qvw", opts, NULL)) != -1) {
		switch (ch) {
		case '1': once = 1; break;
		case 'f':
			if (mi_parse_uint(optarg, 1, MAX_FETCHERS, &v) == -1)
				mi_die(EX_USAGE, "bad fetcher count '%s'",
				    optarg);
			c.nfetch = (int)v;
			break;
		case 'h': mi_usage(usage, 0);
		case 'n':
			if (mi_parse_uint(optarg, 1, 1000000, &v) == -1)
				mi_die(EX_USAGE, "bad job count '%s'", optarg);
			c.max_jobs = (int)v;
			break;
		case 'q': c.quiet = 1; break;
		case 'v': mi_verbosity++; break;
		case 'V': mi_version();
		case 'w': watch = 1; break;
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mi-recover: unexpected argument '%s'\n",
		    argv[optind]);
		mi_usage(usage, EX_USAGE);
	}
	if (once && watch) {
		fprintf(stderr, "mi-recover: --once and --watch exclude each "
		    "other\n");
		mi_usage(usage, EX_USAGE);
	}
	c.once = !watch;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	ro.arg = &c;
	c.lease_ms = mi_jobs_lease_ms();
	c.fq = jv_array();
	c.seen = jv_object();
	c.state = jv_object();
	c.reclaim = jv_object();
	c.backoff = jv_object();
	c.later = jv_object();
	c.settle_ms = 10000;
	if ((s = getenv("MI_LOOKUP_SETTLE_MS")) != NULL &&
	    mi_parse_uint(s, 0, 3600000, &v) == 0)
		c.settle_ms = (long)v;
	c.store_full_ms = 60000;
	for (i = 0; i < MAX_FETCHERS; i++) {
		c.f[i].pid = -1;
		c.f[i].in = c.f[i].out = -1;
		mi_buf_init(&c.f[i].w, 0);
		mi_buf_init(&c.f[i].r, 0);
		c.f[i].sent = jv_array();
	}
	fetch_program(&c);
	if ((c.db = mi_db_open(NULL, &err)) == NULL ||
	    (c.loop = mi_loop_new(&err)) == NULL ||
	    (c.r = mi_runner_new(c.db, &ro, &err)) == NULL)
		mi_die_err(&err);
	if (c.once) {
		t = mi_db_json1(c.db, "SELECT to_jsonb(now()::text)", 0, NULL,
		    &err);
		if (jv_get_kind(t) != JV_KIND_STRING)
			mi_die_err(&err);
		snprintf(c.start, sizeof(c.start), "%s", jv_string_value(t));
		jv_free(t);
	}
	run(&c);
	shut_down(&c);
	if (c.once)
		clean_spool(&c);
	left = summary(&c);
	mi_runner_free(c.r);
	mi_loop_free(c.loop);
	mi_provider_free_all();
	mi_db_close(c.db);
	for (i = 0; i < MAX_FETCHERS; i++) {
		mi_buf_release(&c.f[i].w);
		mi_buf_release(&c.f[i].r);
		jv_free(c.f[i].sent);
	}
	jv_free(c.fq);
	jv_free(c.seen);
	jv_free(c.state);
	jv_free(c.reclaim);
	jv_free(c.backoff);
	jv_free(c.later);
	mi_close_stdout();
	if (stop && c.once)
		return EX_TEMPFAIL;
	return c.once && left > 0 ? EX_TEMPFAIL : 0;
}
