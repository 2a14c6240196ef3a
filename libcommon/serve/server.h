/*
 * serve/server.h - the inside of the asset host behind serve/routes.h,
 * shared by its two modules and by nothing else (cmd/ includes routes.h
 * only):
 *   routes.c  the routes and their answers: headers, CORS, assets and
 *             bundle entries (ETag, Range), /healthz, /metrics; the
 *             configuration and the access log line
 *   auth.c    who may read what: Bearer tokens (JWT) and signed URLs,
 *             the per-thread caches of verified ones, key reloads
 *
 * struct mi_serve is made once, before the workers start, and read by
 * every worker thread at once: what changes while they run is atomic
 * (counters, jwt_gen), under lock (the tenant table, the caches list) or
 * under jwt_lock (jwt).  Each worker thread has its own struct
 * thread_cache, made on first use and freed with the server, after the
 * workers have stopped.
 */
#ifndef MI_SERVE_SERVER_H
#define MI_SERVE_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "err.h"
#include "httpd.h"
#include "jwt.h"

#define JWT_CACHE 64

/* Why a request was refused, for the log and /metrics. */
enum refusal {
	R_PATH, R_NO_CREDENTIALS, R_BAD_TOKEN, R_EXPIRED_TOKEN,
	R_WRONG_TENANT, R_BAD_SIGNATURE, R_EXPIRED_SIGNATURE, R_NREFUSAL
};

struct tenant_stat {
	char name[256];
	atomic_llong bytes;
	atomic_llong requests;
};

struct mi_serve {
	int rootfd;
	const char *root;
	struct mi_jwt *jwt;	/* under jwt_lock: SIGHUP replaces it */
	pthread_rwlock_t jwt_lock;
	atomic_uint jwt_gen;	/* bumped on each replacement */
	char *sign_key;
	int cors_any, cors_set;
	char **origins;		/* point into origins_buf */
	char *origins_buf;
	size_t norigins;
	const char *metrics_token;
	int metrics_loopback;	/* MI_METRICS_LOOPBACK=1 */
	struct mi_httpd *_Atomic httpd;	/* set once the server runs */
	atomic_llong refused[R_NREFUSAL];
	pthread_mutex_t lock;	/* the tenant table and the caches list */
	struct tenant_stat **tenants;
	size_t ntenants, tenants_cap;
	struct thread_cache *caches;
};

/*
 * A verified token, known by its SHA-256 only (compared in constant time:
 * a cache must not tell how much of a guess was right).
 */
struct jwt_entry {
	char hash[65];
	unsigned gen;		/* the keys it was verified with */
	long long until;
	char tenant[256];
};

/* A signed URL that checked out, by the SHA-256 of "exp sig path". */
struct sig_entry {
	char hash[65];
	long long exp;
};

/*
 * What a worker thread remembers.  Each is also on a list so that it can
 * be freed once the workers have stopped.
 */
struct thread_cache {
	struct thread_cache *next;
	struct jwt_entry jwt[JWT_CACHE];
	struct sig_entry sig[JWT_CACHE];
	struct tenant_stat *last_tenant;
};

/* auth.c */
/* This thread's cache, made on first use; NULL when out of memory. */
struct thread_cache *srv_thread_cache(struct mi_serve *s);
/*
 * Authorises the request for tenant; -1 with *why (enum refusal) when
 * refused.  *exp_out is the signed URL's expiry, or 0 for a Bearer
 * token.  A signature is checked for sign_path with the exp and sig of
 * query (a bundle's entries are covered by the bundle's signed URL).
 */
int srv_authorise(struct mi_serve *s, const struct mi_http_req *req,
    const char *tenant_want, const char *sign_path, const char *query,
    long long *exp_out, int *why);
/* The token verifier the environment asks for; NULL when none (err
 * untouched) or bad (err set). */
struct mi_jwt *srv_load_jwt(struct mi_err *err);

#endif
