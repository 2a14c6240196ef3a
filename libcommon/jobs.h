/*
 * jobs.h - app.generation_jobs rows: creation, concurrency slots, leases,
 * state changes, provider cooldown.  Rows come and go as JSON (the row's
 * to_jsonb), the job record of SPEC.md.
 *
 * States (migrations/0002_jobs.sql): pending -> processing -> completed /
 * failed / timed_out.  A process works a job only while it holds the
 * job's lease: lease_owner is its mi_jobs_owner() and lease_expires_at is
 * in the future.  Every change here is made WHERE lease_owner is this
 * process, so a process that lost a lease (it stalled longer than
 * MI_LEASE_MS and another worker took the job over) changes nothing.  A
 * processing job holds one of its tenant's slots with its provider while
 * its lease is live; an expired lease frees both the job and the slot.
 *
 * Handing a job to the next program of a pipeline is writing its record:
 * the record carries lease_owner, and the reader takes the lease over
 * when the row still names that owner (or nobody, or an expired lease).
 */
#ifndef MI_JOBS_H
#define MI_JOBS_H

#include <jv.h>

#include "db.h"
#include "err.h"

/* The NOTIFY channel of freed slots (payload "tenant/provider"). */
#define MI_JOBS_CHANNEL "mi_slot"

/* This process's lease owner name: "prog@host:pid:nonce". */
const char *mi_jobs_owner(void);
/* The lease length: $MI_LEASE_MS, default 30000. */
long mi_jobs_lease_ms(void);
/* An ISO 8601 timestamp of PostgreSQL's JSON as epoch milliseconds, -1. */
long long mi_jobs_time_ms(const char *ts);

/*
 * Inserts a pending job.  f (consumed) holds the columns: tenant_id,
 * run_id, run_step_id, provider_id, media_type, poll_interval_ms,
 * timeout_ms, input_params, artifact_type, skill_id, request, fallback,
 * previous_job_id, cost_usd (the estimate, kept as estimate_usd too),
 * step_attempt, model (kept as provider_model); owned: the job is leased
 * to this process (it waits for a slot) rather than queued for any
 * worker.
 * Returns the row.
 */
jv mi_jobs_insert(struct mi_db *db, jv f, int owned, struct mi_err *err);

/* The jobs of fs (consumed: an array of the fields above, each of its
 * own step) in one statement: an array of their rows in the same order,
 * or jv_invalid() and err. */
jv mi_jobs_insert_many(struct mi_db *db, jv fs, int owned,
    struct mi_err *err);

/*
 * Takes the free slots of tenant with provider for this process's
 * waiting jobs, oldest first (app.mi_claim_slots; limit is the
 * provider's concurrency, app.tenant_limits may override it), checking
 * each against the tenant's budget; most > 0 takes at most that many
 * (the oldest).  Returns the rows taken: status processing, or failed
 * with error_code BUDGET_EXCEEDED.
 */
jv mi_jobs_claim(struct mi_db *db, const char *tenant, const char *provider,
    int limit, int most, struct mi_err *err);

/*
 * Applies patch (consumed) to a job this process holds, renewing the
 * lease.  Keys: status, provider_job_id, provider_state (merged),
 * progress, attempts, result_uri, result_expires_ms, cost_usd,
 * cost_source, error_code, error_message, submit_unknown, submit_add
 * (added to submit_count), started (sets started_at once), next_poll_ms,
 * artifact_id, late (the result came from the last poll at the
 * deadline), release (gives the lease up).  A final status sets
 * completed_at.  Returns the row, or null when the lease is lost.
 */
jv mi_jobs_patch(struct mi_db *db, const char *id, jv patch,
    struct mi_err *err);
/*
 * mi_jobs_patch for many jobs in one statement: items (consumed) is an
 * array of {"id", "p": patch}; returns an object from each job id to its
 * row (a job whose lease is lost is missing), or invalid with err.
 */
jv mi_jobs_patch_many(struct mi_db *db, jv items, struct mi_err *err);

/*
 * Takes over the jobs of handed-over records: pairs (consumed) is an
 * array of [id, previous lease_owner or null].  A job is taken when it is
 * not final and its lease is free, expired, this process's or the
 * previous owner's; with completed, completed jobs not yet stored are
 * taken too.  Returns the rows taken.
 */
jv mi_jobs_take(struct mi_db *db, jv pairs, int completed,
    struct mi_err *err);
/* The rows of ids (an array of strings, consumed). */
jv mi_jobs_get(struct mi_db *db, jv ids, struct mi_err *err);
/* The job that replaced id (a fallback), or null. */
jv mi_jobs_successor(struct mi_db *db, const char *id, struct mi_err *err);
/* Renews the leases of ids (consumed); returns the ids still held. */
jv mi_jobs_renew(struct mi_db *db, jv ids, struct mi_err *err);
/* Gives up the leases of ids (consumed), freeing their slots. */
int mi_jobs_release(struct mi_db *db, jv ids, struct mi_err *err);
/* The per-poll bookkeeping of one job. */
struct mi_jobs_tick {
	const char *id;
	int attempts, progress;		/* progress -1: unknown */
	long long next_ms;		/* next poll, epoch ms */
};
/* Writes the bookkeeping of n jobs in one statement, renewing their
 * leases; kept (unless NULL) gets the ids of those still held. */
int mi_jobs_flush(struct mi_db *db, const struct mi_jobs_tick *t, size_t n,
    jv *kept, struct mi_err *err);

/*
 * Leases up to n queued jobs nobody holds (pending without a live lease),
 * oldest first, skipping rows other workers are locking (FOR UPDATE SKIP
 * LOCKED): for workers that adopt jobs.  Returns the rows.
 */
jv mi_jobs_adopt(struct mi_db *db, int n, struct mi_err *err);

/* Whether provider is cooling down: 1, 0, or -1 on error (what the
 * database said within the last 500 ms). */
int mi_jobs_cooling(struct mi_db *db, const char *provider,
    struct mi_err *err);
/* Counts a failure of provider; returns 1 when it is now cooling. */
int mi_jobs_provider_failed(struct mi_db *db, const char *provider,
    int allowed_fails, long window_ms, long cooldown_ms, const char *what,
    struct mi_err *err);

#endif
