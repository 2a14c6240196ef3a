/*
 * fetch/pool.c - the download pool of mi-fetch (fetch/pool.h): a queue
 * of slots, one per input record in input order (fetch/fetch.h), the
 * timers and the leases of the jobs held; and what leaves the pool.
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

/* Set by the command's handler of SIGTERM or SIGINT: the downloads
 * under way are abandoned at once and their jobs released. */
static int
stopped(const struct mi_fetch_pool *c)
{
	return c->o.stop != NULL && *c->o.stop != 0;
}

void __attribute__((format(printf, 3, 4)))
fetch_note(struct mi_fetch_pool *c, int level, const char *fmt, ...)
{
	va_list ap;

	/* Whole however long: the names of the jobs released may be. */
	va_start(ap, fmt);
	mi_note_send(c->o.note, c->o.arg, level, fmt, ap);
	va_end(ap);
}

void __attribute__((noreturn))
fetch_fatal(struct mi_fetch_pool *c, const struct mi_err *err)
{
	c->o.fatal(c->o.arg, err);
}

void
fetch_done(struct slot *s, jv out)
{
	jv_free(s->out);
	s->out = out;
	s->state = S_DONE;
}

void
fetch_error(struct slot *s, jv rec, const char *code, const char *msg,
    int retryable)
{
	const char *id = "";

	mi_json_str(rec, "id", &id, 0, NULL);
	fetch_note(s->c, MI_NOTE_WARN, "job %s: %s: %s", id, code, msg);
	s->c->failed = 1;
	if (strcmp(code, "CONFIG_ERROR") == 0)
		s->c->config = 1;
	fetch_done(s, mi_json_error(rec, code, msg, retryable));
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
void
fetch_renew(struct mi_fetch_pool *c, int soon)
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

static void
slot_free(struct slot *s)
{
	if (s->tx)
		mi_store_abort(s->tx);
	jv_free(s->job);
	jv_free(s->out);
	jv_free(s->extra);
	free(s->res);
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
		fetch_fatal(c, &err);
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
		fetch_fatal(c, &err);
	}
	s->c = c;
	s->job = rec;
	s->out = jv_null();
	s->extra = jv_null();
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

	fetch_renew(c, 0);
	while (again && !stopped(c)) {
		again = fetch_take_due(c) > 0;
		for (s = c->head; s && !stopped(c); s = s->next) {
			if (s->state == S_LOADED) {
				fetch_after_load(s);
				again = 1;
			} else if (s->state == S_BACKOFF &&
			    s->wake <= mi_now_ms()) {
				fetch_start(s);
				again = 1;
			}
		}
	}
	if (!stopped(c))
		fetch_record_stored(c);
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
		fetch_note(c, MI_NOTE_WARN, "%s", err.msg);
	else if (n == 0)
		jv_free(ids);
	if (n > 0)
		fetch_note(c, MI_NOTE_INFO, "stopped by signal %d; job%s %s "
		    "released", sig, n > 1 ? "s" : "", names.buf);
	else
		fetch_note(c, MI_NOTE_INFO, "stopped by signal %d", sig);
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
	fetch_begin(slot_add(c, rec));
}

void
mi_fetch_pool_add_invalid(struct mi_fetch_pool *c, const char *msg)
{
	fetch_error(slot_add(c, jv_null()), jv_object(), "INVALID_JSON", msg,
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
