/*
 * transport_sync.c - synchronous HTTP: the create's answer is the result.
 * The 2xx body is spooled to "{spool}.raw" while it arrives; the
 * definition's `submitted` then says where the result is: the raw body
 * itself ("result": {"body": true}, ElevenLabs' audio bytes) or base64
 * inside the JSON answer ("result": {"data": "..."}, Gemini's inlineData).
 * Either way the result ends as the file "{spool}.{ext}", named in the
 * outcome as result.file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "mime.h"
#include "transport.h"
#include "banned.h"

struct sync_op {
	mi_outcome_cb cb;
	void *arg;
	char base[PATH_MAX];
	char raw[PATH_MAX + 8];
};

static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Decodes base64 (standard or URL-safe, whitespace ignored) into path. */
static int
decode_to(const char *s, size_t len, const char *path, struct mi_err *err)
{
	unsigned char out[49152];
	size_t i, o = 0;
	unsigned acc = 0;
	int bits = 0, fd, v;

	/* A new file, never the old one's bytes (see spool_sink). */
	if ((unlink(path) == -1 && errno != ENOENT) || (fd = open(path,
	    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) == -1)
		return mi_err_set_errno(err, EX_IOERR, "unable to create '%s'",
		    path);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '=')
			break;
		if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		if ((v = b64val(c)) == -1) {
			close(fd);
			unlink(path);
			return mi_err_set(err, EX_PROTOCOL,
			    "the answer's base64 data is malformed");
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
		if (o == sizeof(out) || i + 1 == len) {
			if (write(fd, out, o) != (ssize_t)o) {
				close(fd);
				unlink(path);
				return mi_err_set_errno(err, EX_IOERR,
				    "unable to write '%s'", path);
			}
			o = 0;
		}
	}
	if (o > 0 && write(fd, out, o) != (ssize_t)o) {
		close(fd);
		unlink(path);
		return mi_err_set_errno(err, EX_IOERR, "unable to write '%s'",
		    path);
	}
	if (close(fd) == -1)
		return mi_err_set_errno(err, EX_IOERR, "unable to write '%s'",
		    path);
	return 0;
}

/* The completed outcome's result made into the file base.ext. */
static jv
settle(struct sync_op *o, jv out)
{
	struct mi_err err = MI_ERR_INIT;
	jv result = jv_object_get(jv_copy(out), jv_string("result"));
	const char *ext = NULL, *mt = NULL;
	const struct mi_mime *m;
	char final[PATH_MAX + 16];
	int body = 0;
	jv data;

	if (jv_get_kind(result) != JV_KIND_OBJECT) {
		jv_free(result);
		jv_free(out);
		unlink(o->raw);
		return mi_outcome_error("failed", "PROVIDER_ERROR",
		    "the answer holds no result", 0);
	}
	mi_json_str(result, "ext", &ext, 0, NULL);
	mi_json_str(result, "mime_type", &mt, 0, NULL);
	mi_json_bool(result, "body", &body, 0, NULL);
	if (ext == NULL && (m = mi_mime_by_type(mt)) != NULL)
		ext = m->ext;
	snprintf(final, sizeof(final), "%s.%s", o->base, ext ? ext : "bin");
	data = jv_object_get(jv_copy(result), jv_string("data"));
	if (jv_get_kind(data) == JV_KIND_STRING) {
		if (decode_to(jv_string_value(data),
		    (size_t)jv_string_length_bytes(jv_copy(data)), final,
		    &err) == -1) {
			jv_free(data);
			jv_free(result);
			jv_free(out);
			unlink(o->raw);
			return mi_outcome_error("failed", err.code == EX_IOERR ?
			    "STORAGE_ERROR" : "PROVIDER_ERROR", err.msg,
			    err.code == EX_IOERR);
		}
		unlink(o->raw);
	} else if (!body || rename(o->raw, final) == -1) {
		jv_free(data);
		jv_free(result);
		jv_free(out);
		unlink(o->raw);
		return mi_outcome_error("failed", "PROVIDER_ERROR",
		    body ? "the answer's body was not kept" :
		    "the answer holds no result", 0);
	}
	jv_free(data);
	result = jv_object_delete(result, jv_string("data"));
	result = jv_object_delete(result, jv_string("body"));
	result = jv_object_set(result, jv_string("file"), jv_string(final));
	return jv_object_set(out, jv_string("result"), result);
}

static void
sync_done(void *arg, jv out)
{
	struct sync_op *o = arg;
	const char *st = NULL;

	if (mi_json_str(out, "status", &st, 0, NULL) == 1 &&
	    strcmp(st, "completed") == 0)
		out = settle(o, out);
	else
		unlink(o->raw);
	o->cb(o->arg, out);
	free(o);
}

static int
sync_submit(struct mi_loop *l, struct mi_provider *p, jv input,
    const char *spool, mi_outcome_cb cb, void *arg, struct mi_err *err)
{
	struct sync_op *o = calloc(1, sizeof(*o));

	if (o == NULL) {
		jv_free(input);
		return mi_err_set(err, EX_OSERR, "out of memory");
	}
	if ((size_t)snprintf(o->base, sizeof(o->base), "%s", spool) >=
	    sizeof(o->base)) {
		free(o);
		jv_free(input);
		return mi_err_set(err, EX_CONFIG, "spool path too long");
	}
	snprintf(o->raw, sizeof(o->raw), "%s.raw", spool);
	o->cb = cb;
	o->arg = arg;
	if (mi_transport_call_send(l, p, input, "submit", "submitted", 1,
	    o->raw, NULL, sync_done, o, err) == -1) {
		free(o);
		return -1;
	}
	return 0;
}

static int
no_poll(struct mi_loop *l, struct mi_provider *p, jv input,
    struct mi_poll_memo *memo, mi_outcome_cb cb, void *arg,
    struct mi_err *err)
{
	(void)l;
	(void)memo;
	(void)cb;
	(void)arg;
	jv_free(input);
	return mi_err_set(err, EX_SOFTWARE, "provider '%s' is not polled",
	    mi_provider_id(p));
}

const struct mi_transport mi_transport_sync = {
	"sync", 0, sync_submit, no_poll
};
