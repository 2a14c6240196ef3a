/*
 * budget.h - per-tenant (and optionally per-provider) monthly spend limits,
 * kept in app.tenant_budgets (migrations/0003_budgets.sql).
 *
 * mi_budget_check runs inside the caller's open transaction, the same one
 * that takes the concurrency slot, so two processes cannot both spend the
 * last dollar: it locks the tenant's budget row(s) (FOR UPDATE), then, in a
 * new statement (so that under READ COMMITTED it sees every job committed
 * by whoever held the lock before), sums this calendar month's (UTC)
 * cost_usd of the tenant's jobs that passed a check -- jobs holding a slot
 * at their estimate, finished jobs at their recorded cost -- and compares
 * with the limit minus the request's estimate.  Pending jobs have not been
 * checked yet and are not counted (they are checked when they take a
 * slot); jobs refused with error_code BUDGET_EXCEEDED are not counted.
 * The caller must therefore write the job's cost_usd (its estimate) in the
 * transaction that takes the slot, before committing.  Use the default
 * READ COMMITTED isolation: a REPEATABLE READ snapshot would not see the
 * jobs committed while this transaction waited for the lock.
 */
#ifndef MI_BUDGET_H
#define MI_BUDGET_H

#include <jv.h>

#include "db.h"
#include "err.h"

/* The error code of a request refused by mi_budget_check. */
#define MI_BUDGET_EXCEEDED "BUDGET_EXCEEDED"

/*
 * Returns 0 when the request fits (or no budget applies), 1 when it would
 * exceed a budget (err->msg names the budget, spent and remaining, code
 * EX_UNAVAILABLE, error name "BUDGET_EXCEEDED"), -1 on a database error.
 * job_id is the job being taken (already counted at its estimate), or NULL.
 */
int mi_budget_check(struct mi_db *db, const char *tenant,
    const char *provider, double estimate_usd, const char *job_id,
    struct mi_err *err);

/*
 * mi_budget_check in two parts, for many checks in one transaction: the
 * lock of the budget rows (their number, 0 when none applies, or -1),
 * then, after it, any number of checks.
 */
int mi_budget_lock(struct mi_db *db, const char *tenant,
    const char *provider, struct mi_err *err);
int mi_budget_check_locked(struct mi_db *db, const char *tenant,
    const char *provider, double estimate_usd, const char *job_id,
    struct mi_err *err);

/*
 * The budgets of tenant and of provider (either NULL: any), each with this
 * month's spend: an array of {"tenant_id", "provider_id", "monthly_limit_usd",
 * "month", "spent_usd", "remaining_usd"}; jv_invalid on error.
 */
jv mi_budget_list(struct mi_db *db, const char *tenant,
    const char *provider, struct mi_err *err);

/*
 * Sets the monthly limit of tenant (provider NULL: all providers) to
 * limit_usd (a decimal text); limit_usd NULL removes the budget.  Returns
 * the budget row as listed by mi_budget_list (null when removed).
 */
jv mi_budget_set(struct mi_db *db, const char *tenant, const char *provider,
    const char *limit_usd, struct mi_err *err);

#endif
