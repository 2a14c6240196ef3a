/*
 * transport.h - how mi talks to a provider: a small table of transports.
 *
 *   http   asynchronous HTTP: a create answered with a job id, then polls
 *          until the answer says completed or failed, then a download;
 *   sync   synchronous HTTP: the create's answer is the result, raw bytes
 *          (ElevenLabs) or base64 inside JSON (Gemini image), spooled to
 *          a file;
 *   local  the built-in generators (localgen.h), run on a thread into a
 *          spool file.
 *
 * A transport turns requests into outcomes; it never touches the
 * database.  Every operation is asynchronous on a struct mi_loop (a curl
 * multi handle plus the local generator threads): it starts, and its
 * callback later gets one outcome, an object (consumed by the callback):
 *
 *   {"status": "processing", "provider_job_id"?, "progress"?, "state"?,
 *    "poll_now"?, "create"?: <HTTP request of a follow-up create>}
 *   {"status": "completed", "result": {"url"|"file", "ext"?, "mime_type"?,
 *    "expires_at"? (epoch ms), "metadata"?}, "cost_usd"?, "state"?}
 *   {"status": "failed", "error": {"code", "message", "retryable"},
 *    "cost_usd"?}
 *   {"status": "retry", "error": {...}, "retry_after_ms"?}   transient:
 *    the same exchange may be tried again (429, 5xx, network)
 *   {"status": "unknown", "error": {...}}   a create went out and no
 *    answer came back: it must not be sent again blindly
 *
 * The input of every operation is the object given to the definition's
 * jq functions: {"request", "job": {"id", "media_type", "provider_job_id",
 * "provider_state", "attempts"}, "reference"?}.
 */
#ifndef MI_TRANSPORT_H
#define MI_TRANSPORT_H

#include <limits.h>
#include <jv.h>

#include "err.h"
#include "http.h"
#include "provider.h"

struct mi_loop;

/*
 * What a transport keeps about a job between its polls; the caller owns
 * it (zeroed at first, input set) and clears it with mi_poll_memo_clear
 * whenever the job's provider_job_id or provider_state changes.  It holds
 * the poll request the definition built, and the fingerprint of the last
 * answer that meant "still processing, nothing new": the same answer
 * again means the same, without running the definition.  input builds
 * the definition's input for the job; a poll given jv_invalid() as its
 * input calls it only when the definition has to run.  A definition whose
 * metadata says rotating_urls (its answers sign their links afresh each
 * time) has the URLs in an answer count by their presence only.  read,
 * unless NULL, counts the answers the definition had to read.
 */
struct mi_built;
struct mi_poll_memo {
	struct mi_built *req;
	unsigned long long answer;
	int progress;
	int urls_aside;
	jv (*input)(void *arg);
	void *input_arg;
	long *read;
};
void mi_poll_memo_clear(struct mi_poll_memo *m);

/* Gets the outcome (consumed). */
typedef void (*mi_outcome_cb)(void *arg, jv outcome);

struct mi_transport {
	const char *name;
	int polled;		/* jobs are polled after the create */
	/* The create of a job; spool is where a result file goes. */
	int (*submit)(struct mi_loop *l, struct mi_provider *p, jv input,
	    const char *spool, mi_outcome_cb cb, void *arg,
	    struct mi_err *err);
	/* One poll of a created job; memo may be NULL. */
	int (*poll)(struct mi_loop *l, struct mi_provider *p, jv input,
	    struct mi_poll_memo *memo, mi_outcome_cb cb, void *arg,
	    struct mi_err *err);
};

/* The transport of p (never NULL for a loaded definition). */
const struct mi_transport *mi_transport_of(const struct mi_provider *p);

struct mi_loop *mi_loop_new(struct mi_err *err);
void mi_loop_free(struct mi_loop *l);
/* Operations under way. */
int mi_loop_busy(const struct mi_loop *l);
/* Runs operations (their callbacks) for at most timeout_ms, returning
 * early when one ends or one of fds (at most 7) is readable; returns the
 * ready fds as bits (1 << i for fds[i]), or -1. */
int mi_loop_wait(struct mi_loop *l, const int *fds, int nfds,
    long timeout_ms, struct mi_err *err);

/*
 * Sends an HTTP request object built by a definition ({"method", "url" or
 * "path", "query", "headers", "json" or "body", "auth", "timeout_ms"}),
 * then runs the definition's function after (submitted, polled) on the
 * input plus "response" ({"status", "headers", "body", "content_type",
 * "retry_after_ms"?, "file"?}), and gives its outcome to cb.  create: the
 * request is a create (an answer lost after sending is "unknown").
 * spool: a 2xx body is written to this file; JSON is read back into
 * "body", anything else stays there and "file" names it.
 */
int mi_transport_send(struct mi_loop *l, struct mi_provider *p, jv httpreq,
    jv input, const char *after, int create, const char *spool,
    struct mi_poll_memo *memo, mi_outcome_cb cb, void *arg,
    struct mi_err *err);
/* Runs the definition's fn (submit, poll) on input to get the request
 * (or takes it from memo), then mi_transport_send. */
int mi_transport_call_send(struct mi_loop *l, struct mi_provider *p,
    jv input, const char *fn, const char *after, int create,
    const char *spool, struct mi_poll_memo *memo, mi_outcome_cb cb,
    void *arg, struct mi_err *err);

/*
 * Streams the result of a completed job into sink, waiting for it: a
 * spool file (result_uri "file://" under the spool directory) is read; a
 * URL is downloaded with the request of the definition's `download`
 * (redirects followed, the key sent only when the definition asks).
 * resp (initialised by the caller) gets the HTTP answer.  Returns 0, or
 * -1 with err: EX_NOINPUT when the result is gone (a 403/404/410 answer
 * or a missing spool file), EX_TEMPFAIL for network failures and 5xx,
 * EX_PROTOCOL for other answers, the sink's error when it aborted.
 */
int mi_transport_fetch(struct mi_provider *p, jv input, const char *uri,
    mi_http_sink sink, void *arg, struct mi_http_resp *resp,
    struct mi_err *err);
/* The same, with tick(arg) run every 200 ms at least while a download
 * lasts and the download abandoned once *cancel is set (both may be
 * NULL).  A download that stalls (under 1 byte a second) for
 * $MI_FETCH_STALL_S seconds (default 20) is aborted: EX_TEMPFAIL. */
int mi_transport_fetch_ex(struct mi_provider *p, jv input, const char *uri,
    mi_http_sink sink, void *arg, void (*tick)(void *arg),
    volatile sig_atomic_t *cancel, struct mi_http_resp *resp,
    struct mi_err *err);

/*
 * The same without waiting, on m (mi_http_multi_wait runs it): done(arg,
 * r, resp, err) gets what mi_transport_fetch would return, resp and err
 * valid during the call only.  f is the caller's, kept until done has
 * run or m is freed.  A spool file is read at once, done running before
 * this returns.  Returns 0, or -1 with err when the download could not
 * start (done does not run).  Stalls are aborted as above.
 */
typedef void (*mi_fetch_done)(void *arg, int r, struct mi_http_resp *resp,
    struct mi_err *err);
struct mi_fetch {
	mi_fetch_done done;
	void *arg;
};
int mi_transport_fetch_start(struct mi_http_multi *m, struct mi_fetch *f,
    struct mi_provider *p, jv input, const char *uri, mi_http_sink sink,
    void *arg, mi_fetch_done done, struct mi_err *err);

/* The spool directory: $MI_SPOOL_DIR or $ASSET_STORAGE_DIR/.spool,
 * created on demand. */
int mi_spool_dir(char *out, size_t outsz, struct mi_err *err);
/* spool dir + "/" + name into out. */
int mi_spool_path(const char *name, char *out, size_t outsz,
    struct mi_err *err);

/* An outcome of the given status with error {code, message, retryable}. */
jv mi_outcome_error(const char *status, const char *code, const char *msg,
    int retryable);

/* For the transports: the HTTP side of the loop, and background work:
 * work(arg) runs on a thread of its own, then done(arg) runs inside
 * mi_loop_wait on the caller's thread. */
struct mi_http_multi *mi_loop_http(struct mi_loop *l);
int mi_loop_spawn(struct mi_loop *l, void (*work)(void *),
    void (*done)(void *), void *arg, struct mi_err *err);
extern const struct mi_transport mi_transport_http;
extern const struct mi_transport mi_transport_sync;
extern const struct mi_transport mi_transport_local;

#endif
