/*
 * sign.h - signed asset URLs: "?exp=<unix>&sig=<hex HMAC-SHA256>" where the
 * HMAC key is $MI_URL_SIGNING_KEY and the message is "<path>\n<exp>".
 * The path is the URL path only ("/api/assets/..."), never the host.
 */
#ifndef MI_SIGN_H
#define MI_SIGN_H

#include <stddef.h>

#include "err.h"

/* Key from the environment; NULL when unset or empty. */
const char *mi_sign_key(void);
/* Writes "path?exp=..&sig=.." into out. */
int mi_sign_url(const char *key, const char *path, long long exp,
    char *out, size_t outsz, struct mi_err *err);
/* 1 when sig is valid for path and exp, and exp >= now. */
int mi_sign_check(const char *key, const char *path, const char *exp,
    const char *sig, long long now);

#endif
