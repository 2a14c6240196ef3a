/*
 * webhook.h - provider webhooks: verifying a delivery, recording it for
 * the job's worker, and what that worker takes (mi-hook(1)).
 *
 * A definition's `webhooks` (its .provider.webhooks) names the scheme:
 *
 *   standard-webhooks  webhook-id, webhook-timestamp, webhook-signature
 *                      ("v1,<base64>" ...), HMAC-SHA256 over
 *                      "id.timestamp.body"; the secret "whsec_<base64>"
 *                      is in $MI_<ID>_WEBHOOK_SECRET (or secret_env);
 *   ed25519-jwks       fal's: X-Fal-Webhook-Request-Id, -User-Id,
 *                      -Timestamp, -Signature (hex) over "request_id\n
 *                      user_id\ntimestamp\nsha256hex(body)", any key of
 *                      the JWKS at jwks_url ($MI_<ID>_WEBHOOK_JWKS: a URL
 *                      or a file);
 *   hmac               X-Webhook-Timestamp, X-Webhook-Signature =
 *                      base64(HMAC-SHA256(job id "." timestamp)): the
 *                      body is not signed;
 *   none               nothing is signed.
 *
 * The signature and timestamp (within 5 minutes) are checked before the
 * body is parsed where the scheme signs the body; where it does not
 * (hmac, none) the body is checked to be well-formed JSON before it is
 * parsed, and what it says is only a hint: the job is polled at once,
 * unless the definition's `webhook` calls it a progress note ("skip").
 * A verified delivery is one row of app.webhook_deliveries (its id: a
 * second one is a replay) holding the outcome the definition's `webhook`
 * made of it, written with a NOTIFY on MI_WEBHOOK_CHANNEL (payload: the
 * job id) in one transaction.  The job's worker takes the outcome and
 * applies it exactly as a poll's (engine/takeover.c).
 *
 * Not thread-safe: provider definitions are per process (provider.h).
 */
#ifndef MI_WEBHOOK_H
#define MI_WEBHOOK_H

#include <stddef.h>
#include <jv.h>

#include "db.h"
#include "err.h"

#define MI_WEBHOOK_CHANNEL "mi_hook"
#define MI_WEBHOOK_SKEW_S 300

/* Why a delivery was not taken; every refusal gets the same answer. */
enum mi_hook_result {
	MI_HOOK_ACCEPTED,	/* recorded, the worker woken */
	MI_HOOK_HINT,		/* recorded as "poll now" */
	MI_HOOK_IGNORED,	/* the job is already final */
	MI_HOOK_PROGRESS,	/* unsigned, and only a progress note: no poll */
	MI_HOOK_SIGNATURE,	/* missing or bad signature */
	MI_HOOK_STALE,		/* timestamp outside MI_WEBHOOK_SKEW_S */
	MI_HOOK_REPLAY,
	MI_HOOK_UNKNOWN_JOB,
	MI_HOOK_TENANT,		/* the job is another tenant's */
	MI_HOOK_BAD_BODY,
	MI_HOOK_TOO_LARGE,
	MI_HOOK_UNCONFIGURED,	/* no such provider, no scheme, no secret */
	MI_HOOK_NRESULT
};
/* "accepted", "signature", ... (for logs and metrics). */
const char *mi_webhook_result_name(int r);

struct mi_webhook_header {
	const char *name, *value;
};

struct mi_webhook_in {
	const char *provider_id;
	const char *query;	/* the request's query: job=, tenant= */
	const struct mi_webhook_header *headers;
	size_t nheaders;
	const char *body;
	size_t body_len;
	long long now_s;	/* epoch seconds */
};

struct mi_webhook_out {
	int result;		/* enum mi_hook_result */
	char job_id[40];
	char status[16];	/* of the outcome: completed, failed, ... */
	int polls_saved;
	int in_tx;		/* verified, looked up in the transaction */
	int unavailable;	/* the database failed before it was recorded */
};

/*
 * Verifies and records one delivery.  Returns 0 with out->result (a
 * refusal is not an error), or -1 with err when the database failed (the
 * caller answers 503, so that the provider sends it again).
 */
int mi_webhook_handle(struct mi_db *db, const struct mi_webhook_in *in,
    struct mi_webhook_out *out, struct mi_err *err);
/*
 * The same for n deliveries that arrived together: each is verified on
 * its own, then the verified ones are recorded in one transaction (one
 * commit, their NOTIFYs sent at it).  Returns 0, or -1 with err when the
 * database failed: then nothing of the batch was recorded, and the
 * deliveries that needed it have unavailable set.
 */
int mi_webhook_handle_batch(struct mi_db *db, const struct mi_webhook_in *in,
    struct mi_webhook_out *out, size_t n, struct mi_err *err);

/*
 * For the job's worker: takes the deliveries not yet applied of the jobs
 * ids (an array of strings, consumed).  Returns an array of {"job_id",
 * "outcome"} (outcome null: poll now), oldest first.
 */
jv mi_webhook_take(struct mi_db *db, jv ids, struct mi_err *err);

/*
 * For the metrics: the deliveries whose job has stored its artifact
 * since the last call, each once (across processes).  Returns an array
 * of {"stored_ms", "polls_saved"}.
 */
jv mi_webhook_stored(struct mi_db *db, struct mi_err *err);
/* Forgets deliveries older than keep_s (their ids no longer needed). */
int mi_webhook_prune(struct mi_db *db, long keep_s, struct mi_err *err);

/* Whether jobs of the provider (meta consumed) may wait for a webhook
 * (polled at the backstop interval): a receiver is configured
 * (MI_WEBHOOK_URL or MI_PUBLIC_URL) and can verify the provider's
 * deliveries.  *per_request: a submit names the URL. */
int mi_webhook_expected(jv meta, int *per_request);
/* The URL a submit of job gives the provider: $MI_WEBHOOK_URL (or
 * $MI_PUBLIC_URL) + "/hooks/{provider}?job=&tenant=", or NULL when
 * neither is set or the provider has no per-request webhooks. */
char *mi_webhook_url(jv meta, const char *job_id, const char *tenant);

/* Strict JSON syntax check (RFC 8259, nesting at most 64): 1 when
 * well-formed. */
int mi_json_wellformed(const char *s, size_t n);

#endif
