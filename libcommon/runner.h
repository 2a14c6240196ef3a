/*
 * runner.h - drives many generation jobs at once: admits requests (checks
 * them against the provider, picks a provider that is not cooling down,
 * writes the job row), waits for concurrency slots (LISTEN plus a slow
 * poll), submits, polls each job at its interval with jitter and backoff,
 * times jobs out, falls back to the next provider, renews the leases of
 * every job it holds, and batches the bookkeeping writes.
 *
 * One runner per process, on one thread, with one database connection.
 * mi-submit runs it until each job is submitted (or finished, for
 * synchronous and local providers); mi-poll until each job is final.
 * Records leave through the emit callback, each consumed by it: job rows
 * as JSON, with "error" added when a job ended failed, timed out, or in
 * an unknown state.  Diagnostics (cost estimates, fallbacks) go to the
 * note callback; the runner itself never prints.
 *
 * The engine's code is in engine/, one module per part of a job's way
 * (engine/engine.h lists them); this header is all that callers see.
 */
#ifndef MI_RUNNER_H
#define MI_RUNNER_H

#include <jv.h>

#include "db.h"
#include "err.h"

struct mi_runner_opts {
	int final;		/* to a final state; else until submitted */
	int no_wait;		/* a job finding no free slot stays queued */
	/* passed: the record came in with its error and goes out as is */
	void (*emit)(void *arg, jv record, int passed);
	void (*note)(void *arg, int level, const char *msg);
	void *arg;
};

struct mi_runner_stats {
	int waiting;		/* for a slot */
	int creating;		/* create under way or due */
	int polling;
	int avg_progress;
	long finished;
	long polls;		/* made */
	long polls_read;	/* whose answer the definition read */
};

struct mi_runner;

struct mi_runner *mi_runner_new(struct mi_db *db,
    const struct mi_runner_opts *o, struct mi_err *err);
void mi_runner_free(struct mi_runner *r);

/* A request record (consumed): admitted as a new job, or emitted back
 * with an error. */
void mi_runner_request(struct mi_runner *r, jv request);
/* Requests reqs[0..n-1] (consumed) admitted in one transaction, up to
 * $MI_ADMIT_BATCH (default 64) at once; 1 admits each in its own. */
void mi_runner_requests(struct mi_runner *r, jv *reqs, int n);
/* A job record (consumed): its lease is taken over and the job driven;
 * records with an error, or that need nothing, are emitted back. */
void mi_runner_job(struct mi_runner *r, jv job);

/*
 * Works for at most timeout_ms, returning early when one of fds (at most
 * 6) becomes readable.  Returns the ready fds as bits (1 << i for
 * fds[i]), or -1 when the database failed (err; the runner is then
 * unusable).
 */
int mi_runner_run(struct mi_runner *r, const int *fds, int nfds,
    long timeout_ms, struct mi_err *err);
/* Jobs in hand (admitted or taken, not yet emitted), and 1 while records
 * wait for the barrier that lets them out. */
int mi_runner_count(const struct mi_runner *r);
/* Whether the job id is in hand, being driven. */
int mi_runner_holds(struct mi_runner *r, const char *id);
void mi_runner_stats(const struct mi_runner *r, struct mi_runner_stats *s);
/*
 * Reads what waits in q (requests, or job records with jobs set; bad
 * JSON is emitted as INVALID_JSON error records), then works for at most
 * timeout_ms or until more input comes.  Returns 1 while there is work or
 * input left, 0 when the input has ended and every job is out, -1 when
 * reading or the database failed (err).
 */
struct mi_inq;
int mi_runner_pump(struct mi_runner *r, struct mi_inq *q, int jobs,
    long timeout_ms, struct mi_err *err);
/* Gives up every lease in hand, so another worker can take over at
 * once; the runner holds no job afterwards. */
void mi_runner_release(struct mi_runner *r);

#endif
