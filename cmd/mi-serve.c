/*
 * mi-serve - the asset host: GET/HEAD /api/assets/{tenant}/{run}/{type}/
 * {sha256}.{ext} from the store, for a Bearer JWT of that tenant or a
 * signed URL; OPTIONS preflight, /healthz, /metrics.  Runs in the
 * foreground until SIGTERM or SIGINT, then exits 0 after in-flight answers
 * end.  With --sign it prints a signed URL and exits.  Exits 64 on bad
 * usage, 69 when it cannot listen, 78 on bad configuration.
 *
 * Every refusal (no credentials, a bad, expired or foreign token, a bad
 * or expired signature, a path outside the grammar) is answered exactly as
 * a file that does not exist: 404 with the same headers and body.  The
 * decision is made before any file system call.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "bundle/serve.h"
#include "err.h"
#include "hash.h"
#include "httpd.h"
#include "jwt.h"
#include "mime.h"
#include "names.h"
#include "sign.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-serve [-v] [--access-log] [--listen ADDR:PORT] [--root DIR]\n"
    "                [--threads N] [--max-connections N] [--max-per-client N]\n"
    "       mi-serve --sign URI [--ttl SECONDS]\n"
    "  -a, --access-log      one line per request on stderr\n"
    "  -l, --listen ADDR:PORT  where to listen (default 127.0.0.1:8080)\n"
    "  -m, --max-connections N  at once (default 8192, below the fd limit)\n"
    "  -M, --max-per-client N  from one address (default max/8, >= 16)\n"
    "  -r, --root DIR        the store (default $ASSET_STORAGE_DIR)\n"
    "  -s, --sign URI        print URI signed with $MI_URL_SIGNING_KEY\n"
    "  -t, --ttl SECONDS     lifetime of a signed URL (default 86400)\n"
    "  -T, --threads N       worker threads (default 2)\n"
    "  -v, --verbose         say more on stderr\n"
    "      --help            this text\n"
    "      --version         print the version";

/*
 * A Bearer answer is revalidated every time (the ETag makes that a cheap
 * 304, and the token is checked again); a signed URL's answer may be kept,
 * by anyone, but not past its "exp".
 */
#define BEARER_CACHE "private, no-cache"
#define YEAR 31536000
#define TEXT "text/plain; charset=utf-8"
#define JWT_CACHE 64

/* Why a request was refused, for the log and /metrics. */
enum refusal {
	R_PATH, R_NO_CREDENTIALS, R_BAD_TOKEN, R_EXPIRED_TOKEN,
	R_WRONG_TENANT, R_BAD_SIGNATURE, R_EXPIRED_SIGNATURE, R_NREFUSAL
};
static const char *const refusal_name[] = {
	"path", "no_credentials", "bad_token", "expired_token",
	"wrong_tenant", "bad_signature", "expired_signature"
};

struct tenant_stat {
	char name[256];
	atomic_llong bytes;
	atomic_llong requests;
};

struct server {
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
	int access_log;
	struct mi_httpd *httpd;
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

static _Thread_local struct thread_cache *tc;
static int use_openat2 = 1;

/* The cache slot of a SHA-256 in hex. */
static size_t
slot(const char *hex)
{
	size_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v * 16 + (size_t)(hex[i] <= '9' ? hex[i] - '0' :
		    hex[i] - 'a' + 10);
	return v % JWT_CACHE;
}

static uint64_t
fnv1a(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	while (n-- > 0)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

/* This thread's cache, made on first use; NULL when out of memory. */
static struct thread_cache *
thread_cache(struct server *s)
{
	if (tc == NULL && (tc = calloc(1, sizeof(*tc))) != NULL) {
		pthread_mutex_lock(&s->lock);
		tc->next = s->caches;
		s->caches = tc;
		pthread_mutex_unlock(&s->lock);
	}
	return tc;
}

static void
free_caches(struct server *s)
{
	struct thread_cache *c, *next;
	size_t i;

	for (c = s->caches; c != NULL; c = next) {
		next = c->next;
		explicit_bzero(c, sizeof(*c));
		free(c);
	}
	s->caches = NULL;
	for (i = 0; i < s->tenants_cap; i++)
		free(s->tenants[i]);
	free(s->tenants);
}

/* The stats of a tenant, created on first use; entries never move. */
static struct tenant_stat *
tenant_stat(struct server *s, const char *tenant)
{
	struct thread_cache *c = thread_cache(s);
	struct tenant_stat *t = c ? c->last_tenant : NULL, **grown;
	size_t i, mask;

	if (t != NULL && strcmp(t->name, tenant) == 0)
		return t;
	pthread_mutex_lock(&s->lock);
	if (s->ntenants * 2 >= s->tenants_cap) {
		size_t cap = s->tenants_cap ? s->tenants_cap * 2 : 64;

		if ((grown = calloc(cap, sizeof(*grown))) == NULL) {
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		for (i = 0; i < s->tenants_cap; i++) {
			size_t j;

			if ((t = s->tenants[i]) == NULL)
				continue;
			j = fnv1a(t->name, strlen(t->name)) & (cap - 1);
			while (grown[j] != NULL)
				j = (j + 1) & (cap - 1);
			grown[j] = t;
		}
		free(s->tenants);
		s->tenants = grown;
		s->tenants_cap = cap;
	}
	mask = s->tenants_cap - 1;
	for (i = fnv1a(tenant, strlen(tenant)) & mask; s->tenants[i] != NULL;
	    i = (i + 1) & mask)
		if (strcmp(s->tenants[i]->name, tenant) == 0)
			break;
	if ((t = s->tenants[i]) == NULL && (t = calloc(1, sizeof(*t))) !=
	    NULL) {
		snprintf(t->name, sizeof(t->name), "%s", tenant);
		s->tenants[i] = t;
		s->ntenants++;
	}
	pthread_mutex_unlock(&s->lock);
	if (c != NULL)
		c->last_tenant = t;
	return t;
}

/*
 * Verifies a Bearer token, remembering good ones per thread: the same
 * token comes with every request of a page.  A hit is a token whose
 * SHA-256 equals that of one verified before with the keys in force.
 */
static int
token_tenant(struct server *s, const char *tok, long long now, char *tenant,
    size_t tenantsz, enum refusal *why)
{
	struct mi_err err = MI_ERR_INIT;
	struct thread_cache *c = thread_cache(s);
	size_t len = strlen(tok);
	struct jwt_entry *e = NULL;
	char hash[65];
	long long until;
	unsigned gen;
	int r;

	if (len == 0 || len > MI_JWT_TOKEN_MAX) {
		*why = R_BAD_TOKEN;
		return -1;
	}
	mi_sha256_hex(tok, len, hash);
	gen = atomic_load(&s->jwt_gen);
	if (c != NULL)
		e = &c->jwt[slot(hash)];
	if (e != NULL && mi_str_ct_equal(e->hash, hash) && e->gen == gen &&
	    now <= e->until) {
		snprintf(tenant, tenantsz, "%s", e->tenant);
		return 0;
	}
	pthread_rwlock_rdlock(&s->jwt_lock);
	gen = atomic_load(&s->jwt_gen);
	r = s->jwt == NULL ? mi_err_set(&err, EX_NOPERM, "no key") :
	    mi_jwt_verify(s->jwt, tok, len, now, tenant, tenantsz, &until,
	    &err);
	pthread_rwlock_unlock(&s->jwt_lock);
	if (r == -1) {
		*why = strcmp(err.msg, "expired") == 0 ? R_EXPIRED_TOKEN :
		    R_BAD_TOKEN;
		return -1;
	}
	if (e != NULL) {
		memcpy(e->hash, hash, sizeof(hash));
		e->gen = gen;
		e->until = until;
		snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
	}
	return 0;
}

/*
 * Checks a signed URL, remembering good ones per thread: a page loads
 * the same URLs again (ranges of a video), and an HMAC under OpenSSL 3
 * costs more than the rest of a small answer.  A hit is an exact match
 * of path, exp and sig with ones that were verified.
 */
static int
signature_ok(struct server *s, const char *path, const char *exp,
    const char *sig, long long now)
{
	char key[MI_HTTP_MAX_TARGET + 128], hash[65];
	struct thread_cache *c = thread_cache(s);
	struct sig_entry *e;
	int n;

	n = snprintf(key, sizeof(key), "%s %s %s", exp, sig, path);
	if (n < 0 || (size_t)n >= sizeof(key))
		return 0;
	if (c == NULL)
		return mi_sign_check(s->sign_key, path, exp, sig, now);
	mi_sha256_hex(key, (size_t)n, hash);
	e = &c->sig[slot(hash)];
	if (mi_str_ct_equal(e->hash, hash))
		return e->exp >= now;
	if (!mi_sign_check(s->sign_key, path, exp, sig, now))
		return 0;
	memcpy(e->hash, hash, sizeof(hash));
	e->exp = strtoll(exp, NULL, 10);
	return 1;
}

/*
 * The value of key in the query; NULL when absent.  A key given twice is
 * ambiguous and counts as invalid (*dup set).
 */
static const char *
query_param(const char *q, const char *key, char *out, size_t outsz,
    int *dup)
{
	size_t klen = strlen(key), n;
	const char *found = NULL;

	while (*q) {
		n = strcspn(q, "&");
		if (n > klen && strncmp(q, key, klen) == 0 && q[klen] == '=') {
			if (found != NULL)
				*dup = 1;
			if (n - klen - 1 >= outsz)
				*dup = 1;
			else {
				memcpy(out, q + klen + 1, n - klen - 1);
				out[n - klen - 1] = '\0';
			}
			found = out;
		}
		q += n + (q[n] == '&');
	}
	return found;
}

/*
 * Access-Control-Allow-Origin: decided from the configuration, the
 * request's Origin and its form (signed URL or not) only, never from the
 * outcome, so refusals and missing files look alike here too.
 */
static const char *
cors_origin(const struct server *s, const struct mi_http_req *req,
    int signed_form)
{
	const char *o = mi_http_header(req, "Origin");
	size_t i;

	if (!s->cors_set)
		return signed_form ? "*" : NULL;
	if (s->cors_any)
		return "*";
	if (o == NULL)
		return NULL;
	for (i = 0; i < s->norigins; i++)
		if (strcmp(s->origins[i], o) == 0)
			return o;
	return NULL;
}

static void
common_headers(const struct server *s, const struct mi_http_req *req,
    struct mi_http_resp *r, const char *type)
{
	const char *origin = cors_origin(s, req,
	    strstr(req->query, "sig=") != NULL);

	mi_http_resp_header(r, "Content-Type", type);
	mi_http_resp_header(r, "X-Content-Type-Options", "nosniff");
	mi_http_resp_header(r, "Cross-Origin-Resource-Policy", "cross-origin");
	if (origin != NULL) {
		mi_http_resp_header(r, "Access-Control-Allow-Origin", origin);
		/* Resource Timing may then report sizes and times. */
		mi_http_resp_header(r, "Timing-Allow-Origin", origin);
		if (req->method != MI_HTTP_OPTIONS)
			mi_http_resp_header(r, "Access-Control-Expose-Headers",
			    "Content-Length, Content-Range, Accept-Ranges, "
			    "ETag");
	}
	mi_http_resp_header(r, "Vary", "Origin");
}

/* A short text answer with the common headers. */
static void
text_answer(const struct server *s, const struct mi_http_req *req,
    struct mi_http_resp *r, int status, const char *body)
{
	mi_http_resp_status(r, status);
	common_headers(s, req, r, TEXT);
	mi_http_resp_header(r, "Cache-Control", "no-store");
	if (status == 405)
		mi_http_resp_header(r, "Allow", "GET, HEAD, OPTIONS");
	mi_http_resp_body(r, body, strlen(body), NULL);
}

/* The one answer for a refusal and for a missing file. */
static void
not_found(struct server *s, const struct mi_http_req *req,
    struct mi_http_resp *r, int why)
{
	if (why >= 0 && why < R_NREFUSAL) {
		atomic_fetch_add_explicit(&s->refused[why], 1,
		    memory_order_relaxed);
		mi_http_resp_note(r, refusal_name[why]);
	} else
		mi_http_resp_note(r, "missing");
	text_answer(s, req, r, 404, "not found\n");
}

static void
preflight(const struct server *s, const struct mi_http_req *req,
    struct mi_http_resp *r)
{
	mi_http_resp_status(r, 204);
	common_headers(s, req, r, TEXT);
	mi_http_resp_header(r, "Access-Control-Allow-Methods",
	    "GET, HEAD, OPTIONS");
	mi_http_resp_header(r, "Access-Control-Allow-Headers",
	    "Authorization, Range, If-None-Match, If-Range");
	mi_http_resp_header(r, "Access-Control-Max-Age", "86400");
}

/*
 * Opens tenant/run/type/hash.ext below the root, following no symbolic
 * link at all (the store makes none) and never leaving the root.
 */
static int
open_asset(const struct server *s, const struct mi_asset_path *p)
{
	char rel[700];
	struct open_how how;
	int fd, dfd, i;
	const char *parts[3];
	long r;

	if ((size_t)snprintf(rel, sizeof(rel), "%s/%s/%s/%s.%s", p->tenant,
	    p->run, p->type, p->hash, p->ext) >= sizeof(rel))
		return -1;
	if (use_openat2) {
		memset(&how, 0, sizeof(how));
		how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
		    RESOLVE_NO_MAGICLINKS;
		r = syscall(SYS_openat2, s->rootfd, rel, &how, sizeof(how));
		if (r >= 0 || (errno != ENOSYS && errno != EPERM))
			return (int)r;
		use_openat2 = 0;
	}
	/* Kernels before 5.6: one component at a time, none followed. */
	parts[0] = p->tenant;
	parts[1] = p->run;
	parts[2] = p->type;
	dfd = s->rootfd;
	for (i = 0; i < 3; i++) {
		int next = openat(dfd, parts[i], O_RDONLY | O_DIRECTORY |
		    O_NOFOLLOW | O_CLOEXEC);

		if (dfd != s->rootfd)
			close(dfd);
		if (next == -1)
			return -1;
		dfd = next;
	}
	snprintf(rel, sizeof(rel), "%s.%s", p->hash, p->ext);
	fd = openat(dfd, rel, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
	    O_NOFOLLOW);
	close(dfd);
	return fd;
}

/*
 * Authorises the request for tenant; -1 with *why when refused.  *exp_out
 * is the signed URL's expiry, or 0 for a Bearer token.  A signature is
 * checked for sign_path with the exp and sig of query (a bundle's entries
 * are covered by the bundle's signed URL).
 */
static int
authorise(struct server *s, const struct mi_http_req *req,
    const char *tenant_want, const char *sign_path, const char *query,
    long long *exp_out, int *why)
{
	char exp[32], sig[80], tenant[256];
	const char *e, *g, *auth;
	long long now = (long long)time(NULL);
	enum refusal r = R_BAD_TOKEN;
	int dup = 0;

	e = query_param(query, "exp", exp, sizeof(exp), &dup);
	g = query_param(query, "sig", sig, sizeof(sig), &dup);
	if (e != NULL || g != NULL) {
		if (dup || s->sign_key == NULL || e == NULL || g == NULL ||
		    !signature_ok(s, sign_path, e, g, now)) {
			*why = e != NULL && strtoll(e, NULL, 10) < now &&
			    s->sign_key != NULL ? R_EXPIRED_SIGNATURE :
			    R_BAD_SIGNATURE;
			return -1;
		}
		*exp_out = strtoll(e, NULL, 10);
		return 0;
	}
	*exp_out = 0;
	if ((auth = mi_http_header(req, "Authorization")) == NULL) {
		*why = R_NO_CREDENTIALS;
		return -1;
	}
	if (strncasecmp(auth, "Bearer ", 7) != 0) {
		*why = R_BAD_TOKEN;
		return -1;
	}
	for (auth += 7; *auth == ' '; auth++)
		;
	if (token_tenant(s, auth, now, tenant, sizeof(tenant), &r) == -1) {
		*why = r;
		return -1;
	}
	if (strcmp(tenant, tenant_want) != 0) {
		*why = R_WRONG_TENANT;
		return -1;
	}
	return 0;
}

/* Cache-Control of an answer: signed_exp as in send_entity. */
static void
cache_control(char *cc, size_t ccsz, long long signed_exp)
{
	long long left;

	if (signed_exp == 0) {
		snprintf(cc, ccsz, "%s", BEARER_CACHE);
		return;
	}
	left = signed_exp - (long long)time(NULL);
	snprintf(cc, ccsz, "public, max-age=%lld%s",
	    left < 0 ? 0 : left > YEAR ? YEAR : left,
	    left > 0 ? ", immutable" : "");
}

/*
 * Answers with len bytes of fd from off, an immutable entity called hash
 * (an asset, or a part of one such as a bundle's entry), honouring
 * If-None-Match and one Range.  signed_exp is the signed URL's expiry, 0
 * for a Bearer answer.  Takes fd.
 */
static void
send_entity(struct server *s, const struct mi_http_req *req,
    struct mi_http_resp *r, int fd, off_t off, long long size,
    const char *hash, const char *type, long long signed_exp)
{
	char etag[80], cc[64], cr[96];
	long long from = 0, to = 0;
	const char *v;
	int k;

	snprintf(etag, sizeof(etag), "\"%s\"", hash);
	/* A Range is ignored when malformed or when If-Range differs. */
	k = 0;
	if ((v = mi_http_header(req, "If-None-Match")) != NULL &&
	    mi_http_none_match(v, etag))
		k = 304;
	else if ((v = mi_http_header(req, "Range")) != NULL) {
		k = mi_http_range(v, size, &from, &to);
		if ((v = mi_http_header(req, "If-Range")) != NULL &&
		    strcmp(v, etag) != 0)
			k = 0;
	}
	if (k == -1) {
		close(fd);
		snprintf(cr, sizeof(cr), "bytes */%lld", size);
		mi_http_resp_header(r, "Content-Range", cr);
		text_answer(s, req, r, 416, "range not satisfiable\n");
		return;
	}
	cache_control(cc, sizeof(cc), signed_exp);
	common_headers(s, req, r, type);
	mi_http_resp_header(r, "ETag", etag);
	mi_http_resp_header(r, "Cache-Control", cc);
	mi_http_resp_header(r, "Accept-Ranges", "bytes");
	mi_http_resp_note(r, "ok");
	if (k == 304) {
		close(fd);
		mi_http_resp_status(r, 304);
		return;
	}
	if (k == 0) {
		mi_http_resp_status(r, 200);
		mi_http_resp_file(r, fd, off, size);
		return;
	}
	snprintf(cr, sizeof(cr), "bytes %lld-%lld/%lld", from, to, size);
	mi_http_resp_status(r, 206);
	mi_http_resp_header(r, "Content-Range", cr);
	mi_http_resp_file(r, fd, off + (off_t)from, to - from + 1);
}

/* One entry of a stored bundle (libcommon/bundle/serve.c decides). */
static void
serve_bundle_entry(struct server *s, const struct mi_http_req *req,
    struct mi_http_resp *r, const struct mi_bundle_url *u)
{
	struct mi_bundle_answer a;
	struct tenant_stat *t;
	struct stat st;
	long long exp;
	char cc[64];
	int fd, why;

	if (authorise(s, req, u->asset.tenant, u->zip_path, u->query[0] ?
	    u->query : req->query, &exp, &why) == -1) {
		not_found(s, req, r, why);
		return;
	}
	if ((fd = open_asset(s, &u->asset)) == -1 || fstat(fd, &st) == -1 ||
	    !S_ISREG(st.st_mode)) {
		if (fd != -1)
			close(fd);
		not_found(s, req, r, -1);
		return;
	}
	mi_bundle_answer(fd, (long long)st.st_size, u,
	    mi_http_header(req, "If-None-Match"), mi_http_header(req, "Range"),
	    mi_http_header(req, "If-Range"), &a);
	if (a.status == 404 || a.status == 503) {
		if (a.status == 404)
			not_found(s, req, r, -1);
		else
			text_answer(s, req, r, 503, "busy\n");
		mi_http_resp_note(r, a.why);
		return;
	}
	if (a.status == 416) {
		mi_http_resp_header(r, "Content-Range", a.content_range);
		text_answer(s, req, r, 416, "range not satisfiable\n");
		return;
	}
	if ((t = tenant_stat(s, u->asset.tenant)) != NULL) {
		atomic_fetch_add_explicit(&t->requests, 1,
		    memory_order_relaxed);
		mi_http_resp_tally(r, &t->bytes);
	}
	mi_http_resp_status(r, a.status);
	common_headers(s, req, r, a.type);
	mi_http_resp_header(r, "ETag", a.etag);
	cache_control(cc, sizeof(cc), exp);
	mi_http_resp_header(r, "Cache-Control", cc);
	mi_http_resp_header(r, "Accept-Ranges", "bytes");
	mi_http_resp_note(r, "bundle");
	if (a.content_range[0] != '\0')
		mi_http_resp_header(r, "Content-Range", a.content_range);
	if (a.fd != -1)
		mi_http_resp_file(r, a.fd, a.off, a.len);
	else if (a.mem != NULL)
		mi_http_resp_body(r, a.mem, (size_t)a.len, a.free_fn);
}

static void
serve_asset(struct server *s, const struct mi_http_req *req,
    struct mi_http_resp *r)
{
	struct mi_bundle_url u;
	struct mi_asset_path p;
	struct tenant_stat *t;
	long long exp;
	struct stat st;
	int fd, why;

	switch (mi_bundle_url_parse(req->path, &u)) {
	case 1:
		serve_bundle_entry(s, req, r, &u);
		return;
	case -1:
		not_found(s, req, r, R_PATH);
		return;
	}
	if (mi_asset_path_parse(req->path, &p, NULL) == -1) {
		not_found(s, req, r, R_PATH);
		return;
	}
	if (authorise(s, req, p.tenant, req->path, req->query, &exp,
	    &why) == -1) {
		not_found(s, req, r, why);
		return;
	}
	/* Only now does the request reach the file system. */
	if ((fd = open_asset(s, &p)) == -1) {
		not_found(s, req, r, -1);
		return;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		not_found(s, req, r, -1);
		return;
	}
	if ((t = tenant_stat(s, p.tenant)) != NULL) {
		atomic_fetch_add_explicit(&t->requests, 1,
		    memory_order_relaxed);
		mi_http_resp_tally(r, &t->bytes);
	}
	send_entity(s, req, r, fd, 0, (long long)st.st_size, p.hash,
	    mi_mime_by_ext(p.ext)->type, exp);
}

static void
serve_metrics(struct server *s, const struct mi_http_req *req,
    struct mi_http_resp *r)
{
	struct mi_buf b = MI_BUF_INIT;
	struct mi_httpd_stats st;
	const char *auth;
	size_t i, n;
	char *text;
	int code;

	/*
	 * Tenant names are not for everyone: the token, or any loopback
	 * client when told so (behind a local proxy that is everyone).
	 */
	auth = mi_http_header(req, "Authorization");
	if (!(s->metrics_token != NULL && auth != NULL &&
	    strncasecmp(auth, "Bearer ", 7) == 0 &&
	    mi_str_ct_equal(auth + 7, s->metrics_token)) &&
	    !(s->metrics_loopback && req->peer_loopback)) {
		not_found(s, req, r, R_NO_CREDENTIALS);
		return;
	}
	mi_httpd_stats(s->httpd, &st);
	mi_buf_adds(&b, "# HELP mi_serve_requests_total Requests answered, "
	    "by status.\n# TYPE mi_serve_requests_total counter\n");
	for (code = 100; code < 600; code++)
		if (st.requests[code] > 0)
			mi_buf_addf(&b, "mi_serve_requests_total{status=\"%d\"} "
			    "%lld\n", code, st.requests[code]);
	mi_buf_addf(&b, "# HELP mi_serve_bytes_sent_total Body bytes sent.\n"
	    "# TYPE mi_serve_bytes_sent_total counter\n"
	    "mi_serve_bytes_sent_total %lld\n"
	    "# HELP mi_serve_open_connections Connections open now.\n"
	    "# TYPE mi_serve_open_connections gauge\n"
	    "mi_serve_open_connections %lld\n"
	    "# HELP mi_serve_connections_accepted_total Connections accepted."
	    "\n# TYPE mi_serve_connections_accepted_total counter\n"
	    "mi_serve_connections_accepted_total %lld\n"
	    "# HELP mi_serve_connections_max Connections allowed at once.\n"
	    "# TYPE mi_serve_connections_max gauge\n"
	    "mi_serve_connections_max %lld\n"
	    "# HELP mi_serve_connections_rejected_total Connections closed at "
	    "once at a limit.\n"
	    "# TYPE mi_serve_connections_rejected_total counter\n"
	    "mi_serve_connections_rejected_total %lld\n"
	    "# HELP mi_serve_connections_evicted_total Waiting connections "
	    "closed to make room.\n"
	    "# TYPE mi_serve_connections_evicted_total counter\n"
	    "mi_serve_connections_evicted_total %lld\n",
	    st.bytes_sent, st.open_conns, st.accepted, st.max_conns,
	    st.rejected, st.evicted);
	mi_buf_adds(&b, "# HELP mi_serve_refused_total Asset requests "
	    "refused, by reason.\n# TYPE mi_serve_refused_total counter\n");
	for (i = 0; i < R_NREFUSAL; i++)
		mi_buf_addf(&b, "mi_serve_refused_total{reason=\"%s\"} %lld\n",
		    refusal_name[i], atomic_load(&s->refused[i]));
	mi_buf_adds(&b, "# HELP mi_serve_tenant_bytes_sent_total Body bytes "
	    "sent, by tenant.\n"
	    "# TYPE mi_serve_tenant_bytes_sent_total counter\n");
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->tenants_cap; i++)
		if (s->tenants[i] != NULL)
			mi_buf_addf(&b, "mi_serve_tenant_bytes_sent_total"
			    "{tenant=\"%s\"} %lld\n", s->tenants[i]->name,
			    atomic_load(&s->tenants[i]->bytes));
	mi_buf_adds(&b, "# HELP mi_serve_tenant_requests_total Asset "
	    "requests served, by tenant.\n"
	    "# TYPE mi_serve_tenant_requests_total counter\n");
	for (i = 0; i < s->tenants_cap; i++)
		if (s->tenants[i] != NULL)
			mi_buf_addf(&b, "mi_serve_tenant_requests_total"
			    "{tenant=\"%s\"} %lld\n", s->tenants[i]->name,
			    atomic_load(&s->tenants[i]->requests));
	pthread_mutex_unlock(&s->lock);
	text = mi_buf_detach(&b, &n);
	mi_http_resp_status(r, 200);
	common_headers(s, req, r, "text/plain; version=0.0.4; charset=utf-8");
	mi_http_resp_header(r, "Cache-Control", "no-store");
	mi_http_resp_body(r, text, n, free);
}

static void
serve_health(struct server *s, const struct mi_http_req *req,
    struct mi_http_resp *r)
{
	text_answer(s, req, r, 200, "ok\n");
}

/*
 * The routes, tried in order: a path equal to path, or starting with it
 * when prefix is set.  preflight: OPTIONS is answered for CORS.
 */
static const struct route {
	const char *path;
	int prefix, preflight;
	void (*serve)(struct server *, const struct mi_http_req *,
	    struct mi_http_resp *);
} routes[] = {
	{ "/api/assets/", 1, 1, serve_asset },
	{ "/healthz", 0, 0, serve_health },
	{ "/metrics", 0, 0, serve_metrics },
};

static void
handle(void *arg, const struct mi_http_req *req, struct mi_http_resp *r)
{
	struct server *s = arg;
	const struct route *rt = NULL;
	size_t i, n;

	if (req->error) {
		text_answer(s, req, r, req->error, req->error == 505 ?
		    "HTTP version not supported\n" : "bad request\n");
		return;
	}
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]) && rt == NULL;
	    i++) {
		n = strlen(routes[i].path);
		if (routes[i].prefix ? strncmp(req->path, routes[i].path, n) ==
		    0 : strcmp(req->path, routes[i].path) == 0)
			rt = &routes[i];
	}
	if (req->method == MI_HTTP_OPTIONS && ((rt != NULL &&
	    rt->preflight) || strcmp(req->path, "*") == 0)) {
		preflight(s, req, r);
		return;
	}
	if (rt == NULL) {
		not_found(s, req, r, R_PATH);
		return;
	}
	if (req->method != MI_HTTP_GET && req->method != MI_HTTP_HEAD) {
		text_answer(s, req, r, 405, "method not allowed\n");
		return;
	}
	rt->serve(s, req, r);
}

/* The access log: never the query (it may hold a signature). */
static void
log_request(void *arg, const struct mi_http_req *req, int status,
    long long sent, const char *note, long long usec)
{
	struct server *s = arg;
	char when[32], path[MI_HTTP_MAX_TARGET];
	const char *req_path = "-";
	struct tm tm;
	time_t t;

	if (!s->access_log)
		return;
	/* A bundle entry's path may carry a signature too. */
	if (req->path[0])
		req_path = mi_bundle_log_path(req->path, path, sizeof(path));
	t = time(NULL);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s %s \"%s %s\" %d %lld %lldus %s\n", when,
	    req->peer ? req->peer : "-", req->method_name[0] ?
	    req->method_name : "-", req_path, status,
	    sent, usec, note[0] ? note : "-");
}

static void
parse_origins(struct server *s, const char *list)
{
	char *copy, *p, *save = NULL;

	if (list == NULL || *list == '\0')
		return;
	s->cors_set = 1;
	if ((copy = s->origins_buf = strdup(list)) == NULL)
		mi_die(EX_OSERR, "out of memory");
	for (p = strtok_r(copy, ", ", &save); p != NULL;
	    p = strtok_r(NULL, ", ", &save)) {
		if (strcmp(p, "*") == 0) {
			s->cors_any = 1;
			continue;
		}
		s->origins = realloc(s->origins,
		    (s->norigins + 1) * sizeof(*s->origins));
		if (s->origins == NULL)
			mi_die(EX_OSERR, "out of memory");
		s->origins[s->norigins++] = p;
	}
}

/* The token verifier the environment asks for; NULL when none or bad. */
static struct mi_jwt *
load_jwt(struct mi_err *err)
{
	struct mi_jwt_opts jo;

	memset(&jo, 0, sizeof(jo));
	jo.secret = getenv("MI_JWT_SECRET");
	jo.public_key_file = getenv("MI_JWT_JWKS");
	if (jo.public_key_file == NULL || *jo.public_key_file == '\0')
		jo.public_key_file = getenv("MI_JWT_PUBLIC_KEY");
	jo.issuer = getenv("MI_JWT_ISSUER");
	jo.audience = getenv("MI_JWT_AUDIENCE");
	jo.tenant_claim = getenv("MI_JWT_TENANT_CLAIM");
	jo.leeway_s = -1;
	if ((jo.secret == NULL || *jo.secret == '\0') &&
	    (jo.public_key_file == NULL || *jo.public_key_file == '\0'))
		return NULL;
	return mi_jwt_new(&jo, err);
}

/*
 * SIGHUP: the key files are read again; tokens verified with the old keys
 * are verified again.  Connections stay; on an error the old keys stay.
 */
static void
reload_keys(struct server *s)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_jwt *j, *old;

	if ((j = load_jwt(&err)) == NULL) {
		if (err.code != 0)
			mi_warn("keys not reloaded: %s", err.msg);
		return;
	}
	pthread_rwlock_wrlock(&s->jwt_lock);
	old = s->jwt;
	s->jwt = j;
	atomic_fetch_add(&s->jwt_gen, 1);
	pthread_rwlock_unlock(&s->jwt_lock);
	mi_jwt_free(old);
	mi_verbose("keys reloaded: %zu public key%s", mi_jwt_nkeys(j),
	    mi_jwt_nkeys(j) == 1 ? "" : "s");
}

/* Reads the environment; dies 78 on what cannot work. */
static void
configure(struct server *s, const char *root)
{
	struct mi_err err = MI_ERR_INIT;
	const char *k;

	if (root == NULL && ((root = getenv("ASSET_STORAGE_DIR")) == NULL ||
	    *root == '\0'))
		mi_die(EX_CONFIG, "no store: give --root or set "
		    "ASSET_STORAGE_DIR");
	if ((s->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		mi_die(EX_CONFIG, "unable to open store '%s': %s", root,
		    strerror(errno));
	s->root = root;
	if ((s->jwt = load_jwt(&err)) == NULL && err.code != 0)
		mi_die_err(&err);
	if ((k = mi_sign_key()) != NULL && (s->sign_key = strdup(k)) == NULL)
		mi_die(EX_OSERR, "out of memory");
	if (s->jwt == NULL && s->sign_key == NULL)
		mi_die(EX_CONFIG, "no credentials configured: set MI_JWT_SECRET, "
		    "MI_JWT_PUBLIC_KEY, MI_JWT_JWKS or MI_URL_SIGNING_KEY");
	if (mi_sign_ttl(&err) == -1)
		mi_die_err(&err);
	if ((k = getenv("MI_METRICS_TOKEN")) != NULL && *k)
		s->metrics_token = k;
	if ((k = getenv("MI_METRICS_LOOPBACK")) != NULL && strcmp(k, "1") == 0)
		s->metrics_loopback = 1;
	parse_origins(s, getenv("MI_CORS_ORIGINS"));
}

static int
serve(const char *listen, const char *root, int threads, int access_log,
    int max_conns, int max_per_client)
{
	static struct server s;
	struct mi_err err = MI_ERR_INIT;
	struct mi_httpd_opts o;
	struct mi_httpd_stats st;
	sigset_t set;
	int sig;

	s.access_log = access_log;
	pthread_mutex_init(&s.lock, NULL);
	pthread_rwlock_init(&s.jwt_lock, NULL);
	configure(&s, root);
	/* Workers inherit a mask without these: only sigwait sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	memset(&o, 0, sizeof(o));
	o.listen = listen;
	o.threads = threads;
	o.max_conns = max_conns;
	o.max_per_client = max_per_client;
	o.handler = handle;
	o.done = log_request;
	o.arg = &s;
	if ((s.httpd = mi_httpd_start(&o, &err)) == NULL)
		mi_die_err(&err);
	mi_httpd_stats(s.httpd, &st);
	mi_verbose("listening on %s (port %d), serving '%s', at most %lld "
	    "connections, %lld per client", listen, mi_httpd_port(s.httpd),
	    s.root, st.max_conns, st.max_per_client);
	do {
		if (sigwait(&set, &sig) != 0)
			sig = SIGTERM;
		if (sig == SIGHUP)
			reload_keys(&s);
	} while (sig != SIGTERM && sig != SIGINT);
	mi_verbose("stopping on signal %d", sig);
	mi_httpd_stop(s.httpd);
	mi_bundle_cache_clear();
	free_caches(&s);
	mi_jwt_free(s.jwt);
	if (s.sign_key != NULL)
		explicit_bzero(s.sign_key, strlen(s.sign_key));
	free(s.sign_key);
	free(s.origins);
	free(s.origins_buf);
	close(s.rootfd);
	return 0;
}

/* --sign: the path of URI (which may be a full URL) with exp and sig. */
static int
sign(const char *uri, long long ttl)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_asset_path p;
	const char *key, *path = uri, *pub = "";
	char out[2400];
	int plen = 0;

	if ((key = mi_sign_key()) == NULL)
		mi_die(EX_CONFIG, "MI_URL_SIGNING_KEY is not set");
	if (strncmp(uri, "http://", 7) == 0 ||
	    strncmp(uri, "https://", 8) == 0) {
		path = strchr(uri + (uri[4] == 's' ? 8 : 7), '/');
		if (path == NULL)
			path = "";
		pub = uri;
		plen = (int)(path - uri);
	} else if (getenv("MI_PUBLIC_URL") != NULL) {
		pub = getenv("MI_PUBLIC_URL");
		plen = (int)strlen(pub);
		while (plen > 0 && pub[plen - 1] == '/')
			plen--;
	}
	if (mi_asset_path_parse(path, &p, &err) == -1)
		mi_die(EX_DATAERR, "'%s' is not an asset URI: %s", uri,
		    err.msg);
	if (mi_sign_url(key, path, (long long)time(NULL) + ttl, out,
	    sizeof(out), &err) == -1)
		mi_die_err(&err);
	printf("%.*s%s\n", plen, pub, out);
	mi_close_stdout();
	return 0;
}

static long long
default_ttl(void)
{
	struct mi_err err = MI_ERR_INIT;
	long long t = mi_sign_ttl(&err);

	if (t == -1)
		mi_die_err(&err);
	return t;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "access-log", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ "listen", required_argument, NULL, 'l' },
		{ "max-connections", required_argument, NULL, 'm' },
		{ "max-per-client", required_argument, NULL, 'M' },
		{ "root", required_argument, NULL, 'r' },
		{ "sign", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 'T' },
		{ "ttl", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *listen = "127.0.0.1:8080", *root = NULL, *uri = NULL;
	unsigned long long v, threads = 2, max_conns = 0, per_client = 0;
	long long ttl = -1;
	int c, access_log = 0;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "al:M:m:r:s:T:t:v", opts,
	    NULL)) != -1) {
		switch (c) {
		case 'a':
			access_log = 1;
			break;
		case 'h':
			mi_usage(usage, 0);
		case 'l':
			listen = optarg;
			break;
		case 'M':
			if (mi_parse_uint(optarg, 1, 1 << 20, &per_client) == -1)
				mi_die(EX_USAGE, "bad --max-per-client '%s'",
				    optarg);
			break;
		case 'm':
			if (mi_parse_uint(optarg, 1, 1 << 20, &max_conns) == -1)
				mi_die(EX_USAGE, "bad --max-connections '%s'",
				    optarg);
			break;
		case 'r':
			root = optarg;
			break;
		case 's':
			uri = optarg;
			break;
		case 'T':
			if (mi_parse_uint(optarg, 1, 64, &threads) == -1)
				mi_die(EX_USAGE, "bad --threads '%s'", optarg);
			break;
		case 't':
			if (mi_parse_uint(optarg, 1, MI_SIGN_TTL_MAX, &v) == -1)
				mi_die(EX_USAGE, "bad --ttl '%s'", optarg);
			ttl = (long long)v;
			break;
		case 'v':
			mi_verbosity++;
			break;
		case 'V':
			mi_version();
		default:
			mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind != argc || (ttl != -1 && uri == NULL))
		mi_usage(usage, EX_USAGE);
	if (uri != NULL)
		return sign(uri, ttl != -1 ? ttl : default_ttl());
	return serve(listen, root, (int)threads, access_log, (int)max_conns,
	    (int)per_client);
}
