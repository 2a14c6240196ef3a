/*
 * json.h - the record stream: JSON values in (NDJSON or concatenated, as jq
 * reads them), one compact value per line out.
 *
 * All functions follow jv's ownership rule: a jv argument is consumed, a
 * returned jv belongs to the caller.  Getters check kinds so untrusted input
 * never reaches jv's asserts.
 */
#ifndef MI_JSON_H
#define MI_JSON_H

#include <stdio.h>
#include <jv.h>

#include "err.h"

struct mi_json_in;

struct mi_json_in *mi_json_in_new(FILE *fp);
void mi_json_in_free(struct mi_json_in *in);
/*
 * Next value from the stream.  Returns 1 and sets *out on a value, 0 at end
 * of input, -1 on an unparseable value (err says why; reading can go on),
 * -2 on a read error.
 */
int mi_json_next(struct mi_json_in *in, jv *out, struct mi_err *err);
/* Records read so far (1-based number of the last one returned). */
unsigned long mi_json_count(const struct mi_json_in *in);

/* Writes v compactly plus '\n' to fp and flushes; consumes v. */
void mi_json_write(FILE *fp, jv v);

/* Adds "error": {code, message, retryable} to rec; consumes rec. */
jv mi_json_error(jv rec, const char *code, const char *msg, int retryable);
/* True when rec (borrowed) is an object with a non-null "error". */
int mi_json_has_error(jv rec);

/*
 * Typed getters on an object.  *s points into o's storage (borrow: valid
 * while the caller holds o).  Missing key: returns 0 and leaves *out alone
 * when optional, else -1 with "missing key 'k'".  Wrong kind: -1.
 */
int mi_json_str(jv o, const char *key, const char **s, int required,
    struct mi_err *err);
int mi_json_num(jv o, const char *key, double *d, int required,
    struct mi_err *err);
int mi_json_bool(jv o, const char *key, int *b, int required,
    struct mi_err *err);

/* jv from a NUL-terminated JSON text; jv_invalid on error (err filled). */
jv mi_json_parse(const char *text, struct mi_err *err);
/* Serialises v (borrowed) into a malloc'd string. */
char *mi_json_dump(jv v);

#endif
