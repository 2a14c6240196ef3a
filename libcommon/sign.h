/*
 * sign.h - signed asset URLs: "?exp=<unix>&sig=<hex HMAC-SHA256>" where the
 * HMAC key is $MI_URL_SIGNING_KEY and the message is "<path>\n<exp>".
 * The path is the URL path only ("/api/assets/..."), never the host.
 */
#ifndef MI_SIGN_H
#define MI_SIGN_H

#include <stddef.h>

#include "err.h"

#define MI_SIGN_TTL_DEFAULT 86400
#define MI_SIGN_TTL_MAX 31536000	/* a year */
#define MI_SIGN_EXP_MAX 253402300799LL	/* 9999-12-31T23:59:59Z */

/* Key from the environment; NULL when unset or empty. */
const char *mi_sign_key(void);
/*
 * Lifetime of signed URLs from $MI_URL_TTL: MI_SIGN_TTL_DEFAULT when
 * unset or empty; -1 (err: 78) when not a whole number of seconds in
 * 1..MI_SIGN_TTL_MAX.
 */
long long mi_sign_ttl(struct mi_err *err);
/* Writes "path?exp=..&sig=.." into out; exp in 1..MI_SIGN_EXP_MAX. */
int mi_sign_url(const char *key, const char *path, long long exp,
    char *out, size_t outsz, struct mi_err *err);
/* 1 when sig is valid for path and exp, and exp >= now. */
int mi_sign_check(const char *key, const char *path, const char *exp,
    const char *sig, long long now);

#endif
