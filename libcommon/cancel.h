/*
 * cancel.h - cancelling jobs: here (the job ends failed with error code
 * CANCELLED, its lease and slot freed, its worker woken) and at the
 * provider, through the definition's `cancel` and `cancelled` functions
 * (mi-providers(5)).
 *
 * A remote cancel's outcome is kept in the job's provider_state.cancel
 * ({"at", "accepted", "message"?, "cost_usd"?}); the cost the provider
 * reports (0 for a job cancelled before it ran) replaces the job's
 * cost_usd, with cost_source "provider".
 */
#ifndef MI_CANCEL_H
#define MI_CANCEL_H

#include <jv.h>

#include "db.h"
#include "err.h"
#include "provider.h"
#include "transport.h"

/*
 * The open jobs (pending, processing) matching every given selector of
 * f (consumed): "ids" (array), "run_step_id", "run_id", "tenant_id".  With
 * dry_run they are only read; else each is set failed / CANCELLED with
 * reason as its message, its lease given up, and its worker woken (NOTIFY
 * on MI_WEBHOOK_CHANNEL).  Returns the rows (as they are now).
 */
jv mi_cancel_mark(struct mi_db *db, jv f, int dry_run, const char *reason,
    struct mi_err *err);

/*
 * Starts the remote cancel of a job: input (consumed) is the definition's
 * input for it ({"request", "job"}).  cb gets the outcome of `cancelled`.
 * Returns 1 when started, 0 when the provider has no cancel for it (cb
 * is not called), -1 with err.
 */
int mi_cancel_start(struct mi_loop *l, struct mi_provider *p, jv input,
    mi_outcome_cb cb, void *arg, struct mi_err *err);

/* Records outcome (consumed) in job id's row; returns the note kept. */
jv mi_cancel_record(struct mi_db *db, const char *id, jv outcome,
    struct mi_err *err);

/* The definition's input for the job of a row (borrowed). */
jv mi_cancel_input(jv row);

#endif
