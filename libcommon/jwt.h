/*
 * jwt.h - verification of JSON Web Tokens (RFC 7519) signed with HS256
 * (a shared secret), RS256 or PS256 (RSA keys) or ES256 (P-256 keys), the
 * public keys coming from a PEM file or a JWKS file (RFC 7517) as Clerk
 * and OIDC issuers publish them.
 *
 * Only the algorithms whose keys are configured are accepted: "none",
 * any other algorithm, and a token whose "alg" names the algorithm of a
 * key that is not configured are refused, so an RSA public key can never
 * be used as an HMAC secret.  A token whose header names a "kid" is
 * checked with that key only; one without is tried against the keys of
 * its algorithm.
 *
 * No byte of a token reaches a general JSON parser before its signature
 * checks out: the header (at most MI_JWT_HEADER_MAX bytes of base64url)
 * is read by a small strict reader for "alg", "kid" and "crit" only, and
 * the claims are read by the same reader once the signature is good.  A
 * token must carry "exp"; "exp" and "nbf" are checked with a leeway;
 * "iss" and "aud" when configured.  The tenant is read from the first
 * claim path that holds a string: "org_id", then "o.id" (Clerk's newer
 * session tokens) by default; a tenant holding a NUL is refused.
 *
 * A verifier is read-only after mi_jwt_new and may be shared by threads;
 * to change keys, make a new one.
 */
#ifndef MI_JWT_H
#define MI_JWT_H

#include <stddef.h>

#include "err.h"

#define MI_JWT_TOKEN_MAX 16384
#define MI_JWT_HEADER_MAX 1024	/* base64url characters */

struct mi_jwt_opts {
	const char *secret;	/* HS256 key, or NULL */
	const char *public_key_file;	/* a PEM public key or a JWKS, or NULL */
	const char *issuer;	/* required "iss", or NULL */
	const char *audience;	/* required in "aud", or NULL */
	const char *tenant_claim;	/* "org_id,o.id" when NULL */
	int leeway_s;		/* clock skew allowed for exp/nbf; < 0: 30 */
};

struct mi_jwt;

/*
 * Errors: 78 when no key is given, or the key file is not a usable key
 * (an RSA key under 2048 bits, an EC key not on P-256, a JWKS without a
 * usable key).
 */
struct mi_jwt *mi_jwt_new(const struct mi_jwt_opts *o, struct mi_err *err);
void mi_jwt_free(struct mi_jwt *j);
/* How many public keys j holds (for logs). */
size_t mi_jwt_nkeys(const struct mi_jwt *j);

/*
 * Verifies token (len bytes) at time now (Unix seconds).  On success
 * returns 0, copies the tenant into tenant[tenantsz] and sets *until to
 * the last second at which the token is still accepted (exp + leeway).
 * On failure returns -1 and err->msg says why in a word or two
 * ("expired", "bad signature", "alg none", ...), for logs.
 */
int mi_jwt_verify(const struct mi_jwt *j, const char *token, size_t len,
    long long now, char *tenant, size_t tenantsz, long long *until,
    struct mi_err *err);

#endif
