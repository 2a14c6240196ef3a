/*
 * serve/routes.h - the asset host behind mi-serve: the handler that
 * httpd.h's workers call for every request.  Routes: GET/HEAD
 * /api/assets/{tenant}/{run}/{type}/{sha256}.{ext} from the store (and
 * the entries of a stored bundle, bundle/serve.h), for a Bearer JWT of
 * that tenant or a signed URL; OPTIONS preflight; /healthz; /metrics
 * (for $MI_METRICS_TOKEN, or any loopback client with
 * MI_METRICS_LOOPBACK=1).
 *
 * Every refusal (no credentials, a bad, expired or foreign token, a bad
 * or expired signature, a path outside the grammar) is answered exactly
 * as a file that does not exist: 404 with the same headers and body.
 * The decision is made before any file system call, and a file is opened
 * below the store's root only, following no symbolic link.
 *
 * Threading: mi_serve_handle runs on every worker thread at once; the
 * server is made before the workers start (mi_serve_new) and freed after
 * they have stopped (mi_serve_free).  mi_serve_reload_keys may run on
 * any thread meanwhile (the command's SIGHUP): answers under way keep
 * the keys they started with.  The module installs no signal handler,
 * never prints and never exits: configuration errors come back in err
 * (78 for what cannot work, 71 out of memory), and the access log line
 * is formatted for the command to write.
 *
 * Ownership: the server borrows root and the environment's strings for
 * its life; it owns the store's directory fd, the keys (the signing key
 * is wiped when freed) and the per-thread caches.  A response body or fd
 * handed to httpd belongs to httpd (httpd.h).
 */
#ifndef MI_SERVE_ROUTES_H
#define MI_SERVE_ROUTES_H

#include <stddef.h>

#include "err.h"
#include "httpd.h"

struct mi_serve;

/*
 * Reads the configuration: the store (root, or $ASSET_STORAGE_DIR),
 * the token keys ($MI_JWT_SECRET, $MI_JWT_PUBLIC_KEY or $MI_JWT_JWKS,
 * $MI_JWT_ISSUER, $MI_JWT_AUDIENCE, $MI_JWT_TENANT_CLAIM), the URL
 * signing key and lifetime, $MI_METRICS_TOKEN, $MI_METRICS_LOOPBACK and
 * $MI_CORS_ORIGINS.  NULL and err when it cannot serve.
 */
struct mi_serve *mi_serve_new(const char *root, struct mi_err *err);
/* The server its /metrics reports on (borrowed); set once it started. */
void mi_serve_set_httpd(struct mi_serve *s, struct mi_httpd *h);
/* The store's directory, as given. */
const char *mi_serve_root(const struct mi_serve *s);
/* After the workers have stopped. */
void mi_serve_free(struct mi_serve *s);

/* The handler of httpd.h (arg is the struct mi_serve). */
void mi_serve_handle(void *arg, const struct mi_http_req *req,
    struct mi_http_resp *r);

/*
 * Reads the keys again (SIGHUP).  Returns 0 when replaced (tokens
 * verified with the old keys are verified again; *nkeys is the number of
 * public keys now), 1 when no keys are configured and -1 with err when
 * they cannot be read: in both cases the old keys stay.
 */
int mi_serve_reload_keys(struct mi_serve *s, size_t *nkeys,
    struct mi_err *err);

/*
 * One access log line for a request answered (without "\n"): time,
 * peer, method, path, status, bytes, microseconds, note.  Never the
 * query, nor the signature in a bundle entry's path.  Formatted into buf
 * (MI_SERVE_LOG_LINE bytes hold any line) and returned.
 */
#define MI_SERVE_LOG_LINE (MI_HTTP_BUF_SIZE + 512)
const char *mi_serve_access_line(const struct mi_http_req *req, int status,
    long long sent, const char *note, long long usec, char *buf,
    size_t bufsz);

#endif
