/*
 * transport_local.c - the built-in generators (localgen/localgen.h) as a provider.
 * A create runs the generator on a thread of its own, writing the spool
 * file "{spool}.{ext}"; the job is complete when it returns.  The thread
 * gets plain strings and builds its own jv values: nothing is shared with
 * the loop's thread but the op, which only the thread writes until the
 * done callback runs.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "localgen/localgen.h"
#include "transport.h"
#include "banned.h"

struct local_op {
	char media[32];
	char *prompt;
	char *params;		/* JSON text, or NULL */
	char path[PATH_MAX + 16];
	int rc;
	struct mi_err err;
	mi_outcome_cb cb;
	void *arg;
};

static void
op_free(struct local_op *o)
{
	free(o->prompt);
	free(o->params);
	free(o);
}

static void
work(void *arg)
{
	struct local_op *o = arg;
	jv params = o->params ? jv_parse(o->params) : jv_null();

	if (!jv_is_valid(params)) {
		jv_free(params);
		params = jv_null();
	}
	o->rc = mi_gen_request(o->media, o->prompt, params, NULL, o->path,
	    &o->err);
}

static void
done(void *arg)
{
	struct local_op *o = arg;
	jv out, result;

	if (o->rc == -1) {
		remove(o->path);
		out = mi_outcome_error("failed",
		    o->err.code == EX_DATAERR ? "VALIDATION_ERROR" :
		    o->err.code == EX_IOERR ? "STORAGE_ERROR" :
		    o->err.code == EX_UNAVAILABLE ? "PROVIDER_UNAVAILABLE" :
		    "PROVIDER_ERROR", o->err.msg, o->err.code != EX_DATAERR);
	} else {
		result = jv_object();
		result = jv_object_set(result, jv_string("file"),
		    jv_string(o->path));
		result = jv_object_set(result, jv_string("ext"),
		    jv_string(mi_gen_ext(o->media)));
		result = jv_object_set(result, jv_string("mime_type"),
		    jv_string(mi_gen_mime(o->media)));
		out = jv_object_set(jv_object(), jv_string("status"),
		    jv_string("completed"));
		out = jv_object_set(out, jv_string("result"), result);
		out = jv_object_set(out, jv_string("cost_usd"), jv_number(0));
	}
	o->cb(o->arg, out);
	op_free(o);
}

static int
local_submit(struct mi_loop *l, struct mi_provider *p, jv input,
    const char *spool, mi_outcome_cb cb, void *arg, struct mi_err *err)
{
	struct local_op *o = calloc(1, sizeof(*o));
	const char *media = NULL, *prompt = "";
	jv req, params;
	int r = -1;

	(void)p;
	req = jv_object_get(jv_copy(input), jv_string("request"));
	if (o == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		goto out;
	}
	if (jv_get_kind(req) != JV_KIND_OBJECT ||
	    mi_json_str(req, "media_type", &media, 1, err) == -1 ||
	    mi_json_str(req, "prompt", &prompt, 0, err) == -1)
		goto out;
	if (mi_gen_ext(media) == NULL) {
		mi_err_set(err, EX_DATAERR, "unknown media type '%s'", media);
		goto out;
	}
	snprintf(o->media, sizeof(o->media), "%s", media);
	if ((size_t)snprintf(o->path, sizeof(o->path), "%s.%s", spool,
	    mi_gen_ext(media)) >= sizeof(o->path)) {
		mi_err_set(err, EX_CONFIG, "spool path too long");
		goto out;
	}
	/* The generator writes a new file, never an old one's bytes: a spool
	 * file that mi-fetch adopted is the stored file (store.h). */
	if (unlink(o->path) == -1 && errno != ENOENT) {
		mi_err_set_errno(err, EX_IOERR, "unable to remove '%s'",
		    o->path);
		goto out;
	}
	params = jv_object_get(jv_copy(req), jv_string("params"));
	if (jv_get_kind(params) == JV_KIND_OBJECT)
		o->params = mi_json_dump(params);
	jv_free(params);
	o->prompt = strdup(prompt ? prompt : "");
	o->cb = cb;
	o->arg = arg;
	if (o->prompt == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		goto out;
	}
	if ((r = mi_loop_spawn(l, work, done, o, err)) == 0)
		o = NULL;
out:
	if (o)
		op_free(o);
	jv_free(req);
	jv_free(input);
	return r;
}

static int
local_poll(struct mi_loop *l, struct mi_provider *p, jv input,
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

const struct mi_transport mi_transport_local = {
	"local", 0, local_submit, local_poll
};
