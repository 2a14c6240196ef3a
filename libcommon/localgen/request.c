/*
 * localgen/request.c - the generic entry of the local generators (a media
 * type and a SPEC.md params object): reads and checks the params, then
 * calls the generator of the media type.  The generators know nothing of
 * requests; only this file knows all of them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "localgen/blocks.h"
#include "banned.h"

static const struct {
	const char *type, *ext, *mime;
} kinds[] = {
	{ "audio_bgm", "wav", "audio/wav" },
	{ "audio_sfx", "wav", "audio/wav" },
	{ "environment_map", "hdr", "image/vnd.radiance" },
	{ "image", "png", "image/png" },
	{ "model_3d", "glb", "model/gltf-binary" },
	{ "texture", "png", "image/png" },
	{ "video", "mp4", "video/mp4" },
};

static int
kind_index(const char *media_type)
{
	size_t i;

	for (i = 0; media_type && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i].type, media_type) == 0)
			return (int)i;
	return -1;
}

const char *
mi_gen_ext(const char *media_type)
{
	int i = kind_index(media_type);

	return i < 0 ? NULL : kinds[i].ext;
}

const char *
mi_gen_mime(const char *media_type)
{
	int i = kind_index(media_type);

	return i < 0 ? NULL : kinds[i].mime;
}

/*
 * Typed parameter getters.  They borrow params (an object or null) and
 * return 1 when the key is set, 0 when it is absent or null, -1 on a value
 * of the wrong kind.
 */
static int
param(jv params, const char *key, jv_kind want, jv *out, struct mi_err *err)
{
	jv v;
	jv_kind k;

	if (jv_get_kind(params) != JV_KIND_OBJECT)
		return 0;
	v = jv_object_get(jv_copy(params), jv_string(key));
	k = jv_get_kind(v);
	if (!jv_is_valid(v) || k == JV_KIND_NULL) {
		jv_free(v);
		return 0;
	}
	if (k != want && !(want == JV_KIND_TRUE && k == JV_KIND_FALSE)) {
		jv_free(v);
		return mi_err_set(err, EX_DATAERR, "params.%s is not a%s", key,
		    want == JV_KIND_NUMBER ? " number" : want == JV_KIND_STRING ?
		    " string" : want == JV_KIND_ARRAY ? "n array" : " boolean");
	}
	*out = v;
	return 1;
}

static int
param_num(jv params, const char *key, double *d, struct mi_err *err)
{
	jv v;
	int r = param(params, key, JV_KIND_NUMBER, &v, err);

	if (r == 1) {
		*d = jv_number_value(v);
		jv_free(v);
	}
	return r;
}

static int
param_uint(jv params, const char *key, unsigned *u, struct mi_err *err)
{
	double d;
	int r = param_num(params, key, &d, err);

	if (r == 1) {
		if (d < 0 || d > 1e6 || d != floor(d))
			return mi_err_set(err, EX_DATAERR,
			    "params.%s is not a whole number", key);
		*u = (unsigned)d;
	}
	return r;
}

static int
param_bool(jv params, const char *key, int *b, struct mi_err *err)
{
	jv v;
	int r = param(params, key, JV_KIND_TRUE, &v, err);

	if (r == 1) {
		*b = jv_get_kind(v) == JV_KIND_TRUE;
		jv_free(v);
	}
	return r;
}

/* Copies a string param into dst (size n). */
static int
param_str(jv params, const char *key, char *dst, size_t n,
    struct mi_err *err)
{
	jv v;
	int r = param(params, key, JV_KIND_STRING, &v, err);

	if (r == 1) {
		if ((size_t)snprintf(dst, n, "%s", jv_string_value(v)) >= n) {
			jv_free(v);
			return mi_err_set(err, EX_DATAERR, "params.%s too long",
			    key);
		}
		jv_free(v);
	}
	return r;
}

/* The first of names that the prompt mentions, or NULL. */
static const char *
prompt_pick(const char *prompt, const char *const *names)
{
	for (; *names; names++)
		if (mi_gen_has_word(prompt, *names))
			return *names;
	return NULL;
}

/*
 * A reference image as a file name: a stored asset's uri
 * (".../api/assets/{tenant}/{run}/{type}/{file}") lives under
 * $ASSET_STORAGE_DIR; anything else is a path ("file://" allowed).
 */
static int
resolve_ref(const char *ref, char *dst, size_t n, struct mi_err *err)
{
	const char *p = strstr(ref, "/api/assets/"), *base;

	if (p != NULL) {
		p += strlen("/api/assets/");
		if (strstr(p, "..") != NULL || strchr(p, '?') != NULL)
			return mi_err_set(err, EX_DATAERR,
			    "params.reference_image: bad asset uri '%s'", ref);
		base = getenv("ASSET_STORAGE_DIR");
		if (base == NULL || *base == '\0')
			return mi_err_set(err, EX_DATAERR,
			    "params.reference_image is an asset uri and "
			    "ASSET_STORAGE_DIR is not set");
		if ((size_t)snprintf(dst, n, "%s/%s", base, p) >= n)
			return mi_err_set(err, EX_DATAERR,
			    "params.reference_image too long");
	} else {
		if (strncmp(ref, "file://", 7) == 0)
			ref += 7;
		if ((size_t)snprintf(dst, n, "%s", ref) >= n)
			return mi_err_set(err, EX_DATAERR,
			    "params.reference_image too long");
	}
	if (access(dst, R_OK) == -1)
		return mi_err_set_errno(err, EX_DATAERR,
		    "params.reference_image '%s' unreadable", ref);
	return 0;
}

static int
req_image(const char *prompt, jv params, int texture, const char *path,
    struct mi_err *err)
{
	unsigned w = 1024, h = 1024;
	int seamless = texture;

	if (param_uint(params, "width", &w, err) < 0 ||
	    param_uint(params, "height", &h, err) < 0 ||
	    param_bool(params, "seamless", &seamless, err) < 0)
		return -1;
	if (texture && ((w & (w - 1)) != 0 || (h & (h - 1)) != 0))
		return mi_err_set(err, EX_DATAERR,
		    "texture size %ux%u is not a power of two", w, h);
	return mi_gen_image(prompt, w, h, seamless, path, err);
}

static int
req_hdr(const char *prompt, jv params, const char *path, struct mi_err *err)
{
	unsigned w = 2048;
	char fmt[16] = "hdr";

	if (param_uint(params, "width", &w, err) < 0 ||
	    param_str(params, "format", fmt, sizeof(fmt), err) < 0)
		return -1;
	if (strcmp(fmt, "hdr") != 0)
		return mi_err_set(err, EX_DATAERR,
		    "params.format '%s' not supported (local: hdr)", fmt);
	return mi_gen_hdr(prompt, w, path, err);
}

static int
req_glb(const char *prompt, jv params, const char *path, struct mi_err *err)
{
	unsigned max = 50000;
	char shape[32] = "";
	int pbr = 1;

	if (param_uint(params, "max_triangles", &max, err) < 0 ||
	    param_bool(params, "pbr", &pbr, err) < 0 ||
	    param_str(params, "shape", shape, sizeof(shape), err) < 0)
		return -1;
	if (max > 50000)
		return mi_err_set(err, EX_DATAERR,
		    "params.max_triangles %u above 50000", max);
	return mi_gen_model(prompt, *shape ? shape : NULL, max, pbr, path,
	    err);
}

static int
req_sfx(const char *prompt, jv params, const char *path, struct mi_err *err)
{
	static const char *const types[] = { "click", "spin", "flip",
		"scratch", "match", "win", "lose", "countdown", "reveal",
		"confetti", NULL };
	char type[32] = "";
	const char *t;
	double secs = 0;

	if (param_str(params, "sfx_type", type, sizeof(type), err) < 0 ||
	    param_num(params, "duration_sec", &secs, err) < 0)
		return -1;
	if (*type == '\0') {
		t = prompt_pick(prompt, types);
		t = t ? t : "click";
	} else
		t = type;
	return mi_gen_sfx(prompt, t, secs > 0 ? secs : mi_gen_sfx_default(t),
	    path, err);
}

static int
req_bgm(const char *prompt, jv params, const char *path, struct mi_err *err)
{
	static const char *const genres[] = { "electronic", "orchestral",
		"rock", "jazz", "ambient", "pop", "hip-hop", NULL };
	char genre[32] = "";
	const char *g;
	double secs = 60;

	if (param_str(params, "genre", genre, sizeof(genre), err) < 0 ||
	    param_num(params, "duration_sec", &secs, err) < 0)
		return -1;
	if (*genre == '\0') {
		g = prompt_pick(prompt, genres);
		g = g ? g : "electronic";
	} else
		g = genre;
	return mi_gen_bgm(prompt, g, secs, path, err);
}

/* Up to 8 scenes of params.scenes, with their strings copied. */
struct scenes {
	struct mi_gen_scene sc[8];
	char image[8][4096], caption[8][512];
	unsigned n;
};

static int
parse_scenes(jv list, double secs, struct scenes *out, struct mi_err *err)
{
	double given = 0;
	unsigned k, unset = 0;
	int len = jv_array_length(jv_copy(list));

	if (len < 1 || len > 8)
		return mi_err_set(err, EX_DATAERR,
		    "params.scenes has %d scenes, not 1..8", len);
	out->n = (unsigned)len;
	for (k = 0; k < out->n; k++) {
		jv s = jv_array_get(jv_copy(list), (int)k);
		char ref[4096] = "", key[32];
		double d = 0;
		int r;

		if (jv_get_kind(s) != JV_KIND_OBJECT) {
			jv_free(s);
			return mi_err_set(err, EX_DATAERR,
			    "params.scenes[%u] is not an object", k);
		}
		out->caption[k][0] = '\0';
		r = param_str(s, "image", ref, sizeof(ref), err);
		if (r == 0)
			r = param_str(s, "reference_image", ref, sizeof(ref),
			    err);
		if (r >= 0)
			r = param_str(s, "caption", out->caption[k],
			    sizeof(out->caption[k]), err);
		if (r >= 0 && (r = param_num(s, "duration", &d, err)) == 0)
			r = param_num(s, "duration_sec", &d, err);
		jv_free(s);
		snprintf(key, sizeof(key), "params.scenes[%u]", k);
		if (r < 0)
			return mi_err_prefix(err, "%s", key);
		if (*ref && resolve_ref(ref, out->image[k],
		    sizeof(out->image[k]), err) == -1)
			return mi_err_prefix(err, "%s", key);
		out->sc[k].image = *ref ? out->image[k] : NULL;
		out->sc[k].caption = out->caption[k][0] ? out->caption[k] : NULL;
		out->sc[k].seconds = d;
		if (d > 0)
			given += d;
		else
			unset++;
	}
	/* Scenes without a duration share what duration_sec leaves. */
	for (k = 0; k < out->n; k++)
		if (out->sc[k].seconds <= 0)
			out->sc[k].seconds = (secs - given) / unset;
	return 0;
}

static int
req_video(const char *prompt, jv params, const struct mi_gen_progress *prog,
    const char *path, struct mi_err *err)
{
	static const char *const genres[] = { "electronic", "orchestral",
		"rock", "jazz", "ambient", "pop", "hip-hop", NULL };
	char res[16] = "720p", aspect[16] = "16:9", ref[4096] = "";
	char genre[32] = "";
	const char *music = NULL;
	struct scenes *sc;
	double secs = 8;
	unsigned p, w, h;
	int loop = 0, rc, want = 0;
	jv list = jv_invalid();

	if (param_num(params, "duration_sec", &secs, err) < 0 ||
	    param_str(params, "resolution", res, sizeof(res), err) < 0 ||
	    param_str(params, "aspect_ratio", aspect, sizeof(aspect), err) < 0 ||
	    param_bool(params, "loop", &loop, err) < 0 ||
	    param_str(params, "reference_image", ref, sizeof(ref), err) < 0)
		return -1;
	/* music: true (a genre the prompt names) or a genre. */
	if ((rc = param(params, "music", JV_KIND_STRING, &list, NULL)) == 1) {
		snprintf(genre, sizeof(genre), "%s", jv_string_value(list));
		jv_free(list);
		list = jv_invalid();
		for (p = 0; genres[p] && strcmp(genres[p], genre) != 0; p++)
			;
		if (genres[p] == NULL)
			return mi_err_set(err, EX_DATAERR,
			    "params.music '%s' not true, false or one of "
			    MI_GEN_GENRES, genre);
		music = genre;
	} else if (param_bool(params, "music", &want, err) < 0)
		return mi_err_set(err, EX_DATAERR,
		    "params.music is not a boolean or a genre");
	else if (want) {
		music = prompt_pick(prompt, genres);
		music = music ? music : "electronic";
	}
	jv_free(list);
	if (strcmp(res, "480p") == 0)
		p = 480;
	else if (strcmp(res, "720p") == 0)
		p = 720;
	else if (strcmp(res, "1080p") == 0)
		p = 1080;
	else
		return mi_err_set(err, EX_DATAERR,
		    "params.resolution '%s' not one of 480p, 720p, 1080p", res);
	/* The resolution names the short side, as video services use it. */
	if (strcmp(aspect, "16:9") == 0) {
		h = p;
		w = (p * 16 / 9 + 1) & ~1u;
	} else if (strcmp(aspect, "9:16") == 0) {
		w = p;
		h = (p * 16 / 9 + 1) & ~1u;
	} else if (strcmp(aspect, "1:1") == 0)
		w = h = p;
	else
		return mi_err_set(err, EX_DATAERR,
		    "params.aspect_ratio '%s' not one of 16:9, 9:16, 1:1",
		    aspect);
	if ((sc = calloc(1, sizeof(*sc))) == NULL)
		return mi_err_set(err, EX_SOFTWARE, "out of memory");
	if ((rc = param(params, "scenes", JV_KIND_ARRAY, &list, err)) == 1) {
		rc = parse_scenes(list, secs, sc, err);
		jv_free(list);
	} else if (rc == 0) {
		/* One scene: the reference image, or a generated picture. */
		sc->n = 1;
		sc->sc[0].seconds = secs;
		rc = 0;
		if (*ref && resolve_ref(ref, sc->image[0], sizeof(sc->image[0]),
		    err) == -1)
			rc = -1;
		else if (*ref)
			sc->sc[0].image = sc->image[0];
	}
	if (rc == 0)
		rc = mi_gen_video_scenes(prompt, sc->sc, sc->n, w, h, loop,
		    music, prog, path, err);
	free(sc);
	return rc;
}

int
mi_gen_request(const char *media_type, const char *prompt, jv params,
    const struct mi_gen_progress *prog, const char *path,
    struct mi_err *err)
{
	jv_kind k = jv_get_kind(params);
	int rc;

	if (prompt == NULL)
		prompt = "";
	if (k != JV_KIND_OBJECT && k != JV_KIND_NULL &&
	    k != JV_KIND_INVALID) {
		jv_free(params);
		return mi_err_set(err, EX_DATAERR, "params is not an object");
	}
	if (media_type == NULL)
		rc = mi_err_set(err, EX_DATAERR, "missing media_type");
	else if (strcmp(media_type, "image") == 0)
		rc = req_image(prompt, params, 0, path, err);
	else if (strcmp(media_type, "texture") == 0)
		rc = req_image(prompt, params, 1, path, err);
	else if (strcmp(media_type, "environment_map") == 0)
		rc = req_hdr(prompt, params, path, err);
	else if (strcmp(media_type, "model_3d") == 0)
		rc = req_glb(prompt, params, path, err);
	else if (strcmp(media_type, "audio_sfx") == 0)
		rc = req_sfx(prompt, params, path, err);
	else if (strcmp(media_type, "audio_bgm") == 0)
		rc = req_bgm(prompt, params, path, err);
	else if (strcmp(media_type, "video") == 0)
		rc = req_video(prompt, params, prog, path, err);
	else
		rc = mi_err_set(err, EX_DATAERR, "unknown media_type '%s'",
		    media_type);
	jv_free(params);
	return rc;
}
