/*
 * serve/auth.c - who may read an asset (serve/server.h): a Bearer JWT of
 * the asset's tenant or a signed URL, each remembered per thread once
 * verified; and the SIGHUP reload of the keys.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "err.h"
#include "hash.h"
#include "httpd.h"
#include "jwt.h"
#include "serve/routes.h"
#include "serve/server.h"
#include "sign.h"
#include "banned.h"

static _Thread_local struct thread_cache *tc;

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

struct thread_cache *
srv_thread_cache(struct mi_serve *s)
{
	if (tc == NULL && (tc = calloc(1, sizeof(*tc))) != NULL) {
		pthread_mutex_lock(&s->lock);
		tc->next = s->caches;
		s->caches = tc;
		pthread_mutex_unlock(&s->lock);
	}
	return tc;
}

/*
 * Verifies a Bearer token, remembering good ones per thread: the same
 * token comes with every request of a page.  A hit is a token whose
 * SHA-256 equals that of one verified before with the keys in force.
 */
static int
token_tenant(struct mi_serve *s, const char *tok, long long now, char *tenant,
    size_t tenantsz, enum refusal *why)
{
	struct mi_err err = MI_ERR_INIT;
	struct thread_cache *c = srv_thread_cache(s);
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
signature_ok(struct mi_serve *s, const char *path, const char *exp,
    const char *sig, long long now)
{
	char key[MI_HTTP_MAX_TARGET + 128], hash[65];
	struct thread_cache *c = srv_thread_cache(s);
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

int
srv_authorise(struct mi_serve *s, const struct mi_http_req *req,
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

struct mi_jwt *
srv_load_jwt(struct mi_err *err)
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

int
mi_serve_reload_keys(struct mi_serve *s, size_t *nkeys, struct mi_err *err)
{
	struct mi_err e = MI_ERR_INIT;
	struct mi_jwt *j, *old;

	if ((j = srv_load_jwt(&e)) == NULL) {
		if (e.code == 0)
			return 1;
		if (err != NULL)
			*err = e;
		return -1;
	}
	pthread_rwlock_wrlock(&s->jwt_lock);
	old = s->jwt;
	s->jwt = j;
	atomic_fetch_add(&s->jwt_gen, 1);
	pthread_rwlock_unlock(&s->jwt_lock);
	mi_jwt_free(old);
	*nkeys = mi_jwt_nkeys(j);
	return 0;
}
