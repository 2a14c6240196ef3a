/*
 * hash.h - streaming SHA-256 (OpenSSL EVP) and HMAC-SHA256.
 */
#ifndef MI_HASH_H
#define MI_HASH_H

#include <stddef.h>

#include "err.h"

struct mi_sha256;

struct mi_sha256 *mi_sha256_new(struct mi_err *err);
int mi_sha256_update(struct mi_sha256 *h, const void *data, size_t len);
/* Writes 64 lowercase hex digits + NUL into hex[65]; frees nothing. */
int mi_sha256_final(struct mi_sha256 *h, char hex[65]);
void mi_sha256_free(struct mi_sha256 *h);

/* One-shot helpers. */
void mi_sha256_hex(const void *data, size_t len, char hex[65]);
/* HMAC-SHA256 of data under key, as 64 hex digits. */
int mi_hmac_sha256_hex(const void *key, size_t keylen, const void *data,
    size_t len, char hex[65]);
/* Constant-time comparison of two NUL-terminated strings. */
int mi_str_ct_equal(const char *a, const char *b);

#endif
