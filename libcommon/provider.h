/*
 * provider.h - provider definitions (mi-providers(5)).
 *
 * A provider is a jq file, {dir}/{id}.jq, where dir is $MI_PROVIDERS_DIR
 * or the share directory's providers/.  It defines `provider` (its
 * metadata: id, media types, transport, base URL, auth, poll interval,
 * timeout, concurrency, prices) and the functions that build its requests
 * and read its answers; providers/lib/mi.jq supplies defaults and helpers.
 * A definition is compiled once per process, the first time it is asked
 * for (compiling costs milliseconds, a call microseconds), and kept until
 * mi_provider_free_all.
 *
 * The metadata a caller sees is the effective one: MI_<ID>_BASE_URL,
 * _POLL_INTERVAL_MS, _TIMEOUT_MS, _CONCURRENCY, _MODEL, _ALLOWED_FAILS and
 * _COOLDOWN_MS (ID upper-cased, '-' as '_') replace the definition's
 * values.  Every function gets it as .provider of its input.
 *
 * Keys never enter jq: auth.env names the environment variable, and
 * mi_provider_auth builds the header from it.
 */
#ifndef MI_PROVIDER_H
#define MI_PROVIDER_H

#include <jv.h>

#include "buf.h"
#include "err.h"

struct mi_provider;

/* The definition of id, loaded and compiled on first use.  Unknown id:
 * NULL with EX_DATAERR; a broken definition: EX_CONFIG. */
struct mi_provider *mi_provider_get(const char *id, struct mi_err *err);
void mi_provider_free_all(void);
/* The ids of every definition found, sorted. */
jv mi_provider_list(struct mi_err *err);

const char *mi_provider_id(const struct mi_provider *p);
/* "http", "sync" or "local". */
const char *mi_provider_transport(const struct mi_provider *p);
/* A copy of the effective metadata. */
jv mi_provider_meta(const struct mi_provider *p);
int mi_provider_supports(const struct mi_provider *p, const char *media_type);

/* Settings for a media type: the definition's value (a number, or an
 * object by media type with an optional "default"), or SPEC.md's default
 * for the media type. */
long mi_provider_poll_interval_ms(const struct mi_provider *p,
    const char *media_type);
long mi_provider_timeout_ms(const struct mi_provider *p,
    const char *media_type);
int mi_provider_concurrency(const struct mi_provider *p,
    const char *media_type);
/* Cooldown: allowed failures per window, window and cooldown length. */
void mi_provider_cooldown(const struct mi_provider *p, int *allowed_fails,
    long *window_ms, long *cooldown_ms);

/*
 * Runs function fn of the definition on input (an object, consumed; the
 * effective metadata is added as "provider").  Returns its first output,
 * or jv_invalid() with err (EX_CONFIG: the function raised an error or
 * produced nothing).
 */
jv mi_provider_call(struct mi_provider *p, const char *fn, jv input,
    struct mi_err *err);

/*
 * The auth header ("x-api-key: KEY") onto out.  Returns 1 when written,
 * 0 when the provider needs no key, -1 with EX_CONFIG naming the
 * environment variable (never its value) when it is unset.
 */
int mi_provider_auth(const struct mi_provider *p, struct mi_buf *out,
    struct mi_err *err);
/* The environment variable holding the key, or NULL. */
const char *mi_provider_key_env(const struct mi_provider *p);

#endif
