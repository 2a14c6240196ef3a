/*
 * steps.h - the step a request belongs to (app.runs, app.run_steps), one
 * live job chain per step, and the step cache (app.step_cache).
 *
 * A request names its step by run_id plus step_id (default: the
 * run_step_id when one is given, else artifact_type) or by run_step_id.
 * A request that names neither is a step of its own: mi makes its
 * run_step_id, and no other request can reach that step or its cache.
 *
 * Admission runs in one transaction that holds the run_steps row locked
 * (SELECT ... FOR UPDATE) from the moment it is read until the job row is
 * written, so two processes admitting the same step at once are
 * serialised by PostgreSQL: the second sees the first one's job and is
 * answered with it.  The step's status, times, error and debug output
 * then follow its jobs through a trigger (migrations/0005_steps.sql),
 * whichever program moves them.
 *
 * The input hash is SHA-256 of the canonical JSON (sorted keys) of the
 * resolved inputs: media_type, prompt, params (a stored reference image
 * by its content hash, not its URL) and the providers to try.  The cache
 * key is SHA-256 of tenant, workflow_name, step_id and input hash, so an
 * entry never serves another tenant.
 */
#ifndef MI_STEPS_H
#define MI_STEPS_H

#include <jv.h>

#include "db.h"
#include "err.h"

enum {
	MI_STEP_CACHE_GLOBAL,	/* any run of the tenant */
	MI_STEP_CACHE_RUN_ONLY,	/* this run only */
	MI_STEP_CACHE_OFF
};

struct mi_step {
	char id[37];		/* app.run_steps.id */
	char run[37];
	char tenant[256];
	char step_id[256];
	char workflow[256];
	char skill[65];
	char input_hash[65];
	char cache_key[65];
	int cache;
	long long ttl_sec;	/* 0: entries do not expire */
	int named;		/* 0: a step of its own (no run_step_id, no
				 * step_id, no artifact_type) */
	int given_id;		/* the request gave run_step_id */
	int attempt;		/* of the job to write (MI_STEP_NEW) */
	int other_inputs;	/* answered with a chain made for other
				 * inputs (its input_hash differs) */
	long long t0;		/* admission start, monotonic ms */
};

/* What admission found. */
enum {
	MI_STEP_NEW,		/* write the job: the transaction is open */
	MI_STEP_JOB,		/* answered with the chain's job */
	MI_STEP_ARTIFACT	/* answered with an artifact (stored, or a
				 * cache hit) */
};

/*
 * Reads the step fields of req (borrowed) into s: run_id, run_step_id,
 * step_id, workflow_name, skill_id, cache, cache_ttl_sec.  A request that
 * gives no run_step_id gets a new one in s->id.  Returns 0, or -1 with
 * err naming the bad field.
 */
int mi_step_parse(jv req, struct mi_step *s, struct mi_err *err);

/*
 * Sets s->input_hash and s->cache_key from req (borrowed) and providers
 * (borrowed: the provider ids to try, in order).
 */
void mi_step_inputs(struct mi_step *s, jv req, jv providers);

/*
 * Admits the step of req (borrowed): makes the run and step rows when
 * missing and locks the step.  Returns MI_STEP_JOB or MI_STEP_ARTIFACT with *out (the record to
 * answer with; the transaction is over), MI_STEP_NEW with s->attempt set
 * and the transaction open (the caller writes the job, with step_attempt,
 * then calls mi_step_end), -2 when the request names a step it cannot
 * have (msg; nothing written), -1 when the database failed (err).
 */
int mi_step_admit(struct mi_db *db, struct mi_step *s, jv req, jv *out,
    char *msg, size_t msgsz, struct mi_err *err);

/*
 * The reads of admission for sv[0..n-1] (n <= 1024) at once, inside a
 * transaction (a batch, db.h): their run and step rows made when
 * missing, the steps locked in the order given, then what each needs
 * read after its lock, in three statements and two round trips.  Returns
 * 0 with pre[i] for mi_step_admit_read (jv_null(): no step row was
 * found, which mi_step_admit says best), 1 when two of them are one step
 * (admit them one at a time: the second must see the first's job), -1
 * when the database failed (err).  pre[] is filled in every case.
 */
int mi_step_prefetch(struct mi_db *db, struct mi_step *const *sv, int n,
    jv *pre, struct mi_err *err);

/* mi_step_admit with the rows pre (consumed) that mi_step_prefetch read
 * for s, in a savepoint of the transaction, as mi_step_admit would. */
int mi_step_admit_read(struct mi_db *db, struct mi_step *s, jv req, jv pre,
    jv *out, char *msg, size_t msgsz, struct mi_err *err);

/* In the admission transaction: the step fails before any job (no
 * provider could take the request). */
int mi_step_fail(struct mi_db *db, const struct mi_step *s,
    const char *code, const char *msg, struct mi_err *err);

/* Ends the admission transaction: commit (ok) or roll back. */
int mi_step_end(struct mi_db *db, int ok, struct mi_err *err);

/*
 * After job_id's result was stored as artifact_id: the step cache entry
 * of the job's step, unless its cache is off or the job is not of the
 * step's current attempt.  A global entry is replaced only by another
 * global one (or once expired).  Inside a transaction it is sent with
 * the next statement (mi_db_defer).
 */
int mi_step_cache_put(struct mi_db *db, const char *job_id,
    const char *artifact_id, struct mi_err *err);

/* Whether rec (borrowed) is an artifact record rather than a job. */
int mi_step_is_artifact(jv rec);

#endif
