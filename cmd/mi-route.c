/*
 * mi-route - fills in provider_id and fallback of requests of every media
 * type from the routing table, skipping each provider whose definition
 * refuses the request's parameters (its validate function: nothing is
 * sent, nothing spent).  A request that names provider_id passes
 * untouched.  Run as mi-route-audio (or with --audio), it is the audio
 * router: sound-effect and music requests only, their parameters checked
 * against mi's audio ranges first.  Reads requests on stdin, writes one
 * request per line on stdout.  Exits 0, 1 (some error records), 64, 74 or
 * 78 (no usable routing table).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "json.h"
#include "paths.h"
#include "provider.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-route [-av] [-r routing.json] < requests.ndjson\n"
    "  -a, --audio         audio requests only, as mi-route-audio\n"
    "  -r, --routing FILE  routing table (default $MI_ROUTING_FILE, else\n"
    "                      routing.json in the share directory)\n"
    "  -v, --verbose       say where each request goes, and which\n"
    "                      providers refused it, on stderr\n"
    "      --help          this text\n"
    "      --version       print the version";

static const char usage_audio[] =
    "usage: mi-route-audio [-v] [-r routing.json] < requests.ndjson\n"
    "  -r, --routing FILE  routing table (default $MI_ROUTING_FILE, else\n"
    "                      routing.json in the share directory)\n"
    "  -v, --verbose       say where each request goes on stderr\n"
    "      --help          this text\n"
    "      --version       print the version";

static const char *const sfx_types[] = {
	"click", "spin", "flip", "scratch", "match", "win", "lose",
	"countdown", "reveal", "confetti", NULL
};
static const char *const genres[] = {
	"electronic", "orchestral", "rock", "jazz", "ambient", "pop",
	"hip-hop", NULL
};

static const char *const media_types[] = {
	"audio_sfx", "audio_bgm", "video", "model_3d", "image", "texture",
	"environment_map", NULL
};

/* Parameters a request may carry at its top level instead of in params. */
static const char *const param_keys[] = {
	"duration_sec", "sfx_type", "genre", "instrumental", NULL
};

#define SFX_MIN 0.5
#define SFX_MAX 5.0
#define BGM_MIN 30.0
#define BGM_MAX 120.0

struct ctx {
	jv routes;		/* the routing table: media_type -> route */
	int failed;
	int audio;		/* mi-route-audio: audio requests only */
};

static int
one_of(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

static void
join(char *out, size_t outsz, const char *const *list)
{
	size_t n = 0;

	out[0] = '\0';
	for (; *list && n < outsz; list++)
		n += (size_t)snprintf(out + n, outsz - n, "%s%s",
		    n ? ", " : "", *list);
}

/* True when v (borrowed) is an array of non-empty strings. */
static int
string_array(jv v)
{
	int i, n;

	if (jv_get_kind(v) != JV_KIND_ARRAY)
		return 0;
	n = jv_array_length(jv_copy(v));
	for (i = 0; i < n; i++) {
		jv s = jv_array_get(jv_copy(v), i);
		int ok = jv_get_kind(s) == JV_KIND_STRING &&
		    jv_string_length_bytes(jv_copy(s)) > 0;

		jv_free(s);
		if (!ok)
			return 0;
	}
	return 1;
}

/* Checks one route; exits 78 when it is unusable. */
static void
check_route(jv t, const char *file, const char *k, int required)
{
	jv r = jv_object_get(jv_copy(t), jv_string(k));
	jv p, f;

	if (!required && !jv_is_valid(r)) {
		jv_free(r);
		return;
	}
	p = jv_get_kind(r) == JV_KIND_OBJECT ?
	    jv_object_get(jv_copy(r), jv_string("provider_id")) : jv_null();
	f = jv_get_kind(r) == JV_KIND_OBJECT ?
	    jv_object_get(jv_copy(r), jv_string("fallback")) : jv_array();
	if (jv_get_kind(p) != JV_KIND_STRING ||
	    jv_string_length_bytes(jv_copy(p)) == 0)
		mi_die(EX_CONFIG, "routing table '%s': '%s' needs a"
		    " provider_id", file, k);
	if (jv_is_valid(f) && jv_get_kind(f) != JV_KIND_NULL &&
	    !string_array(f))
		mi_die(EX_CONFIG, "routing table '%s': '%s' fallback"
		    " is not an array of provider ids", file, k);
	jv_free(r);
	jv_free(p);
	jv_free(f);
}

/* Loads and checks the routing table; exits 78 when it is unusable.
 * The audio routes must be there; the others are checked when given. */
static jv
load_routes(const char *file)
{
	char path[4096];
	const char *const *k;
	jv all, t;

	if (file == NULL)
		file = getenv("MI_ROUTING_FILE");
	if (file == NULL || *file == '\0') {
		if (mi_share_path("routing.json", path, sizeof(path)) == -1)
			mi_die(EX_CONFIG, "share directory path too long");
		file = path;
	}
	all = jv_load_file(file, 0);
	if (!jv_is_valid(all)) {
		jv msg = jv_invalid_get_msg(all);

		mi_die(EX_CONFIG, "unable to load routing table '%s': %s", file,
		    jv_get_kind(msg) == JV_KIND_STRING ?
		    jv_string_value(msg) : "unreadable");
	}
	if (jv_array_length(jv_copy(all)) != 1)
		mi_die(EX_CONFIG, "routing table '%s': want one JSON object",
		    file);
	t = jv_array_get(all, 0);
	if (jv_get_kind(t) != JV_KIND_OBJECT)
		mi_die(EX_CONFIG, "routing table '%s': want one JSON object",
		    file);
	for (k = media_types; *k; k++)
		check_route(t, file, *k, strncmp(*k, "audio_", 6) == 0);
	return t;
}

/*
 * The request's media type from media_type or audio_type; NULL with msg
 * filled when it is not an audio request.
 */
static const char *
audio_kind(jv rec, char *msg, size_t msgsz)
{
	struct mi_err err = MI_ERR_INIT;
	const char *mt = NULL, *at = NULL, *kind = NULL;

	if (mi_json_str(rec, "media_type", &mt, 0, &err) == -1 ||
	    mi_json_str(rec, "audio_type", &at, 0, &err) == -1) {
		snprintf(msg, msgsz, "%s", err.msg);
		return NULL;
	}
	if (at != NULL) {
		if (strcmp(at, "sfx") == 0)
			kind = "audio_sfx";
		else if (strcmp(at, "bgm") == 0)
			kind = "audio_bgm";
		else {
			snprintf(msg, msgsz, "audio_type '%.64s' is not one of"
			    " sfx, bgm", at);
			return NULL;
		}
	}
	if (mt != NULL) {
		if (strcmp(mt, "audio_sfx") != 0 &&
		    strcmp(mt, "audio_bgm") != 0) {
			snprintf(msg, msgsz, "media_type '%.64s' is not an"
			    " audio type (audio_sfx, audio_bgm)", mt);
			return NULL;
		}
		if (kind != NULL && strcmp(kind, mt) != 0) {
			snprintf(msg, msgsz, "media_type '%s' disagrees with"
			    " audio_type '%s'", mt, at);
			return NULL;
		}
		kind = strcmp(mt, "audio_sfx") == 0 ? "audio_sfx" :
		    "audio_bgm";
	}
	if (kind == NULL)
		snprintf(msg, msgsz, "missing key 'media_type' (audio_sfx or"
		    " audio_bgm) or 'audio_type' (sfx or bgm)");
	return kind;
}

/* Moves top-level parameters into params; returns the new record. */
static jv
gather_params(jv rec, char *msg, size_t msgsz)
{
	const char *const *k;
	jv params = jv_object_get(jv_copy(rec), jv_string("params"));

	if (jv_get_kind(params) == JV_KIND_NULL ||
	    !jv_is_valid(params)) {
		jv_free(params);
		params = jv_object();
	}
	if (jv_get_kind(params) != JV_KIND_OBJECT) {
		jv_free(params);
		snprintf(msg, msgsz, "params is not an object");
		return jv_invalid_with_msg(rec);
	}
	for (k = param_keys; *k; k++) {
		jv top = jv_object_get(jv_copy(rec), jv_string(*k));
		jv in = jv_object_get(jv_copy(params), jv_string(*k));

		if (jv_is_valid(top) && jv_get_kind(top) != JV_KIND_NULL &&
		    !jv_is_valid(in)) {
			params = jv_object_set(params, jv_string(*k),
			    jv_copy(top));
			rec = jv_object_delete(rec, jv_string(*k));
		}
		jv_free(top);
		jv_free(in);
	}
	return jv_object_set(rec, jv_string("params"), params);
}

/* Checks params.duration_sec against [lo, hi]. */
static int
check_duration(jv params, const char *what, double lo, double hi, char *msg,
    size_t msgsz)
{
	jv d = jv_object_get(jv_copy(params), jv_string("duration_sec"));
	int ok = 0;

	if (!jv_is_valid(d) || jv_get_kind(d) == JV_KIND_NULL)
		snprintf(msg, msgsz, "missing key 'params.duration_sec'"
		    " (%s: %g to %g seconds)", what, lo, hi);
	else if (jv_get_kind(d) != JV_KIND_NUMBER)
		snprintf(msg, msgsz, "params.duration_sec is not a number");
	else if (jv_number_value(d) < lo || jv_number_value(d) > hi)
		snprintf(msg, msgsz, "params.duration_sec %g is out of range"
		    " for %s: %g to %g seconds", jv_number_value(d), what, lo,
		    hi);
	else
		ok = 1;
	jv_free(d);
	return ok ? 0 : -1;
}

/* Checks params.key is a string of list. */
static int
check_enum(jv params, const char *key, const char *const *list, char *msg,
    size_t msgsz)
{
	jv v = jv_object_get(jv_copy(params), jv_string(key));
	char all[256];
	int ok = 0;

	join(all, sizeof(all), list);
	if (!jv_is_valid(v) || jv_get_kind(v) == JV_KIND_NULL)
		snprintf(msg, msgsz, "missing key 'params.%s' (one of %s)",
		    key, all);
	else if (jv_get_kind(v) != JV_KIND_STRING)
		snprintf(msg, msgsz, "params.%s is not a string (one of %s)",
		    key, all);
	else if (!one_of(jv_string_value(v), list))
		snprintf(msg, msgsz, "params.%s '%.64s' is not one of %s", key,
		    jv_string_value(v), all);
	else
		ok = 1;
	jv_free(v);
	return ok ? 0 : -1;
}

static int
validate(const char *kind, jv params, char *msg, size_t msgsz)
{
	jv inst;
	int r;

	if (strcmp(kind, "audio_sfx") == 0)
		return check_duration(params, "audio_sfx", SFX_MIN, SFX_MAX,
		    msg, msgsz) == -1 ||
		    check_enum(params, "sfx_type", sfx_types, msg, msgsz) == -1 ?
		    -1 : 0;
	if (check_duration(params, "audio_bgm", BGM_MIN, BGM_MAX, msg,
	    msgsz) == -1 ||
	    check_enum(params, "genre", genres, msg, msgsz) == -1)
		return -1;
	/* instrumental travels as given; it only has to be a boolean. */
	inst = jv_object_get(jv_copy(params), jv_string("instrumental"));
	r = jv_is_valid(inst) && jv_get_kind(inst) != JV_KIND_NULL &&
	    jv_get_kind(inst) != JV_KIND_TRUE &&
	    jv_get_kind(inst) != JV_KIND_FALSE;
	jv_free(inst);
	if (r) {
		snprintf(msg, msgsz, "params.instrumental is not a boolean");
		return -1;
	}
	return 0;
}

/*
 * Fills provider_id and fallback from the route; a request's own choice
 * wins.  The chosen provider is never its own fallback.
 */
static jv
route(jv rec, jv rt, char *msg, size_t msgsz)
{
	jv prov = jv_object_get(jv_copy(rec), jv_string("provider_id"));
	jv fb = jv_object_get(jv_copy(rec), jv_string("fallback"));
	jv out;
	int i, n;

	if (!jv_is_valid(prov) || jv_get_kind(prov) == JV_KIND_NULL) {
		jv_free(prov);
		prov = jv_object_get(jv_copy(rt), jv_string("provider_id"));
	} else if (jv_get_kind(prov) != JV_KIND_STRING ||
	    jv_string_length_bytes(jv_copy(prov)) == 0) {
		snprintf(msg, msgsz, "provider_id is not a provider id");
		goto bad;
	}
	if (!jv_is_valid(fb) || jv_get_kind(fb) == JV_KIND_NULL) {
		jv_free(fb);
		fb = jv_object_get(jv_copy(rt), jv_string("fallback"));
		if (!jv_is_valid(fb) || jv_get_kind(fb) == JV_KIND_NULL) {
			jv_free(fb);
			fb = jv_array();
		}
	} else if (!string_array(fb)) {
		snprintf(msg, msgsz, "fallback is not an array of provider"
		    " ids");
		goto bad;
	}
	out = jv_array();
	n = jv_array_length(jv_copy(fb));
	for (i = 0; i < n; i++) {
		jv p = jv_array_get(jv_copy(fb), i);

		if (strcmp(jv_string_value(p), jv_string_value(prov)) == 0)
			jv_free(p);
		else
			out = jv_array_append(out, p);
	}
	jv_free(fb);
	rec = jv_object_set(rec, jv_string("provider_id"), prov);
	return jv_object_set(rec, jv_string("fallback"), out);
bad:
	jv_free(prov);
	jv_free(fb);
	return jv_invalid_with_msg(rec);
}

static void
emit_error(struct ctx *c, jv rec, const char *code, const char *msg)
{
	mi_warn("%s", msg);
	mi_json_write(stdout, mi_json_error(rec, code, msg, 0));
	c->failed = 1;
}

/*
 * Keeps the candidates (rec's provider_id, then its fallback) whose
 * definition accepts rec: a definition that does not make the media type
 * or whose validate gives messages is dropped, and why goes to why.  An
 * id without a definition is kept (mi-submit names the error).  Returns
 * the record with the first accepted as provider_id and the rest as
 * fallback, or jv_invalid() with msg when none accepts.
 */
static jv
accepting(jv rec, unsigned long nr, char *msg, size_t msgsz)
{
	jv prov = jv_object_get(jv_copy(rec), jv_string("provider_id"));
	jv cand = jv_array_append(jv_array(), prov), ok = jv_array();
	jv fb = jv_object_get(jv_copy(rec), jv_string("fallback"));
	const char *media = NULL;
	size_t used = 0;
	int i, n;

	if (jv_get_kind(fb) == JV_KIND_ARRAY)
		cand = jv_array_concat(cand, fb);
	else
		jv_free(fb);
	mi_json_str(rec, "media_type", &media, 0, NULL);
	msg[0] = '\0';
	n = jv_array_length(jv_copy(cand));
	for (i = 0; i < n; i++) {
		jv id = jv_array_get(jv_copy(cand), i), in, out;
		struct mi_err err = MI_ERR_INIT;
		struct mi_provider *p;
		char why[300] = "";

		if ((p = mi_provider_get(jv_string_value(id), &err)) == NULL) {
			if (err.code == EX_CONFIG)
				snprintf(why, sizeof(why), "%s", err.msg);
			else {
				ok = jv_array_append(ok, id);
				continue;
			}
		} else if (media && !mi_provider_supports(p, media))
			snprintf(why, sizeof(why), "does not make %s", media);
		else {
			in = jv_object_set(jv_object(), jv_string("request"),
			    jv_copy(rec));
			out = mi_provider_call(p, "validate", in, &err);
			if (!jv_is_valid(out))
				snprintf(why, sizeof(why), "%s", err.msg);
			else if (jv_get_kind(out) == JV_KIND_ARRAY &&
			    jv_array_length(jv_copy(out)) > 0) {
				int k, m = jv_array_length(jv_copy(out));
				size_t w = 0;

				for (k = 0; k < m && w < sizeof(why); k++) {
					jv s = jv_array_get(jv_copy(out), k);

					if (jv_get_kind(s) == JV_KIND_STRING)
						w += (size_t)snprintf(why + w,
						    sizeof(why) - w, "%s%s",
						    w ? "; " : "",
						    jv_string_value(s));
					jv_free(s);
				}
			}
			jv_free(out);
		}
		if (why[0] == '\0') {
			ok = jv_array_append(ok, id);
			continue;
		}
		mi_verbose("record %lu: skipping '%s': %s", nr,
		    jv_string_value(id), why);
		if (used < msgsz)
			used += (size_t)snprintf(msg + used, msgsz - used,
			    "%s%s: %s", used ? "; " : "", jv_string_value(id),
			    why);
		jv_free(id);
	}
	jv_free(cand);
	if (jv_array_length(jv_copy(ok)) == 0) {
		jv_free(ok);
		jv_free(rec);
		return jv_invalid();
	}
	rec = jv_object_set(rec, jv_string("provider_id"),
	    jv_array_get(jv_copy(ok), 0));
	n = jv_array_length(jv_copy(ok));
	return jv_object_set(rec, jv_string("fallback"),
	    jv_array_slice(ok, 1, n));
}

/* Validates (audio) and routes one request object (consumed). */
static void
route_one(struct ctx *c, jv rec, unsigned long nr)
{
	char msg[400], full[480], skipped[400];
	const char *kind = NULL;
	jv orig = jv_copy(rec), params, rt, prov;
	int named;

	prov = jv_object_get(jv_copy(rec), jv_string("provider_id"));
	named = jv_is_valid(prov) && jv_get_kind(prov) != JV_KIND_NULL;
	jv_free(prov);
	if (c->audio) {
		if ((kind = audio_kind(rec, msg, sizeof(msg))) == NULL)
			goto bad;
		rec = jv_object_set(rec, jv_string("media_type"),
		    jv_string(kind));
		rec = gather_params(rec, msg, sizeof(msg));
		if (!jv_is_valid(rec)) {
			rec = jv_invalid_get_msg(rec);
			goto bad;
		}
		params = jv_object_get(jv_copy(rec), jv_string("params"));
		if (validate(kind, params, msg, sizeof(msg)) == -1) {
			jv_free(params);
			goto bad;
		}
		jv_free(params);
	} else {
		struct mi_err err = MI_ERR_INIT;

		if (mi_json_str(rec, "media_type", &kind, 1, &err) == -1) {
			snprintf(msg, sizeof(msg), "%s", err.msg);
			goto bad;
		}
		if (!one_of(kind, media_types)) {
			snprintf(msg, sizeof(msg), "media_type '%.64s' is not "
			    "one of video, audio_sfx, audio_bgm, model_3d, "
			    "image, texture, environment_map", kind);
			goto bad;
		}
		/* A request that names its provider is not routed. */
		if (named) {
			jv_free(orig);
			mi_json_write(stdout, rec);
			return;
		}
	}
	rt = jv_object_get(jv_copy(c->routes), jv_string(kind));
	if (jv_get_kind(rt) != JV_KIND_OBJECT) {
		jv_free(rt);
		snprintf(msg, sizeof(msg), "the routing table has no route "
		    "for %s", kind);
		goto bad;
	}
	rec = route(rec, rt, msg, sizeof(msg));
	jv_free(rt);
	if (!jv_is_valid(rec)) {
		rec = jv_invalid_get_msg(rec);
		goto bad;
	}
	if (!named) {
		rec = accepting(rec, nr, skipped, sizeof(skipped));
		if (!jv_is_valid(rec)) {
			snprintf(msg, sizeof(msg), "no provider of the %s route "
			    "accepts the request: %s", kind, skipped);
			goto bad;
		}
	}
	if (mi_verbosity) {
		jv p = jv_object_get(jv_copy(rec), jv_string("provider_id"));

		mi_verbose("record %lu: %s to '%s'", nr, kind,
		    jv_string_value(p));
		jv_free(p);
	}
	jv_free(orig);
	mi_json_write(stdout, rec);
	return;
bad:
	/* The error record is the request as it came, not half-routed. */
	jv_free(rec);
	snprintf(full, sizeof(full), "record %lu: %s", nr, msg);
	emit_error(c, orig, "VALIDATION_ERROR", full);
}

static void
records(struct ctx *c)
{
	struct mi_json_in *in = mi_json_in_new(stdin);
	struct mi_err err = MI_ERR_INIT;
	jv rec;
	int r;

	if (in == NULL)
		mi_die(EX_OSERR, "out of memory");
	while ((r = mi_json_next(in, &rec, &err)) != 0) {
		if (r == -2)
			mi_die_err(&err);
		if (r == -1) {
			emit_error(c, jv_object(), "INVALID_JSON", err.msg);
			continue;
		}
		if (mi_json_has_error(rec)) {
			mi_json_write(stdout, rec);
			continue;
		}
		if (jv_get_kind(rec) != JV_KIND_OBJECT) {
			char msg[64];

			snprintf(msg, sizeof(msg), "record %lu: not an object",
			    mi_json_count(in));
			emit_error(c, rec, "VALIDATION_ERROR", msg);
			continue;
		}
		route_one(c, rec, mi_json_count(in));
	}
	mi_json_in_free(in);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "audio", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ "routing", required_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *file = NULL, *u = usage;
	struct ctx c;
	int ch;

	mi_setprogname(argv[0]);
	memset(&c, 0, sizeof(c));
	if (strcmp(mi_getprogname(), "mi-route-audio") == 0) {
		c.audio = 1;
		u = usage_audio;
	}
	opterr = 0;
	while ((ch = getopt_long(argc, argv, c.audio ? "hr:v" : "ahr:v",
	    opts, NULL)) != -1) {
		switch (ch) {
		case 'a': c.audio = 1; break;
		case 'h': mi_usage(u, 0);
		case 'r': file = optarg; break;
		case 'v': mi_verbosity++; break;
		case 'V': mi_version();
		default: mi_bad_option(u, argv[optind - 1]);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n",
		    mi_getprogname(), argv[optind]);
		mi_usage(u, EX_USAGE);
	}
	c.routes = load_routes(file);
	records(&c);
	jv_free(c.routes);
	mi_provider_free_all();
	mi_close_stdout();
	return c.failed ? 1 : 0;
}
