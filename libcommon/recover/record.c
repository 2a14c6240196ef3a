/*
 * recover/record.c - what the worker writes of a job: events in its
 * recovery log (the lease must be ours), patches, and the records that
 * leave the worker, counted for the summary; and the one way out for
 * notes and fatal errors (the command's callbacks).
 *
 * A job ended here is patched to its final state and released in one
 * statement, then written out; one whose lease was lost meanwhile is
 * left to its new owner, not written.  The runner's records come back
 * through rec_emitted: final ones go out, completed ones wait for a
 * fetcher, the rest are left for a later run.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "jobs.h"
#include "json.h"
#include "recover/worker.h"
#include "banned.h"

/* What became of each job, for the summary and exit status of --once
 * (a worker keeps no such memory: it would grow without end). */
void
rec_set_state(struct mi_recover *c, const char *id, const char *st)
{
	if (!c->once)
		return;
	c->state = jv_object_set(c->state, jv_string(id), jv_string(st));
}

/* A record for the output (the command writes it to stdout). */
void
rec_out_record(struct mi_recover *c, jv rec)
{
	c->o.out(c->o.arg, rec);
}

/* A final job record (failed or timed out) to stdout, counted. */
void
rec_out_final(struct mi_recover *c, jv row)
{
	const char *id = "", *st = "", *code = "PROVIDER_ERROR";
	const char *msg = "the job failed";

	mi_json_str(row, "id", &id, 0, NULL);
	mi_json_str(row, "status", &st, 0, NULL);
	if (strcmp(st, "timed_out") == 0)
		c->timed_out++;
	else
		c->failed++;
	rec_set_state(c, id, "final");
	if (!mi_json_has_error(row)) {
		mi_json_str(row, "error_code", &code, 0, NULL);
		mi_json_str(row, "error_message", &msg, 0, NULL);
		row = mi_json_error(row, code, msg, 0);
	}
	rec_out_record(c, row);
}

/* A job not finished here (another worker has it, or it waits for a
 * later try); its lease, if still ours, is given up. */
void
rec_left(struct mi_recover *c, const char *id, const char *why)
{
	struct mi_err err = MI_ERR_INIT;

	if (mi_jobs_release(c->db, jv_array_append(jv_array(), jv_string(id)),
	    &err) == -1)
		rec_die(c, &err);
	rec_set_state(c, id, "left");
	rec_note(c, MI_NOTE_VERBOSE, "job %s: left for later: %s", id, why);
}

/* Appends a recovery event to the job (its lease is ours); the row. */
jv
rec_event(struct mi_recover *c, const char *id, jv ev)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[3];
	char *text = mi_json_dump(ev);
	jv row;

	jv_free(ev);
	if (text == NULL)
		rec_fail(c, EX_OSERR, "out of memory");
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
		rec_die(c, &err);
	return row;
}

jv
rec_ev1(const char *name)
{
	return jv_object_set(jv_object(), jv_string("event"), jv_string(name));
}

/* Applies a patch (mi_jobs_patch keys); the row, or null: lease lost. */
jv
rec_patch(struct mi_recover *c, const char *id, jv p)
{
	struct mi_err err = MI_ERR_INIT;
	jv row = mi_jobs_patch(c->db, id, p, &err);

	if (!jv_is_valid(row))
		rec_die(c, &err);
	return row;
}

/* Ends a job here with status (failed, timed_out), code and message. */
void
rec_finish(struct mi_recover *c, const char *id, const char *status,
    const char *code, const char *msg, jv ev)
{
	jv p = jv_object(), row;

	jv_free(rec_event(c, id, ev));
	p = jv_object_set(p, jv_string("status"), jv_string(status));
	p = jv_object_set(p, jv_string("error_code"), jv_string(code));
	p = jv_object_set(p, jv_string("error_message"), jv_string(msg));
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	p = jv_object_set(p, jv_string("release"), jv_true());
	row = rec_patch(c, id, p);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		rec_set_state(c, id, "left");
		return;
	}
	rec_out_final(c, row);
}

/* Whether the job's recovery log holds an event of that name. */
int
rec_has_event(jv row, const char *name)
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

/* The runner's records. */

void
rec_emitted(void *arg, jv rec, int passed)
{
	struct mi_recover *c = arg;
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
		rec_out_final(c, rec);
		return;
	}
	if (mi_json_has_error(rec)) {
		jv e = jv_object_get(jv_copy(rec), jv_string("error"));
		const char *m = "not finished";

		mi_json_str(e, "message", &m, 0, NULL);
		rec_note(c, MI_NOTE_VERBOSE, "job %s: left for later: %s", id,
		    m);
		rec_set_state(c, id, "left");
		jv_free(e);
		jv_free(rec);
		return;
	}
	if (strcmp(st, "completed") == 0) {
		c->fq = jv_array_append(c->fq, rec);
		return;
	}
	rec_set_state(c, id, "left");
	jv_free(rec);
}

void
rec_note(struct mi_recover *c, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mi_note_send(c->o.note, c->o.arg, level, fmt, ap);
	va_end(ap);
}

void
rec_fail(struct mi_recover *c, int code, const char *fmt, ...)
{
	struct mi_err err = MI_ERR_INIT;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err.msg, sizeof(err.msg), fmt, ap);
	va_end(ap);
	err.code = code;
	c->o.fatal(c->o.arg, &err);
}

void
rec_die(struct mi_recover *c, const struct mi_err *err)
{
	c->o.fatal(c->o.arg, err);
}
