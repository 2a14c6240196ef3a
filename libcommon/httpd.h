/*
 * httpd.h - a small HTTP/1.1 origin server for answers that come from
 * memory or from a file.
 *
 * Each worker thread runs its own edge-triggered epoll loop on its own
 * SO_REUSEPORT listening socket, so workers share nothing on the request
 * path.  Connections keep alive and may pipeline; file bodies go out with
 * sendfile(2) (small ones are read and sent with the header in one
 * write).  Requests carry no body unless the server is started with
 * max_body: then a Content-Length body of up to max_body bytes is read
 * before the handler runs (larger: 413; chunked: 411); without it, a
 * request that announces a body is answered and its connection closed.
 *
 * The request parser (mi_http_parse) is a pure function over a buffer so
 * that it can be fuzzed on its own; it checks the request line and header
 * syntax strictly (RFC 9112) and NUL-terminates what it finds in place.
 *
 * Ownership: the handler gets the request for the duration of the call;
 * pointers into it stay valid until the response has been sent (the done
 * callback).  A file descriptor or memory body handed to a response
 * belongs to the server from then on, which closes or frees it exactly
 * once, whether or not the body is sent (HEAD, errors, a dropped peer).
 */
#ifndef MI_HTTPD_H
#define MI_HTTPD_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

#define MI_HTTP_MAX_HEADERS 48
#define MI_HTTP_MAX_TARGET 4096
#define MI_HTTP_BUF_SIZE 16384	/* request line + headers */

enum mi_http_method {
	MI_HTTP_OTHER = 0,
	MI_HTTP_GET,
	MI_HTTP_HEAD,
	MI_HTTP_OPTIONS
};

struct mi_http_header {
	const char *name;	/* as sent; compare case-insensitively */
	const char *value;	/* surrounding whitespace removed */
};

struct mi_http_req {
	int error;		/* non-zero: answer with this status and close */
	int method;		/* enum mi_http_method */
	const char *method_name;
	const char *path;	/* request-target up to '?', never decoded */
	const char *query;	/* after '?'; "" when none */
	int version;		/* 10 or 11 */
	int keep_alive;		/* the client allows another request */
	int has_body;		/* Content-Length > 0 or Transfer-Encoding */
	int chunked;		/* Transfer-Encoding */
	long long content_length;	/* -1 when none */
	const char *body;	/* with max_body: the body, NUL-terminated */
	size_t body_len;
	size_t nheaders;
	struct mi_http_header headers[MI_HTTP_MAX_HEADERS];
	const char *peer;	/* client address, set by the server */
	int peer_loopback;	/* 127.0.0.0/8 or ::1 */
};

/*
 * Parses one request head at the start of buf (len bytes), in place.
 * Returns the number of bytes the head takes (> 0), 0 when more bytes are
 * needed, or -status (-400, -414, -431, -505) when the head is malformed.
 * A head that does not fit in MI_HTTP_BUF_SIZE is the caller's -431.
 */
int mi_http_parse(char *buf, size_t len, struct mi_http_req *req);

/* The value of the first header called name (case-insensitive), or NULL. */
const char *mi_http_header(const struct mi_http_req *req, const char *name);
/* Whether an If-None-Match value lists etag (weak comparison; "*"). */
int mi_http_none_match(const char *value, const char *etag);
/*
 * One "bytes=" Range value against size: 1 with [*from, *to] for a
 * satisfiable range, 0 when the header is to be ignored (malformed, or
 * several ranges: the whole entity is sent), -1 when unsatisfiable.
 */
int mi_http_range(const char *value, long long size, long long *from,
    long long *to);

/* The response being built by a handler; owned by the server. */
struct mi_http_resp;

void mi_http_resp_status(struct mi_http_resp *r, int status);
/* Adds "name: value"; -1 when the header block is full (4 KiB). */
int mi_http_resp_header(struct mi_http_resp *r, const char *name,
    const char *value);
/* Body from memory; free_fn (may be NULL) is called on data when done. */
void mi_http_resp_body(struct mi_http_resp *r, const void *data,
    size_t len, void (*free_fn)(void *));
/* Body of len bytes of fd from off; the server owns fd from now on. */
void mi_http_resp_file(struct mi_http_resp *r, int fd, off_t off,
    long long len);
/* Body bytes sent for this response are added to *tally as they go. */
void mi_http_resp_tally(struct mi_http_resp *r, atomic_llong *tally);
/* A short word for the access log ("jwt", "signed", "denied:expired"). */
void mi_http_resp_note(struct mi_http_resp *r, const char *note);

/*
 * Called by a worker for every request (and for every malformed one, with
 * req->error set).  The handler must set a status; Date, Content-Length
 * and Connection are added by the server, HEAD bodies are dropped by it.
 */
typedef void (*mi_httpd_handler)(void *arg, const struct mi_http_req *req,
    struct mi_http_resp *resp);

/* Called when a response has been sent or abandoned (for access logs). */
typedef void (*mi_httpd_done)(void *arg, const struct mi_http_req *req,
    int status, long long body_sent, const char *note, long long usec);

struct mi_httpd_opts {
	const char *listen;	/* "ADDR:PORT", "[v6]:PORT" */
	int threads;		/* workers; 0: 2 */
	int max_conns;		/* per server; 0: 8192; kept below the fd limit */
	int max_per_client;	/* per client address; 0: max_conns/8, >= 16 */
	int header_timeout_ms;	/* a request head must arrive in; 0: 30000 */
	int idle_timeout_ms;	/* keep-alive; 0: 75000 */
	int send_timeout_ms;	/* without progress; 0: 60000 */
	int grace_ms;		/* in-flight responses on stop; 0: 30000 */
	size_t max_body;	/* request bodies read up to; 0: none */
	mi_httpd_handler handler;
	mi_httpd_done done;	/* may be NULL */
	void *arg;
};

struct mi_httpd_stats {
	long long max_conns;	/* in force */
	long long max_per_client;
	long long open_conns;
	long long accepted;
	long long rejected;	/* closed at once: a limit and no room */
	long long evicted;	/* waiting ones closed to make room */
	long long bytes_sent;	/* body bytes */
	long long requests[600];	/* by status */
};

struct mi_httpd;

/* Binds (errors: 78 bad address, 69 cannot bind) and starts the workers. */
struct mi_httpd *mi_httpd_start(const struct mi_httpd_opts *o,
    struct mi_err *err);
/* The port actually bound (useful with port 0). */
int mi_httpd_port(const struct mi_httpd *h);
/*
 * Stops accepting, closes idle connections, lets in-flight responses end
 * (at most grace_ms), joins the workers and frees h.
 */
void mi_httpd_stop(struct mi_httpd *h);
/* Sums the workers' counters. */
void mi_httpd_stats(struct mi_httpd *h, struct mi_httpd_stats *st);

#endif
