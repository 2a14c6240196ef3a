/*
 * http.h - the HTTP client (libcurl): one-shot exchanges and many at once
 * over a curl multi handle that keeps connections alive between them.
 *
 * Every exchange sets CURLOPT_NOSIGNAL and reports network failures in
 * resp->err with the curl error text.  Secrets travel only in the
 * auth_headers of a request, which go to the request's own origin (scheme,
 * host, port) and never to another one a redirect leads to; nothing here
 * logs a header, and URLs never carry a key.  A request is copied when it
 * starts: the caller may free it at once.  A body goes to the sink
 * (downloads, spool files) only when the final status is 2xx; anything
 * else is kept in resp->body, capped, so an error page can be read.
 */
#ifndef MI_HTTP_H
#define MI_HTTP_H

#include <signal.h>
#include <stddef.h>
#include <jv.h>

#include "buf.h"
#include "err.h"

struct mi_http_resp;
struct mi_http_prep;

/* Gets the 2xx body in chunks; returns 0, or -1 with err to abort. */
typedef int (*mi_http_sink)(void *arg, const struct mi_http_resp *resp,
    const void *data, size_t len, struct mi_err *err);

struct mi_http_req {
	const char *method;		/* "GET" when NULL */
	const char *url;
	const char *const *headers;	/* "Name: value", NULL-terminated */
	const char *const *auth_headers;	/* same origin only */
	const void *body;		/* sent with its length; may be NULL */
	size_t bodylen;
	long timeout_ms;		/* whole exchange; 0: 60 s; <0: none */
	long connect_timeout_ms;	/* 0: 10 s */
	int follow;			/* follow redirects (at most 10) */
	/*
	 * A connection of its own, closed after the exchange: libcurl
	 * re-sends a request on a new connection when a kept-alive one
	 * turns out dead, which must never happen to a create (a
	 * non-idempotent request the provider may have accepted).
	 */
	int fresh;
	/* Abort when fewer than low_speed_bytes a second arrive for
	 * low_speed_s seconds (0: the defaults; see mi_http_do). */
	long low_speed_bytes, low_speed_s;
	size_t max_body;		/* cap of the kept body; 0: 16 MiB */
	mi_http_sink sink;		/* may be NULL */
	void *sink_arg;
	/* mi_http_do only: tick(sink_arg) runs at least every 200 ms while
	 * the exchange lasts (bytes or not), and the exchange is abandoned
	 * (err "stopped") within 200 ms of *cancel becoming nonzero. */
	void (*tick)(void *arg);
	volatile sig_atomic_t *cancel;
	/* The same request prepared before (mi_http_prep_new): its URL
	 * parsed and its headers laid out once; it must outlive the
	 * exchange.  url, headers and auth_headers are then not read. */
	const struct mi_http_prep *prep;
};

/* A request that goes out many times the same (a job's polls),
 * prepared once: its URL and headers are copied.  NULL when out of
 * memory. */
struct mi_http_prep *mi_http_prep_new(const struct mi_http_req *req);
void mi_http_prep_free(struct mi_http_prep *p);

struct mi_http_resp {
	long status;			/* 0: no answer */
	int net_error;			/* no complete answer: see err */
	int sent;			/* the request went out (even partly) */
	int timed_out;
	int sink_failed;		/* the sink aborted: err is its error */
	long long retry_after_ms;	/* Retry-After, -1 when absent */
	long long content_length;	/* -1 when unknown */
	long long received;		/* body bytes, sink or buffer */
	char content_type[128];
	struct mi_buf headers;		/* "name: value\n", names lower-cased */
	struct mi_buf body;
	struct mi_err err;
};

void mi_http_resp_init(struct mi_http_resp *resp);
void mi_http_resp_release(struct mi_http_resp *resp);
/* The headers of the answer as an object (names lower-cased). */
jv mi_http_resp_headers(const struct mi_http_resp *resp);

/* One exchange, waiting for it.  Returns 0 when an answer came (any
 * status), -1 on a network failure or an aborting sink (resp->err). */
int mi_http_do(const struct mi_http_req *req, struct mi_http_resp *resp);

/*
 * Many exchanges at once.  done(arg, resp) runs inside mi_http_multi_wait
 * when an exchange ends; resp is valid during the call only (the callee
 * may take resp->body and resp->headers with mi_buf_detach).
 */
struct mi_http_multi;
typedef void (*mi_http_done)(void *arg, struct mi_http_resp *resp);

/* max_per_host: connections kept to one host (0: 8). */
struct mi_http_multi *mi_http_multi_new(int max_per_host,
    struct mi_err *err);
void mi_http_multi_free(struct mi_http_multi *m);
/* Ends every exchange still under way: its done runs with net_error set
 * and the error "stopped" (what it owned is freed there). */
void mi_http_multi_stop(struct mi_http_multi *m);
int mi_http_multi_add(struct mi_http_multi *m, const struct mi_http_req *req,
    mi_http_done done, void *arg, struct mi_err *err);
/* Exchanges under way. */
int mi_http_multi_count(const struct mi_http_multi *m);
/*
 * Runs the exchanges for at most timeout_ms, returning early when one
 * ends or when one of fds (may be NULL, at most 8) becomes readable.
 * Returns the ready fds as bits (1 << i for fds[i]), or -1 with err.
 */
int mi_http_multi_wait(struct mi_http_multi *m, const int *fds, int nfds,
    long timeout_ms, struct mi_err *err);

/* Percent-encodes s (RFC 3986 unreserved characters kept) onto buf. */
int mi_http_escape(struct mi_buf *buf, const char *s);

#endif
