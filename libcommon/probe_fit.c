/*
 * probe_fit.c - the point of storing: facts and warnings into the
 * artifact's metadata and the step's debug output; a model fitted to
 * its triangle budget; a strict result's chain carried on to the next
 * provider.
 *
 * Fitting uses gltfpack ($MI_GLTFPACK or "gltfpack"; Debian's gltfpack
 * package, meshoptimizer's own command): its simplifier keeps each
 * primitive's material and UVs, and -cc writes EXT_meshopt_compression,
 * which three.js reads with its MeshoptDecoder.  Without compression
 * the output keeps plain float attributes (-noq), readable by any
 * glTF 2.0 loader.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifact.h"
#include "buf.h"
#include "json.h"
#include "probe.h"
#include "runner.h"
#include "banned.h"

static double
num(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));
	double d = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : -1;

	jv_free(v);
	return d;
}

static int
param_true(jv request, const char *key)
{
	jv p = jv_object_get(jv_copy(request), jv_string("params")), v;
	int t;

	if (jv_get_kind(p) != JV_KIND_OBJECT) {
		jv_free(p);
		return 0;
	}
	v = jv_object_get(p, jv_string(key));
	t = jv_get_kind(v) == JV_KIND_TRUE;
	jv_free(v);
	return t;
}

/*
 * gltfpack from in to out at ratio (1: no simplification).  Returns the
 * facts of out, or jv_invalid() with err.
 */
static jv
pack(const char *in, const char *out, double ratio, int aggressive,
    int compress, struct mi_err *err)
{
	const char *prog = getenv("MI_GLTFPACK");
	const char *argv[12];
	char r[32];
	int k = 0;
	jv res;

	argv[k++] = prog && *prog ? prog : "gltfpack";
	argv[k++] = "-i";
	argv[k++] = in;
	argv[k++] = "-o";
	argv[k++] = out;
	if (ratio < 1) {
		snprintf(r, sizeof(r), "%.6f", ratio);
		argv[k++] = "-si";
		argv[k++] = r;
		if (aggressive)
			argv[k++] = "-sa";
	}
	argv[k++] = compress ? "-cc" : "-noq";
	argv[k] = NULL;
	res = mi_probe_run(argv, 1 << 16, 600000, err);
	if (!jv_is_valid(res))
		return res;
	jv_free(res);
	return mi_probe_file(out, mi_mime_by_ext("glb"));
}

struct fit {
	char dir[256], path[300];
	double ratio, ms;
	int tries;
	jv media;
};

/* Simplifies (and compresses) path to at most max triangles. */
static int
fit_model(const char *path, double tris, double max, int compress,
    struct fit *f, struct mi_err *err)
{
	const char *tmp = getenv("TMPDIR");
	long long t0 = mi_now_ms();
	double ratio = max > 0 && tris > max ? max / tris * 0.97 : 1;
	int i;

	f->media = jv_null();
	if (snprintf(f->dir, sizeof(f->dir), "%s/mi-fit.XXXXXX",
		tmp && *tmp ? tmp : "/tmp") >= (int)sizeof(f->dir) ||
	    mkdtemp(f->dir) == NULL)
		return mi_err_set_errno(err, EX_IOERR,
		    "unable to make a "
		    "temporary directory");
	snprintf(f->path, sizeof(f->path), "%s/fit.glb", f->dir);
	for (i = 0; i < 4; i++) {
		jv m = pack(path, f->path, ratio, i > 0, compress, err);
		double got;

		if (!jv_is_valid(m))
			return -1;
		got = num(m, "triangles");
		jv_free(f->media);
		f->media = m;
		f->ratio = ratio;
		f->tries = i + 1;
		if (max <= 0 || (got >= 0 && got <= max))
			break;
		/* The simplifier stopped short (locked borders, seams):
		 * again, aggressively, with the ratio that was missing. */
		ratio *= got > 0 ? max / got * 0.95 : 0.5;
	}
	f->ms = (double)(mi_now_ms() - t0);
	if (max > 0 && num(f->media, "triangles") > max)
		return mi_err_set(err, EX_SOFTWARE,
		    "gltfpack left %.0f "
		    "triangles",
		    num(f->media, "triangles"));
	return 0;
}

static void
fit_clean(struct fit *f)
{
	if (f->path[0])
		unlink(f->path);
	if (f->dir[0])
		rmdir(f->dir);
	jv_free(f->media);
}

/*
 * A strict result refused: its warnings into app.run_steps.debug
 * ("rejected", one entry per refused result), where that column exists.
 * The warnings of the result a step keeps reach debug.warnings with its
 * artifact (migration 0005's trigger).
 */
static void
to_debug(struct mi_db *db, jv request, jv warnings)
{
	static int have = -1;
	const char *step = NULL;
	char *text;
	const char *params[2];
	jv rej;

	if (jv_array_length(jv_copy(warnings)) == 0 ||
	    mi_json_str(request, "run_step_id", &step, 0, NULL) != 1)
		return;
	if (have == -1) {
		jv v = mi_db_json1(db,
		    "SELECT to_jsonb(count(*) > 0) FROM"
		    " information_schema.columns WHERE table_schema = 'app'"
		    " AND table_name = 'run_steps' AND column_name = 'debug'",
		    0, NULL, NULL);

		have = jv_get_kind(v) == JV_KIND_TRUE;
		jv_free(v);
	}
	if (!have)
		return;
	rej = jv_object_set(jv_object(), jv_string("warnings"),
	    jv_copy(warnings));
	text = mi_json_dump(rej);
	jv_free(rej);
	params[0] = step;
	params[1] = text;
	mi_db_exec(db,
	    "UPDATE app.run_steps SET debug ="
	    " coalesce(debug, '{}'::jsonb) || jsonb_build_object('rejected',"
	    "  coalesce(debug->'rejected', '[]'::jsonb) ||"
	    "  jsonb_build_array($2::jsonb))"
	    " WHERE id = $1::uuid",
	    2, params, NULL, NULL);
	free(text);
}

static jv
extra_meta(jv extra)
{
	jv m = jv_object_get(jv_copy(extra), jv_string("metadata"));

	if (jv_get_kind(m) != JV_KIND_OBJECT) {
		jv_free(m);
		m = jv_object();
	}
	return m;
}

/* The original of a fitted model as its own artifact; its record. */
static jv
record_original(struct mi_db *db, const struct mi_store_req *req,
    const struct mi_store_result *res, jv extra, jv media, jv warnings,
    struct mi_err *err)
{
	jv m = extra_meta(extra);

	m = jv_object_set(m, jv_string("media"), media);
	if (jv_array_length(jv_copy(warnings)) > 0)
		m = jv_object_set(m, jv_string("warnings"), warnings);
	else
		jv_free(warnings);
	m = jv_object_set(m, jv_string("fitted"), jv_true());
	extra = jv_object_set(extra, jv_string("metadata"), m);
	return mi_artifact_record(db, req, res, extra, err);
}

/* The original's facts and warnings; on success *res is the fitted
 * file and *meta names the original.  A fit that fails leaves *res and
 * adds why to the warnings. */
static int
fit_stored(struct mi_db *db, struct mi_store *st,
    const struct mi_store_req *req, struct mi_store_result *res, jv request,
    double max, jv extra, jv *media, jv *warnings, jv *meta, struct mi_err *err)
{
	struct mi_err ferr = MI_ERR_INIT;
	struct mi_store_result fres;
	struct fit f;
	double tris = num(*media, "triangles");
	int compress = param_true(request, "compress"), fd;
	jv orig, from, how;

	memset(&f, 0, sizeof(f));
	if (fit_model(res->path, tris, max, compress, &f, &ferr) == -1) {
		/* An over-budget model keeps its TRIANGLES_OVER_BUDGET
		 * warning; the metadata says why it was not fitted. */
		fit_clean(&f);
		*meta = jv_object_set(*meta, jv_string("simplification"),
		    jv_object_set(jv_object(), jv_string("error"),
			jv_string(ferr.msg)));
		jv_free(extra);
		return 0;
	}
	orig = record_original(db, req, res, extra, jv_copy(*media),
	    jv_copy(*warnings), err);
	if (!jv_is_valid(orig)) {
		fit_clean(&f);
		return -1;
	}
	if ((fd = open(f.path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    mi_store_put_fd(st, req, fd, &fres, &ferr) == -1) {
		if (fd >= 0)
			close(fd);
		else
			mi_err_set_errno(&ferr, EX_IOERR, "open");
		fit_clean(&f);
		jv_free(orig);
		*meta = jv_object_set(*meta, jv_string("simplification"),
		    jv_object_set(jv_object(), jv_string("error"),
			jv_string(ferr.msg)));
		return 0;
	}
	close(fd);
	from = jv_object();
	from = jv_object_set(from, jv_string("artifact_id"),
	    jv_object_get(jv_copy(orig), jv_string("id")));
	from = jv_object_set(from, jv_string("uri"),
	    jv_object_get(jv_copy(orig), jv_string("uri")));
	from = jv_object_set(from, jv_string("content_hash"),
	    jv_string(res->hash));
	from = jv_object_set(from, jv_string("size_bytes"),
	    jv_number((double)res->size));
	from = jv_object_set(from, jv_string("triangles"), jv_number(tris));
	jv_free(orig);
	how = jv_object();
	how = jv_object_set(how, jv_string("tool"), jv_string("gltfpack"));
	how = jv_object_set(how, jv_string("ratio"),
	    jv_number(round(f.ratio * 1e6) / 1e6));
	how = jv_object_set(how, jv_string("passes"), jv_number(f.tries));
	how = jv_object_set(how, jv_string("ms"), jv_number(f.ms));
	how = jv_object_set(how, jv_string("compress"),
	    compress ? jv_true() : jv_false());
	*meta = jv_object_set(*meta, jv_string("simplified_from"), from);
	*meta = jv_object_set(*meta, jv_string("simplification"), how);
	*res = fres;
	jv_free(*media);
	*media = f.media;
	f.media = jv_null();
	fit_clean(&f);
	/* The fitted model is what the step gets: its own warnings. */
	jv_free(*warnings);
	*warnings = mi_probe_check(*media, request);
	return 0;
}

int
mi_probe_stored(struct mi_db *db, struct mi_store *st,
    const struct mi_store_req *req, struct mi_store_result *res, jv request,
    jv *extra, struct mi_err *err)
{
	jv media = mi_probe_file(res->path, res->mime), warnings, meta;
	const char *mt = NULL;
	double max = -1, tris = num(media, "triangles");
	int rc = 0;

	if (jv_get_kind(*extra) != JV_KIND_OBJECT) {
		jv_free(*extra);
		*extra = jv_object();
	}
	if (jv_get_kind(request) != JV_KIND_OBJECT) {
		jv_free(request);
		request = jv_object();
	}
	mi_json_str(request, "media_type", &mt, 0, NULL);
	warnings = mi_probe_check(media, request);
	meta = extra_meta(*extra);
	{
		jv p = jv_object_get(jv_copy(request), jv_string("params"));

		max = jv_get_kind(p) == JV_KIND_OBJECT ? num(p, "max_triangles")
						       : -1;
		jv_free(p);
	}
	if (strcmp(res->mime->ext, "glb") == 0 && tris >= 0 &&
	    ((max > 0 && tris > max) || param_true(request, "compress")) &&
	    fit_stored(db, st, req, res, request, max, jv_copy(*extra), &media,
		&warnings, &meta, err) == -1) {
		jv_free(media);
		jv_free(warnings);
		jv_free(meta);
		jv_free(request);
		return -1;
	}
	meta = jv_object_set(meta, jv_string("media"), media);
	if (jv_array_length(jv_copy(warnings)) > 0) {
		meta = jv_object_set(meta, jv_string("warnings"),
		    jv_copy(warnings));
		if (mi_probe_strict(request)) {
			to_debug(db, request, warnings);
			struct mi_buf b = MI_BUF_INIT;
			int i, n = jv_array_length(jv_copy(warnings));

			for (i = 0; i < n; i++) {
				jv w = jv_array_get(jv_copy(warnings), i);
				const char *c = "", *m = "";

				mi_json_str(w, "code", &c, 0, NULL);
				mi_json_str(w, "message", &m, 0, NULL);
				mi_buf_addf(&b, "%s%s: %s", i ? "; " : "", c,
				    m);
				jv_free(w);
			}
			mi_err_set(err, EX_DATAERR,
			    "strict: the result misses "
			    "its request: %s",
			    b.buf ? b.buf : "");
			mi_buf_release(&b);
			rc = 1;
		}
	}
	jv_free(warnings);
	jv_free(request);
	*extra = jv_object_set(*extra, jv_string("metadata"), meta);
	return rc;
}

/* Next provider of a refused strict result's chain. */
struct next {
	jv last;
};

static void
next_emit(void *arg, jv rec, int passed)
{
	struct next *n = arg;

	(void)passed;
	jv_free(n->last);
	n->last = rec;
}

static void
next_note(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level == MI_NOTE_WARN || level == MI_NOTE_INFO || mi_verbosity > 0)
		fprintf(stderr, "%s: %s\n", mi_getprogname(), msg);
}

jv
mi_probe_next(struct mi_db *db, jv failed_job, struct mi_err *err)
{
	struct mi_runner_opts ro = { 1, 0, next_emit, next_note, NULL };
	struct next n = { jv_null() };
	struct mi_runner *r;
	jv cand = jv_object_get(jv_copy(failed_job), jv_string("fallback"));
	jv req = jv_object_get(jv_copy(failed_job), jv_string("request"));
	int i, len;

	len = jv_get_kind(cand) == JV_KIND_ARRAY
	    ? jv_array_length(jv_copy(cand))
	    : 0;
	if (len == 0 || jv_get_kind(req) != JV_KIND_OBJECT) {
		jv_free(cand);
		jv_free(req);
		return jv_null();
	}
	ro.arg = &n;
	if ((r = mi_runner_new(db, &ro, err)) == NULL) {
		jv_free(cand);
		jv_free(req);
		return jv_invalid();
	}
	for (i = 0; i < len; i++) {
		jv q = jv_copy(req), id;

		q = jv_object_set(q, jv_string("provider_id"),
		    jv_array_get(jv_copy(cand), i));
		q = jv_object_set(q, jv_string("fallback"),
		    jv_array_slice(jv_copy(cand), i + 1, len));
		mi_runner_request(r, q);
		while (mi_runner_count(r) > 0)
			if (mi_runner_run(r, NULL, 0, 1000, err) == -1) {
				mi_runner_free(r);
				jv_free(n.last);
				jv_free(cand);
				jv_free(req);
				return jv_invalid();
			}
		/* Refused before any job was written: the next one. */
		if (jv_get_kind(n.last) != JV_KIND_OBJECT)
			break;
		id = jv_object_get(jv_copy(n.last), jv_string("id"));
		if (jv_get_kind(id) == JV_KIND_STRING ||
		    !mi_json_has_error(n.last)) {
			jv_free(id);
			break;
		}
		jv_free(id);
	}
	mi_runner_free(r);
	jv_free(cand);
	jv_free(req);
	return n.last;
}
