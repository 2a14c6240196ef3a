/*
 * fetch/pool.h - the download pool behind mi-fetch: completed job
 * records in, artifact records out.  Each record's job is taken (its
 * lease; while another worker holds it, the pool waits up to two leases
 * for that worker to store the result), its result downloaded (a
 * provider URL, or the spool file of a synchronous or local provider)
 * and streamed into the store while it is hashed and checked against
 * the job's media type; then it is probed, recorded as an artifact and
 * linked to its job.  Up to jobs downloads run at once; the leases of
 * every job held are renewed while they last, stalled or not.  A
 * transient failure or a truncated result is tried again with backoff
 * (6 times, the waits doubling up to 30 s), a result that is gone once
 * more and then afresh from the provider (a new result URL).
 *
 * Records leave through out, each consumed by it, in the order they came
 * in (a record done waits for those before it), and only after the rows
 * they report are durable (mi_db_durable: group commit).  Records with an
 * error, bad ones and jobs that failed come out as error records.
 * Diagnostics go to note (MI_NOTE_* of runner.h): a warning for each
 * error record, the "stored" line of each artifact.  An error that the
 * run cannot go on from (the database, memory) goes to fatal, which must
 * not return: the leases held lapse for the next worker.  So the pool
 * itself never prints and never exits; the command does both.
 *
 * The pool never installs a signal handler: it reads *stop (which the
 * command's handler sets to the signal's number) between steps, and once
 * it is set does no more work; mi_fetch_pool_stop() then abandons the
 * downloads under way and releases their jobs.
 *
 * One pool per process, on one thread; db and st are borrowed (they
 * outlive the pool).  Every jv given to the pool is consumed.
 *
 * The pool's code is in fetch/, one file per part (fetch/fetch.h lists
 * them); this header is all that callers see.
 */
#ifndef MI_FETCH_POOL_H
#define MI_FETCH_POOL_H

#include <signal.h>

#include <jv.h>

#include "db.h"
#include "err.h"
#include "store.h"

struct mi_fetch_pool_opts {
	int jobs;		/* downloads at once, 1-64 */
	long long max_size;	/* bytes of one result at most */
	long backoff_ms;	/* before the first try again (doubles) */
	const volatile sig_atomic_t *stop;	/* set: stop at once */
	void (*out)(void *arg, jv rec);
	void (*note)(void *arg, int level, const char *msg);
	void (*fatal)(void *arg, const struct mi_err *err)
	    __attribute__((noreturn));
	void *arg;
};

struct mi_fetch_pool_stats {
	int failed;		/* some records came out as error records */
	int config;		/* one of them a CONFIG_ERROR */
};

/* A pool on db and st; NULL and err when its transfers cannot be had. */
struct mi_fetch_pool *mi_fetch_pool_new(struct mi_db *db,
    struct mi_store *st, const struct mi_fetch_pool_opts *o,
    struct mi_err *err);
/* Frees what is left (records not written are dropped). */
void mi_fetch_pool_free(struct mi_fetch_pool *c);

/* An input record (consumed): passed through, refused, or its job
 * taken and its download started. */
void mi_fetch_pool_add(struct mi_fetch_pool *c, jv rec);
/* An input that was not JSON: an INVALID_JSON error record with msg. */
void mi_fetch_pool_add_invalid(struct mi_fetch_pool *c, const char *msg);
/* Whether the pool takes another record now: a download slot is free
 * and the records read ahead are not too many. */
int mi_fetch_pool_room(const struct mi_fetch_pool *c);
/* Records in hand (read, not yet written). */
int mi_fetch_pool_count(const struct mi_fetch_pool *c);

/* Runs what is due (timers ended, downloads ended).  Returns the
 * monotonic time (mi_now_ms) of the next timer, at most 200 ms away. */
long long mi_fetch_pool_step(struct mi_fetch_pool *c);
/* Writes the records done at the head of the input order to out, after
 * one durability barrier for them all. */
void mi_fetch_pool_flush(struct mi_fetch_pool *c);
/* Waits for the transfers, or one of fds, for at most timeout_ms (as
 * mi_http_multi_wait). */
int mi_fetch_pool_wait(struct mi_fetch_pool *c, const int *fds, int nfds,
    long timeout_ms, struct mi_err *err);

/*
 * After *stop: every download abandoned and its job released (a note
 * names them), every record in hand dropped.  Records done behind one
 * that is not are not written: their jobs are stored, and a run again
 * gives their artifacts.  Only mi_fetch_pool_stats and
 * mi_fetch_pool_free may follow.
 */
void mi_fetch_pool_stop(struct mi_fetch_pool *c);
void mi_fetch_pool_stats(const struct mi_fetch_pool *c,
    struct mi_fetch_pool_stats *s);

#endif
