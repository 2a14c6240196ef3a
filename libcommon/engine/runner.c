/*
 * engine/runner.c - the job engine's face (runner.h): making and freeing
 * a runner, counting what it holds, giving its leases up, and the loop.
 *
 * One turn of mi_runner_run: leases renewed after an outage, then held
 * outcomes replayed, the last turn's completions written, handed-over
 * jobs taken, notifications read, claims made, due jobs started (at most
 * parallel exchanges at once), batched writes flushed and leases renewed
 * on their timers, with group commit one durability barrier for all of
 * it (the records waiting go out after it, the creates are sent after
 * it), then one wait for the first of: an answer, a caller's fd, the
 * database socket, the next due time.  A fatal database error
 * (r->fatal) ends the turn with -1.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "inq.h"
#include "jobs.h"
#include "json.h"
#include "webhook.h"
#include "engine/engine.h"
#include "banned.h"

/*
 * The database's wait between its tries to connect again (db.c): the
 * loop goes on meanwhile, so exchanges under way end, and their outcomes
 * are held (step.c) until the database is back.
 */
static void
db_wait(void *arg, long ms)
{
	struct mi_runner *r = arg;
	struct mi_err err = MI_ERR_INIT;
	long long until = mi_now_ms() + ms, left;

	if (r->db_waiting) {
		mi_sleep_ms(ms);
		return;
	}
	r->db_waiting = 1;
	while ((left = until - mi_now_ms()) > 0) {
		/* Writes not yet durable: no request may leave meanwhile. */
		if (mi_loop_busy(r->loop) == 0 || mi_db_unflushed(r->db))
			mi_sleep_ms(left);
		else if (mi_loop_wait(r->loop, NULL, 0, (long)left,
		    &err) == -1)
			mi_sleep_ms(left > 10 ? 10 : left);
	}
	r->db_waiting = 0;
}

static long
env_num(const char *name, long dflt, long min, long max)
{
	const char *s = getenv(name);
	unsigned long long v;

	if (s == NULL || mi_parse_uint(s, (unsigned long long)min,
	    (unsigned long long)max, &v) == -1)
		return dflt;
	return (long)v;
}

struct mi_runner *
mi_runner_new(struct mi_db *db, const struct mi_runner_opts *o,
    struct mi_err *err)
{
	struct mi_runner *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	r->db = db;
	r->o = *o;
	r->held_tail = &r->held;
	r->done_tail = &r->done;
	r->outq_tail = &r->outq;
	r->nbuck = 1024;
	if ((r->tab = calloc(r->nbuck, sizeof(*r->tab))) == NULL ||
	    (r->loop = mi_loop_new(err)) == NULL) {
		free(r->tab);
		free(r);
		return NULL;
	}
	if (mi_db_listen(db, MI_JOBS_CHANNEL, err) == -1) {
		mi_loop_free(r->loop);
		free(r->tab);
		free(r);
		return NULL;
	}
	if (mi_db_listen(db, MI_WEBHOOK_CHANNEL, err) == -1) {
		mi_loop_free(r->loop);
		free(r->tab);
		free(r);
		return NULL;
	}
	r->listening = 1;
	mi_db_set_wait(db, db_wait, r);
	r->dbgen = mi_db_generation(db);
	r->hooks = jv_array();
	r->hook_backstop_ms = env_num("MI_WEBHOOK_BACKSTOP_MS", 60000, 10,
	    86400000);
	r->take = jv_array();
	r->takerec = jv_object();
	r->follow = jv_object();
	r->follow_ms = env_num("MI_FOLLOW_MS", 500, 10, 60000);
	r->routing = jv_invalid();
	r->lease_ms = mi_jobs_lease_ms();
	r->backstop_ms = env_num("MI_SLOT_POLL_MS", 2000, 10, 3600000);
	r->parallel = (int)env_num("MI_POLL_PARALLEL", 64, 1, 100000);
	r->batch_max = (int)env_num("MI_ADMIT_BATCH", 64, 1, 1024);
	r->create_retries = (int)env_num("MI_SUBMIT_RETRIES", 4, 0, 100);
	r->poll_retries = (int)env_num("MI_POLL_RETRIES", 10, 0, 1000);
	/* 8 ms rather than 2: with four pipelines on one database, an
	 * eighth to a quarter fewer commits and WAL flushes
	 * (test/bench/pipeline.sh 4000 4). */
	r->coalesce_ms = env_num("MI_POLL_COALESCE_MS", 8, 0, 1000);
	if (env_num("MI_GROUP_COMMIT", 1, 0, 1) == 1) {
		if (mi_db_group_commit(db, err) == -1) {
			mi_runner_free(r);
			return NULL;
		}
		r->group = 1;
	}
	r->batch_ms = env_num("MI_POLL_BATCH_MS", 100, 0, 10000);
	r->input_ready = 1;
	r->next_flush = mi_now_ms() + 1000;
	r->next_renew = mi_now_ms() + r->lease_ms / 3;
	r->next_backstop = mi_now_ms() + r->backstop_ms;
	srandom((unsigned)(mi_wall_ms() ^ getpid()));
	return r;
}

void
mi_runner_free(struct mi_runner *r)
{
	struct group *g;
	struct held *h;
	size_t i;

	if (r == NULL)
		return;
	mi_db_set_wait(r->db, NULL, NULL);
	while ((h = r->held) != NULL) {
		r->held = h->next;
		jv_free(h->out);
		h->j->busy = 0;
		h->j->lost = 1;
		free(h);
	}
	/* Records still waiting for their barrier: out if it holds. */
	eng_deliver(r);
	while (r->outq != NULL) {
		struct outrec *o = r->outq;

		r->outq = o->next;
		jv_free(o->rec);
		free(o);
	}
	free(r->batch_jobs);
	free(r->reqs);
	r->closing = 1;
	/* Operations still under way end here; their jobs are freed. */
	for (i = 0; i < r->nbuck; i++) {
		struct rjob *j, *nx;

		for (j = r->tab[i]; j; j = nx) {
			nx = j->hnext;
			if (j->busy)
				j->lost = 1;
			else
				eng_job_free(j);
		}
	}
	mi_loop_free(r->loop);
	while ((g = r->groups) != NULL) {
		r->groups = g->next;
		free(g->tenant);
		free(g);
	}
	free(r->tab);
	free(r->heap);
	jv_free(r->take);
	jv_free(r->hooks);
	jv_free(r->takerec);
	jv_free(r->follow);
	jv_free(r->routing);
	free(r);
}

int
mi_runner_count(const struct mi_runner *r)
{
	/* Records waiting for the next turn's barrier count too: a caller
	 * that turns the loop until nothing is in hand gets them. */
	return (int)r->n + jv_array_length(jv_copy(r->take)) +
	    jv_object_length(jv_copy(r->follow)) + r->cancels +
	    r->ndone + (r->outq != NULL);
}

int
mi_runner_holds(struct mi_runner *r, const char *id)
{
	return eng_find(r, id) != NULL;
}

void
mi_runner_stats(const struct mi_runner *r, struct mi_runner_stats *s)
{
	long sum = 0;
	size_t i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < r->nbuck; i++) {
		struct rjob *j;

		for (j = r->tab[i]; j; j = j->hnext) {
			if (j->phase == P_WAIT)
				s->waiting++;
			else if (j->phase == P_CREATE ||
			    j->phase == P_CREATING)
				s->creating++;
			else {
				s->polling++;
				sum += j->progress;
			}
		}
	}
	s->avg_progress = s->polling ? (int)(sum / s->polling) : 0;
	s->finished = r->finished;
	s->polls = r->polls;
	s->polls_read = r->polls_read;
}

void
mi_runner_release(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	jv ids = jv_array();
	size_t i;

	eng_flush(r, 1);
	for (i = 0; i < r->nbuck; i++) {
		struct rjob *j, *nx;

		for (j = r->tab[i]; j; j = nx) {
			nx = j->hnext;
			ids = jv_array_append(ids, jv_string(j->id));
			eng_drop(r, j);
		}
	}
	if (mi_jobs_release(r->db, ids, &err) == -1)
		eng_fatal(r, &err);
}

/* How early a due job may go: polls up to the batch window, but never
 * more than a fifth of their interval. */
static long
early(const struct mi_runner *r, const struct rjob *j)
{
	long e = j->interval / 5;

	if (j->phase != P_POLL)
		return 0;
	return e < r->batch_ms ? e : r->batch_ms;
}

int
mi_runner_run(struct mi_runner *r, const int *fds, int nfds, long timeout_ms,
    struct mi_err *err)
{
	long long now = mi_now_ms(), until = now + timeout_ms, wake;
	struct group *g;
	struct rjob *creates[ENG_CREATE_BATCH];
	int all[8], i, n = 0, started = 0, ready, ncreate = 0, delivering;

	/* Back from an outage: the leases first, then what came meanwhile. */
	if (mi_db_generation(r->db) != r->dbgen) {
		r->dbgen = mi_db_generation(r->db);
		eng_note(r, MI_NOTE_WARN, "connected to the database again");
		eng_renew(r);
		r->next_renew = now + r->lease_ms / 3;
	}
	eng_release_held(r);
	/* The completions of the last turn's answers written before any
	 * claim, which then sees the slots they freed (their records wait
	 * for this turn's barrier). */
	if (!r->admitting)
		eng_flush_done(r);
	eng_take_over(r);
	/* Notifications that came in during a statement wait in libpq, not
	 * on the socket: look at them each time round. */
	eng_notified(r);
	eng_take_hooks(r);
	eng_claim_room(r);
	eng_claim_due(r);
	/*
	 * Due jobs, as many as the parallel limit lets start.  Polls due
	 * within the batch window go out now too: a poll a little early
	 * costs nothing, and a process that wakes for a batch rather than
	 * for every poll spends far less on waking up.
	 */
	while (!r->fatal && r->hn > 0 && r->heap[0]->due <= now +
	    early(r, r->heap[0]) && mi_loop_busy(r->loop) + ncreate <
	    r->parallel && started < 1000) {
		struct rjob *j = r->heap[0];

		eng_heap_remove(r, j);
		if (j->phase == P_CREATE) {
			/* Creates go together: their intents in one
			 * statement. */
			creates[ncreate++] = j;
			if (ncreate == ENG_CREATE_BATCH) {
				eng_do_creates(r, creates, ncreate);
				ncreate = 0;
			}
		} else
			eng_do_poll(r, j);
		started++;
	}
	if (ncreate > 0 && !r->fatal)
		eng_do_creates(r, creates, ncreate);
	if (!r->fatal && now >= r->next_flush) {
		eng_flush(r, 0);
		r->next_flush = now + 1000;
	}
	if (!r->fatal && now >= r->next_renew) {
		eng_renew(r);
		r->next_renew = now + r->lease_ms / 3;
	}
	if (!r->fatal && jv_object_length(jv_copy(r->follow)) > 0 &&
	    now >= r->next_follow) {
		eng_check_follow(r);
		r->next_follow = now + r->follow_ms;
	}
	if (!r->fatal && now >= r->next_backstop) {
		for (g = r->groups; g; g = g->next)
			if (g->head)
				g->want = 1;
		r->next_backstop = now + r->backstop_ms;
	}
	if (r->fatal) {
		*err = r->ferr;
		return -1;
	}
	wake = until;
	if (r->hn > 0 && mi_loop_busy(r->loop) < r->parallel) {
		long long due = r->heap[0]->due - early(r, r->heap[0]);

		if (due < wake)
			wake = due;
	}
	if (r->next_flush < wake)
		wake = r->next_flush;
	if (r->next_renew < wake)
		wake = r->next_renew;
	if (r->next_backstop < wake)
		wake = r->next_backstop;
	if (jv_object_length(jv_copy(r->follow)) > 0 && r->next_follow < wake)
		wake = r->next_follow;
	for (g = r->groups; g; g = g->next)
		if (g->want)
			wake = now;
	if (jv_array_length(jv_copy(r->take)) > 0)
		wake = now;
	for (i = 0; i < nfds && n < 6; i++)
		all[n++] = fds[i];
	all[n++] = mi_db_socket(r->db);
	/* Wakes for a burst of answers at once rather than one by one: a
	 * poll a few milliseconds late costs nothing. */
	if (r->coalesce_ms > 0 && mi_loop_busy(r->loop) > 0 && wake > now)
		mi_sleep_ms(r->coalesce_ms);
	delivering = r->outq != NULL;
	eng_deliver(r);
	if (r->fatal) {
		*err = r->ferr;
		return -1;
	}
	/* The last records just went out and nothing is left in hand: the
	 * caller, not a wait, decides what comes next. */
	if (delivering && mi_runner_count(r) == 0)
		wake = now;
	if ((ready = mi_loop_wait(r->loop, all, n, wake > now ? wake - now :
	    0, err)) == -1)
		return -1;
	eng_release_held(r);
	/* With group commit the records of the answers just read wait for
	 * the next turn's barrier, which covers the claims and creates of
	 * that turn too: one flush a turn, not two. */
	if (!r->group)
		eng_deliver(r);
	if (ready & (1 << (n - 1)))
		eng_notified(r);
	if (r->fatal) {
		*err = r->ferr;
		return -1;
	}
	return ready & ((1 << (n - 1)) - 1);
}

int
mi_runner_pump(struct mi_runner *r, struct mi_inq *q, int jobs,
    long timeout_ms, struct mi_err *err)
{
	struct mi_err rerr = MI_ERR_INIT;
	int k, fd, n = 0, nreq = 0, i, linger = 0;
	jv v, *reqs = NULL;

	/* The requests of one batch, kept for the runner's life. */
	if (!jobs && r->reqs == NULL && (r->reqs = calloc((size_t)r->batch_max,
	    sizeof(*r->reqs))) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return -1;
	}
	reqs = r->reqs;
	while (!r->eof && r->input_ready && n < 500 && !r->fatal) {
		k = mi_inq_next(q, &v, &rerr);
		/* Requests that come together are read together: one that
		 * has others right behind it waits a millisecond for them
		 * (a few times at most) rather than going alone. */
		if (k == 0 && nreq > 0 && linger < 5) {
			struct pollfd p = { mi_inq_fd(q), POLLIN, 0 };

			linger++;
			if (poll(&p, 1, 1) > 0)
				continue;
		}
		if (k == 0) {
			r->input_ready = 0;
			break;
		}
		if (k == 2)
			r->eof = 1;
		else if (k == -2) {
			for (i = 0; i < nreq; i++)
				jv_free(reqs[i]);
			*err = rerr;
			return -1;
		} else if (k == -1)
			eng_emit(r, mi_json_error(jv_object(), "INVALID_JSON",
			    rerr.msg, 0));
		else if (jobs)
			mi_runner_job(r, v);
		else {
			/* Requests read together are admitted together. */
			reqs[nreq++] = v;
			if (nreq == r->batch_max) {
				mi_runner_requests(r, reqs, nreq);
				nreq = 0;
			}
		}
		n++;
	}
	if (nreq > 0)
		mi_runner_requests(r, reqs, nreq);
	if (r->fatal) {
		*err = r->ferr;
		return -1;
	}
	if (r->eof && mi_runner_count(r) == 0) {
		eng_deliver(r);
		if (r->fatal) {
			*err = r->ferr;
			return -1;
		}
		return 0;
	}
	fd = mi_inq_fd(q);
	if ((k = mi_runner_run(r, &fd, r->eof ? 0 : 1, n >= 500 ? 0 :
	    timeout_ms, err)) == -1)
		return -1;
	if (k & 1)
		r->input_ready = 1;
	return r->eof && mi_runner_count(r) == 0 ? 0 : 1;
}
