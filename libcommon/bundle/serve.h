/*
 * serve.h - answering GET /api/assets/{tenant}/{run}/bundle/{sha256}.zip/
 * {path}: one entry of a stored bundle, without unpacking it.
 *
 * The URL: the bundle's own asset path, then the entry's name (zipread.h
 * grammar; an empty name or one ending in '/' means its "index.html").
 * Credentials are the bundle's: a Bearer token of its tenant, or the
 * bundle's own signed URL query (?exp=..&sig=.. made for the .zip path),
 * or that same query as the first path segment after the .zip
 * (".../{sha256}.zip/exp=E&sig=S/index.html"), so that a page's relative
 * URLs (scripts, modules, models, sounds) carry the signature with them.
 *
 * Central directories are parsed once per content hash and kept in a
 * bounded cache shared by all threads (refused archives too, so a bad one
 * costs one parse).  Stored entries are answered as a range of the zip
 * file (sendfile); deflated ones are inflated into memory, within a
 * process-wide budget of MI_BUNDLE_INFLATE_BUDGET bytes in flight: past
 * it the answer is 503, never an allocation.
 */
#ifndef MI_BUNDLE_SERVE_H
#define MI_BUNDLE_SERVE_H

#include <stddef.h>
#include <sys/types.h>

#include "names.h"

#define MI_BUNDLE_CACHE 32
#define MI_BUNDLE_INFLATE_BUDGET (64LL << 20)

struct mi_bundle_url {
	struct mi_asset_path asset; /* the zip, type "bundle" */
	char zip_path[700]; /* "/api/assets/.../{sha256}.zip" */
	char query[200]; /* "exp=..&sig=.." from the path, or "" */
	char entry[1100]; /* the entry's name */
};

/*
 * 1 when path has the bundle-entry form (u filled), 0 when it is not of
 * that form at all (another asset path), -1 when it is but is malformed
 * (an answer "not found").
 */
int mi_bundle_url_parse(const char *path, struct mi_bundle_url *u);

struct mi_bundle_answer {
	int status; /* 200, 206, 304, 404, 416 or 503 */
	const char *type; /* the entry's Content-Type */
	char etag[1200]; /* "\"{sha256}/{entry}\"" */
	char content_range[96]; /* for 206 and 416; "" otherwise */
	/* The body: len bytes of fd from off, or of mem (free with free_fn). */
	int fd; /* -1 when none */
	off_t off;
	long long len;
	void *mem;
	void (*free_fn)(void *);
	const char *why; /* for the log when not 2xx/304 */
};

/*
 * Answers the entry u->entry of the zip open on fd (consumed: either
 * handed to a->fd or closed) whose size is size.  inm, range and if_range
 * are the request's If-None-Match, Range and If-Range (NULL when absent).
 */
void mi_bundle_answer(int fd, long long size, const struct mi_bundle_url *u,
    const char *inm, const char *range, const char *if_range,
    struct mi_bundle_answer *a);

/*
 * path with the signature of a credential segment blanked ("&sig=-"),
 * for logs: buf, or path itself when it has none.
 */
const char *mi_bundle_log_path(const char *path, char *buf, size_t bufsz);

/* Frees the cached directories (at exit, for leak checkers). */
void mi_bundle_cache_clear(void);

#endif
