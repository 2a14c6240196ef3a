/*
 * budget.h - per-tenant (and optionally per-provider) monthly spend limits.
 *
 * mi_budget_check runs inside the caller's open transaction, the same one
 * that takes the concurrency slot, so two processes cannot both spend the
 * last dollar: it locks the tenant's budget row(s) (FOR UPDATE), sums this
 * calendar month's cost_usd of the tenant's jobs (and of jobs holding or
 * waiting for a slot, at their estimate) and compares with the limit plus
 * the request's estimate.
 */
#ifndef MI_BUDGET_H
#define MI_BUDGET_H

#include "db.h"
#include "err.h"

/*
 * Returns 0 when the request fits (or no budget applies), 1 when it would
 * exceed a budget (err->msg names the budget, spent and remaining, code
 * EX_UNAVAILABLE, error name "BUDGET_EXCEEDED"), -1 on a database error.
 * job_id is the job being taken (already counted at its estimate), or NULL.
 */
int mi_budget_check(struct mi_db *db, const char *tenant,
    const char *provider, double estimate_usd, const char *job_id,
    struct mi_err *err);

#endif
