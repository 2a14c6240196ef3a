/*
 * serve/routes.c - the routes of the asset host and their answers
 * (serve/routes.h): CORS and the common headers, the one 404 of every
 * refusal, assets and bundle entries with ETag and Range, /healthz and
 * /metrics; the configuration read from the environment, and the access
 * log line.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
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
#include "serve/routes.h"
#include "serve/server.h"
#include "sign.h"
#include "banned.h"

/*
 * A Bearer answer is revalidated every time (the ETag makes that a cheap
 * 304, and the token is checked again); a signed URL's answer may be kept,
 * by anyone, but not past its "exp".
 */
#define BEARER_CACHE "private, no-cache"
#define YEAR 31536000
#define TEXT "text/plain; charset=utf-8"

/* The names of enum refusal (server.h) in /metrics and the log. */
static const char *const refusal_name[] = {
	"path", "no_credentials", "bad_token", "expired_token",
	"wrong_tenant", "bad_signature", "expired_signature"
};

static int use_openat2 = 1;

static uint64_t
fnv1a(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	while (n-- > 0)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static void
free_caches(struct mi_serve *s)
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
tenant_stat(struct mi_serve *s, const char *tenant)
{
	struct thread_cache *c = srv_thread_cache(s);
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
 * Access-Control-Allow-Origin: decided from the configuration, the
 * request's Origin and its form (signed URL or not) only, never from the
 * outcome, so refusals and missing files look alike here too.
 */
static const char *
cors_origin(const struct mi_serve *s, const struct mi_http_req *req,
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
common_headers(const struct mi_serve *s, const struct mi_http_req *req,
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
text_answer(const struct mi_serve *s, const struct mi_http_req *req,
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
not_found(struct mi_serve *s, const struct mi_http_req *req,
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
preflight(const struct mi_serve *s, const struct mi_http_req *req,
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
open_asset(const struct mi_serve *s, const struct mi_asset_path *p)
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
send_entity(struct mi_serve *s, const struct mi_http_req *req,
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
serve_bundle_entry(struct mi_serve *s, const struct mi_http_req *req,
    struct mi_http_resp *r, const struct mi_bundle_url *u)
{
	struct mi_bundle_answer a;
	struct tenant_stat *t;
	struct stat st;
	long long exp;
	char cc[64];
	int fd, why;

	if (srv_authorise(s, req, u->asset.tenant, u->zip_path, u->query[0] ?
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
serve_asset(struct mi_serve *s, const struct mi_http_req *req,
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
	if (srv_authorise(s, req, p.tenant, req->path, req->query, &exp,
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
serve_metrics(struct mi_serve *s, const struct mi_http_req *req,
    struct mi_http_resp *r)
{
	struct mi_buf b = MI_BUF_INIT;
	struct mi_httpd_stats st;
	struct mi_httpd *h;
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
	/* Set once the workers run: a request in that first moment is
	 * answered without the counters. */
	h = atomic_load_explicit(&s->httpd, memory_order_acquire);
	if (h == NULL) {
		text_answer(s, req, r, 503, "starting\n");
		return;
	}
	mi_httpd_stats(h, &st);
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
serve_health(struct mi_serve *s, const struct mi_http_req *req,
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
	void (*serve)(struct mi_serve *, const struct mi_http_req *,
	    struct mi_http_resp *);
} routes[] = {
	{ "/api/assets/", 1, 1, serve_asset },
	{ "/healthz", 0, 0, serve_health },
	{ "/metrics", 0, 0, serve_metrics },
};

void
mi_serve_handle(void *arg, const struct mi_http_req *req,
    struct mi_http_resp *r)
{
	struct mi_serve *s = arg;
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
const char *
mi_serve_access_line(const struct mi_http_req *req, int status,
    long long sent, const char *note, long long usec, char *buf,
    size_t bufsz)
{
	char when[32], path[MI_HTTP_MAX_TARGET];
	const char *req_path = "-";
	struct tm tm;
	time_t t;

	/* A bundle entry's path may carry a signature too. */
	if (req->path[0])
		req_path = mi_bundle_log_path(req->path, path, sizeof(path));
	t = time(NULL);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(buf, bufsz, "%s %s \"%s %s\" %d %lld %lldus %s", when,
	    req->peer ? req->peer : "-", req->method_name[0] ?
	    req->method_name : "-", req_path, status,
	    sent, usec, note[0] ? note : "-");
	return buf;
}

static int
parse_origins(struct mi_serve *s, const char *list, struct mi_err *err)
{
	char *copy, *p, *save = NULL, **grown;

	if (list == NULL || *list == '\0')
		return 0;
	s->cors_set = 1;
	if ((copy = s->origins_buf = strdup(list)) == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	for (p = strtok_r(copy, ", ", &save); p != NULL;
	    p = strtok_r(NULL, ", ", &save)) {
		if (strcmp(p, "*") == 0) {
			s->cors_any = 1;
			continue;
		}
		grown = realloc(s->origins,
		    (s->norigins + 1) * sizeof(*s->origins));
		if (grown == NULL)
			return mi_err_set(err, EX_OSERR, "out of memory");
		s->origins = grown;
		s->origins[s->norigins++] = p;
	}
	return 0;
}

struct mi_serve *
mi_serve_new(const char *root, struct mi_err *err)
{
	struct mi_err e = MI_ERR_INIT;
	struct mi_serve *s;
	const char *k;

	if (root == NULL && ((root = getenv("ASSET_STORAGE_DIR")) == NULL ||
	    *root == '\0')) {
		mi_err_set(err, EX_CONFIG, "no store: give --root or set "
		    "ASSET_STORAGE_DIR");
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_rwlock_init(&s->jwt_lock, NULL);
	if ((s->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1) {
		mi_err_set_errno(&e, EX_CONFIG, "unable to open store '%s'",
		    root);
		goto fail;
	}
	s->root = root;
	if ((s->jwt = srv_load_jwt(&e)) == NULL && e.code != 0)
		goto fail;
	if ((k = mi_sign_key()) != NULL && (s->sign_key = strdup(k)) == NULL) {
		mi_err_set(&e, EX_OSERR, "out of memory");
		goto fail;
	}
	if (s->jwt == NULL && s->sign_key == NULL) {
		mi_err_set(&e, EX_CONFIG, "no credentials configured: set "
		    "MI_JWT_SECRET, MI_JWT_PUBLIC_KEY, MI_JWT_JWKS or "
		    "MI_URL_SIGNING_KEY");
		goto fail;
	}
	if (mi_sign_ttl(&e) == -1)
		goto fail;
	if ((k = getenv("MI_METRICS_TOKEN")) != NULL && *k)
		s->metrics_token = k;
	if ((k = getenv("MI_METRICS_LOOPBACK")) != NULL && strcmp(k, "1") == 0)
		s->metrics_loopback = 1;
	if (parse_origins(s, getenv("MI_CORS_ORIGINS"), &e) == -1)
		goto fail;
	return s;
fail:
	if (err != NULL)
		*err = e;
	mi_serve_free(s);
	return NULL;
}

void
mi_serve_set_httpd(struct mi_serve *s, struct mi_httpd *h)
{
	atomic_store_explicit(&s->httpd, h, memory_order_release);
}

const char *
mi_serve_root(const struct mi_serve *s)
{
	return s->root;
}

void
mi_serve_free(struct mi_serve *s)
{
	if (s == NULL)
		return;
	/* The workers have stopped: nothing reads the caches any more. */
	mi_bundle_cache_clear();
	free_caches(s);
	mi_jwt_free(s->jwt);
	if (s->sign_key != NULL)
		explicit_bzero(s->sign_key, strlen(s->sign_key));
	free(s->sign_key);
	free(s->origins);
	free(s->origins_buf);
	if (s->rootfd != -1)
		close(s->rootfd);
	pthread_rwlock_destroy(&s->jwt_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
