/*
 * recover/recover.c - a recovery worker's face (recover.h) and its loop.
 *
 * Each turn: the heartbeat and the leases of queued jobs on their timers
 * (a third of the lease), the spool and the store cleaned every minute,
 * a scan for free leases when one is due (at once when --once has
 * nothing in hand), held lost creates looked up, completed jobs fed to
 * the fetchers, then the runner works until the next of these is due or
 * a fetcher writes.  --once ends when nothing is in hand, the last scan
 * found nothing and no reclaim is waited for, or when the store is full.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db.h"
#include "jobs.h"
#include "recover/worker.h"
#include "banned.h"

/* The main loop. */

static int
busy(struct mi_recover *c)
{
	int i;

	if (rec_in_hand(c) > 0)
		return 1;
	for (i = 0; i < c->nfetch; i++)
		if (c->f[i].w.len > 0)
			return 1;
	return 0;
}

/* Drops reclaims whose wait is over; whether any is left. */
static int
reclaiming(struct mi_recover *c)
{
	long long now = mi_now_ms();
	jv keep = jv_object();
	int n;

	jv_object_foreach(c->reclaim, k, v) {
		if (jv_number_value(v) > now)
			keep = jv_object_set(keep, k, v);
		else {
			rec_set_state(c, jv_string_value(k), "left");
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
run(struct mi_recover *c)
{
	struct mi_err err = MI_ERR_INIT;
	int fds[MAX_FETCHERS], i, n;
	long long now, wake, later;

	for (;;) {
		now = mi_now_ms();
		if (*c->o.stop)
			return;
		if (now >= c->next_beat) {
			rec_heartbeat(c, 1);
			c->next_beat = now + c->lease_ms / 3;
		}
		if (now >= c->next_renew) {
			rec_renew_queued(c);
			c->next_renew = now + c->lease_ms / 3;
		}
		if (now >= c->next_clean) {
			rec_clean_spool(c);
			rec_clean_store(c);
			c->next_clean = now + 60000;
		}
		c->lookups_until = now + LOOKUP_TURN_MS;
		if (c->once && !busy(c))
			c->next_scan = now;	/* done? one more look */
		if (now >= c->next_scan)
			rec_scan(c);
		later = rec_run_later(c);
		rec_feed(c);
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
			rec_die(c, &err);
		for (i = 0; i < c->nfetch; i++)
			rec_fetcher_read(c, &c->f[i]);
	}
}

/* Gives up everything in hand and lets the fetchers finish. */
static void
shut_down(struct mi_recover *c)
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
		rec_note(c, MI_NOTE_WARN, "%s", err.msg);
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
			rec_fetcher_read(c, f);
			mi_sleep_ms(20);
		}
		f->pid = -1;
	}
	rec_heartbeat(c, 0);
}

/* The runner's notes go out as the worker's own. */
static void
noted(void *arg, int level, const char *msg)
{
	struct mi_recover *c = arg;

	c->o.note(c->o.arg, level, msg);
}

struct mi_recover *
mi_recover_new(struct mi_db *db, const struct mi_recover_opts *o,
    struct mi_err *err)
{
	struct mi_runner_opts ro = { 1, 0, rec_emitted, noted, NULL };
	struct mi_recover *c;
	unsigned long long v;
	const char *s;
	jv t;
	int i;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	c->o = *o;
	c->db = db;
	c->once = o->once;
	c->nfetch = o->nfetch;
	c->max_jobs = o->max_jobs;
	snprintf(c->fetch_prog, sizeof(c->fetch_prog), "%s", o->fetch_prog);
	ro.arg = c;
	c->lease_ms = mi_jobs_lease_ms();
	c->fq = jv_array();
	c->seen = jv_object();
	c->state = jv_object();
	c->reclaim = jv_object();
	c->backoff = jv_object();
	c->later = jv_object();
	c->settle_ms = 10000;
	if ((s = getenv("MI_LOOKUP_SETTLE_MS")) != NULL &&
	    mi_parse_uint(s, 0, 3600000, &v) == 0)
		c->settle_ms = (long)v;
	c->store_full_ms = 60000;
	for (i = 0; i < MAX_FETCHERS; i++) {
		c->f[i].pid = -1;
		c->f[i].in = c->f[i].out = -1;
		mi_buf_init(&c->f[i].w, 0);
		mi_buf_init(&c->f[i].r, 0);
		c->f[i].sent = jv_array();
	}
	if ((c->loop = mi_loop_new(err)) == NULL ||
	    (c->r = mi_runner_new(c->db, &ro, err)) == NULL) {
		mi_recover_free(c);
		return NULL;
	}
	if (c->once) {
		t = mi_db_json1(c->db, "SELECT to_jsonb(now()::text)", 0, NULL,
		    err);
		if (jv_get_kind(t) != JV_KIND_STRING) {
			jv_free(t);
			mi_recover_free(c);
			return NULL;
		}
		snprintf(c->start, sizeof(c->start), "%s", jv_string_value(t));
		jv_free(t);
	}
	return c;
}

void
mi_recover_run(struct mi_recover *c)
{
	run(c);
	shut_down(c);
	if (c->once)
		rec_clean_spool(c);
}

void
mi_recover_stats(struct mi_recover *c, struct mi_recover_stats *s)
{
	s->taken = c->taken;
	s->stored = c->stored;
	s->failed = c->failed;
	s->timed_out = c->timed_out;
	s->left = 0;
	jv_object_foreach(c->state, k, v) {
		if (strcmp(jv_string_value(v), "final") != 0)
			s->left++;
		jv_free(k);
		jv_free(v);
	}
}

void
mi_recover_free(struct mi_recover *c)
{
	int i;

	if (c == NULL)
		return;
	if (c->r)
		mi_runner_free(c->r);
	if (c->loop)
		mi_loop_free(c->loop);
	for (i = 0; i < MAX_FETCHERS; i++) {
		mi_buf_release(&c->f[i].w);
		mi_buf_release(&c->f[i].r);
		jv_free(c->f[i].sent);
	}
	jv_free(c->fq);
	jv_free(c->seen);
	jv_free(c->state);
	jv_free(c->reclaim);
	jv_free(c->backoff);
	jv_free(c->later);
	free(c);
}
