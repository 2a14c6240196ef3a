/*
 * recover/worker.h - the inside of a recovery worker (recover.h), shared
 * by the files of recover/ and by nothing else.
 *
 * A job the worker took is in exactly one place: in the runner (pending
 * and processing jobs it drives), in fq (completed, waiting for a
 * fetcher), in a fetcher's sent list (written to that mi-fetch, its
 * answer due, oldest first), or in later (a lost create too recent to be
 * looked up).  The worker holds the lease of each of them and renews it:
 * the runner its own, renew_queued the rest.  What leaves that set is
 * final (an output record, counted), left (its lease given up, for a
 * later run), or lost to another worker.  state and seen are kept for
 * --once only; a watching worker keeps no per-job memory.
 *
 * The files, each calling only those below it:
 *   recover.c  the public API (recover.h) and the main loop
 *   sweep.c    taking free leases over (scan), the heartbeat, the
 *              cleaning of the spool and of the store's temporary files
 *   lookup.c   a create whose outcome is unknown: looked up at the
 *              provider, sent again, or held, by the provider's policy
 *   fetch.c    the pool of mi-fetch children that store completed jobs
 *   record.c   a job's recovery log, and what leaves the worker:
 *              records, notes, fatal errors
 */
#ifndef MI_RECOVER_WORKER_H
#define MI_RECOVER_WORKER_H

#include <limits.h>
#include <sys/types.h>

#include <jv.h>

#include "buf.h"
#include "db.h"
#include "err.h"
#include "runner.h"
#include "transport.h"
#include "recover/recover.h"

/* Records in the pipe of one mi-fetch at once: few, so that a stop
 * leaves little for a child to finish and the rest can be released. */
#define FETCH_DEPTH	2
#define MAX_FETCHERS	MI_RECOVER_MAX_FETCHERS
/* Pages of a provider's task list searched for a lost create. */
#define LOOKUP_PAGES	20
/* What one turn of the worker spends on lookups of lost creates. */
#define LOOKUP_TURN_MS	500
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

struct mi_recover {
	struct mi_recover_opts o;
	struct mi_db *db;
	struct mi_runner *r;
	struct mi_loop *loop;	/* lookups */
	int once, nfetch, max_jobs;
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
	long long lookups_until;	/* monotonic ms: this turn's lookups end */
	long long store_full;	/* monotonic ms until which the store is
				 * taken to be full; 0: not full */
	long store_full_ms;	/* the next such wait */
	long long next_scan, next_beat, next_renew, next_clean;
	int last_found;
	long taken, stored, failed, timed_out;
};

/* recover.c */
void rec_note(struct mi_recover *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rec_fail(struct mi_recover *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
void rec_die(struct mi_recover *c, const struct mi_err *err)
    __attribute__((noreturn));

/* record.c */
void rec_set_state(struct mi_recover *c, const char *id, const char *st);
void rec_out_record(struct mi_recover *c, jv rec);
void rec_out_final(struct mi_recover *c, jv row);
void rec_left(struct mi_recover *c, const char *id, const char *why);
jv rec_event(struct mi_recover *c, const char *id, jv ev);
jv rec_ev1(const char *name);
jv rec_patch(struct mi_recover *c, const char *id, jv p);
void rec_finish(struct mi_recover *c, const char *id, const char *status,
    const char *code, const char *msg, jv ev);
int rec_has_event(jv row, const char *name);
void rec_emitted(void *arg, jv rec, int passed);

/* lookup.c */
void rec_resubmit(struct mi_recover *c, jv row, jv ev);
long long rec_run_later(struct mi_recover *c);
void rec_unknown_create(struct mi_recover *c, jv row);

/* sweep.c */
int rec_in_hand(struct mi_recover *c);
void rec_scan(struct mi_recover *c);
void rec_heartbeat(struct mi_recover *c, int alive);
void rec_clean_spool(struct mi_recover *c);
void rec_clean_store(struct mi_recover *c);

/* fetch.c */
void rec_fetcher_read(struct mi_recover *c, struct fetcher *f);
void rec_feed(struct mi_recover *c);
void rec_renew_queued(struct mi_recover *c);

#endif
