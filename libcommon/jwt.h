/*
 * jwt.h - verification of JSON Web Tokens (RFC 7519) signed with HS256
 * (a shared secret) or RS256 (an RSA public key in PEM, as Clerk issues).
 *
 * Only the algorithms whose keys are configured are accepted: "none",
 * any other algorithm, and a token whose "alg" names the algorithm of a
 * key that is not configured are refused, so an RSA public key can never
 * be used as an HMAC secret.  A token must carry "exp"; "exp" and "nbf"
 * are checked with a leeway; "iss" and "aud" when configured.  The tenant
 * is read from the first claim path that holds a string: "org_id", then
 * "o.id" (Clerk's newer session tokens) by default.
 *
 * A verifier is read-only after mi_jwt_new and may be shared by threads.
 */
#ifndef MI_JWT_H
#define MI_JWT_H

#include <stddef.h>

#include "err.h"

struct mi_jwt_opts {
	const char *secret;	/* HS256 key, or NULL */
	const char *public_key_file;	/* RS256 PEM path, or NULL */
	const char *issuer;	/* required "iss", or NULL */
	const char *audience;	/* required in "aud", or NULL */
	const char *tenant_claim;	/* "org_id,o.id" when NULL */
	int leeway_s;		/* clock skew allowed for exp/nbf; < 0: 30 */
};

struct mi_jwt;

/* Errors: 78 when no key is given or the key file is not a usable key. */
struct mi_jwt *mi_jwt_new(const struct mi_jwt_opts *o, struct mi_err *err);
void mi_jwt_free(struct mi_jwt *j);

/*
 * Verifies token (len bytes) at time now (Unix seconds).  On success
 * returns 0, copies the tenant into tenant[tenantsz] and sets *until to
 * the last second at which the token is still accepted (exp + leeway).  On failure returns -1 and err->msg says why in a
 * word or two ("expired", "bad signature", "alg none", ...), for logs.
 */
int mi_jwt_verify(const struct mi_jwt *j, const char *token, size_t len,
    long long now, char *tenant, size_t tenantsz, long long *until,
    struct mi_err *err);

#endif
