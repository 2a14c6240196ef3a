/*
 * recover/recover.h - the recovery engine behind mi-recover: takes over
 * every job not in a final state whose lease is free and drives it to
 * its end.  Pending jobs wait for a slot and are submitted, processing
 * jobs are polled (a create whose outcome is unknown is first looked up
 * at the provider, or else sent again once, as the provider's policy
 * says), completed jobs not yet stored go to mi-fetch children.  While
 * it runs, the worker beats in app.recovery_workers and removes spool
 * and store files that no job needs any more.
 *
 * Records leave through out, each consumed by it: artifact records, and
 * the job records of jobs that ended failed or timed out (with "error").
 * Diagnostics go to note (MI_NOTE_* of runner.h).  An error that the run
 * cannot go on from (the database, a fork) goes to fatal, which must not
 * return: the engine keeps nothing it could unwind to, and the leases it
 * held lapse for the next worker.  So the engine itself never prints
 * and never exits; the command does both.
 *
 * One worker per process, on one thread, with one database connection;
 * it forks the mi-fetch children and reaps them.
 */
#ifndef MI_RECOVER_H
#define MI_RECOVER_H

#include <signal.h>

#include <jv.h>

#include "db.h"
#include "err.h"

#define MI_RECOVER_MAX_FETCHERS	6

struct mi_recover_opts {
	int once;		/* finish what is free now; else watch */
	int nfetch;		/* 1 to MI_RECOVER_MAX_FETCHERS */
	int max_jobs;		/* jobs in hand at once */
	const char *fetch_prog;	/* the mi-fetch to run (execvp) */
	const volatile sig_atomic_t *stop;	/* set: stop taking jobs */
	void (*out)(void *arg, jv rec);
	void (*note)(void *arg, int level, const char *msg);
	void (*fatal)(void *arg, const struct mi_err *err)
	    __attribute__((noreturn));
	void *arg;
};

struct mi_recover_stats {
	long taken, stored, failed, timed_out;
	int left;		/* --once: jobs taken and not final */
};

/* A worker on db (borrowed; it outlives the worker); NULL and err when
 * the loop, the runner or the run's start time cannot be had. */
struct mi_recover *mi_recover_new(struct mi_db *db,
    const struct mi_recover_opts *o, struct mi_err *err);
/*
 * Works until every job taken is final or left (once), or until *stop;
 * then gives up every lease in hand, lets the fetchers store what they
 * have (30 s at most), and ends the heartbeat.
 */
void mi_recover_run(struct mi_recover *c);
void mi_recover_stats(struct mi_recover *c, struct mi_recover_stats *s);
void mi_recover_free(struct mi_recover *c);

#endif
