/*
 * probe_check.c - a result's facts against its request, with the
 * tolerances a user expects: a size exact or larger, a duration within
 * 10 % or 0.5 s (whichever is more), an aspect ratio within 3 %, at most
 * max_triangles, and the PBR maps (base colour, metallic-roughness,
 * normal) on every material when pbr is true (the default for models).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "probe.h"
#include "banned.h"

#define ASPECT_TOL 0.03

static jv warn(jv list, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static jv
warn(jv list, const char *code, const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	jv w = jv_object();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	w = jv_object_set(w, jv_string("code"), jv_string(code));
	w = jv_object_set(w, jv_string("message"), jv_string(msg));
	return jv_array_append(list, w);
}

/* o[key] as a number, or -1. */
static double
n(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));
	double d = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : -1;

	jv_free(v);
	return d;
}

static jv
check_duration(jv w, jv media, jv params)
{
	double want = n(params, "duration_sec"), got = n(media, "duration_sec"),
	       tol;

	if (want <= 0 || got < 0)
		return w;
	tol = fmax(0.1 * want, 0.5);
	if (fabs(got - want) > tol)
		w = warn(w, "DURATION_MISMATCH",
		    "asked for %g s, got %.3g s "
		    "(%+.0f %%; allowed ±%.3g s)",
		    want, got, (got - want) / want * 100, tol);
	return w;
}

/* "16:9" -> 1.777...; 0 when not a ratio. */
static double
ratio_of(const char *s)
{
	char *end;
	double a = strtod(s, &end), b;

	if (end == s || *end != ':')
		return 0;
	b = strtod(end + 1, NULL);
	return a > 0 && b > 0 ? a / b : 0;
}

static jv
check_aspect(jv w, double want, double gw, double gh, const char *asked)
{
	double got;

	if (want <= 0 || gw <= 0 || gh <= 0)
		return w;
	got = gw / gh;
	if (fabs(got - want) / want > ASPECT_TOL)
		w = warn(w, "ASPECT_MISMATCH",
		    "asked for %s, got %gx%g "
		    "(%.3g:1)",
		    asked, gw, gh, got);
	return w;
}

static jv
check_image(jv w, jv media, jv params, int envmap)
{
	double ww = n(params, "width"), wh = n(params, "height");
	double gw = n(media, "width"), gh = n(media, "height");
	char asked[64];

	if (gw < 0 || gh < 0)
		return w;
	if (envmap && ww > 0)
		wh = ww / 2;
	if ((ww > 0 && gw < ww) || (wh > 0 && gh < wh)) {
		if (ww > 0 && wh > 0)
			snprintf(asked, sizeof(asked), "%gx%g", ww, wh);
		else if (ww > 0)
			snprintf(asked, sizeof(asked), "width %g", ww);
		else
			snprintf(asked, sizeof(asked), "height %g", wh);
		w = warn(w, "SIZE_MISMATCH", "asked for %s, got %gx%g", asked,
		    gw, gh);
	}
	if (ww > 0 && wh > 0) {
		snprintf(asked, sizeof(asked), "%gx%g", ww, wh);
		w = check_aspect(w, ww / wh, gw, gh, asked);
	} else if (envmap)
		w = check_aspect(w, 2, gw, gh, "2:1 (equirectangular)");
	return w;
}

static jv
check_video(jv w, jv media, jv params)
{
	jv ar = jv_object_get(jv_copy(params), jv_string("aspect_ratio"));
	jv res = jv_object_get(jv_copy(params), jv_string("resolution"));
	double gw = n(media, "width"), gh = n(media, "height");

	w = check_duration(w, media, params);
	if (jv_get_kind(ar) == JV_KIND_STRING)
		w = check_aspect(w, ratio_of(jv_string_value(ar)), gw, gh,
		    jv_string_value(ar));
	if (jv_get_kind(res) == JV_KIND_STRING && gw > 0 && gh > 0) {
		const char *r = jv_string_value(res);
		double lines = strcmp(r, "4k") == 0 ? 2160 : strtod(r, NULL);

		if (lines > 0 && fmin(gw, gh) < lines)
			w = warn(w, "SIZE_MISMATCH", "asked for %s, got %gx%g",
			    r, gw, gh);
	}
	jv_free(ar);
	jv_free(res);
	return w;
}

static jv
check_model(jv w, jv media, jv params)
{
	double max = n(params, "max_triangles"), tris = n(media, "triangles");
	jv pbr = jv_object_get(jv_copy(params), jv_string("pbr"));
	jv have = jv_object_get(jv_copy(media), jv_string("pbr"));
	static const char *const need[3] = { "base_color", "metallic_roughness",
		"normal" };
	char missing[120] = "";
	int i;

	if (max > 0 && tris > max)
		w = warn(w, "TRIANGLES_OVER_BUDGET",
		    "%.0f triangles, over "
		    "max_triangles %.0f",
		    tris, max);
	if (jv_get_kind(pbr) != JV_KIND_FALSE &&
	    jv_get_kind(have) == JV_KIND_OBJECT) {
		for (i = 0; i < 3; i++) {
			jv v = jv_object_get(jv_copy(have), jv_string(need[i]));

			if (jv_get_kind(v) != JV_KIND_TRUE) {
				size_t k = strlen(missing);

				snprintf(missing + k, sizeof(missing) - k,
				    "%s%s", k ? ", " : "", need[i]);
			}
			jv_free(v);
		}
		if (missing[0])
			w = warn(w, "PBR_MISSING",
			    "pbr asked, but %s %s "
			    "missing on %s",
			    missing,
			    strchr(missing, ',') ? "maps are" : "map is",
			    n(media, "materials") > 1 ? "some materials"
				: n(media, "materials") == 1
				? "the material"
				: "the model (no material)");
	}
	jv_free(pbr);
	jv_free(have);
	return w;
}

jv
mi_probe_check(jv media, jv request)
{
	jv w = jv_array(), params;
	const char *mt = NULL;

	if (jv_get_kind(media) != JV_KIND_OBJECT ||
	    jv_get_kind(request) != JV_KIND_OBJECT)
		return w;
	mi_json_str(request, "media_type", &mt, 0, NULL);
	params = jv_object_get(jv_copy(request), jv_string("params"));
	if (jv_get_kind(params) != JV_KIND_OBJECT) {
		jv_free(params);
		params = jv_object();
	}
	if (mt == NULL)
		;
	else if (strcmp(mt, "image") == 0 || strcmp(mt, "texture") == 0)
		w = check_image(w, media, params, 0);
	else if (strcmp(mt, "environment_map") == 0)
		w = check_image(w, media, params, 1);
	else if (strcmp(mt, "video") == 0)
		w = check_video(w, media, params);
	else if (strcmp(mt, "audio_sfx") == 0 || strcmp(mt, "audio_bgm") == 0)
		w = check_duration(w, media, params);
	else if (strcmp(mt, "model_3d") == 0)
		w = check_model(w, media, params);
	jv_free(params);
	return w;
}

int
mi_probe_strict(jv request)
{
	int b = 0;

	if (jv_get_kind(request) != JV_KIND_OBJECT)
		return 0;
	mi_json_bool(request, "strict", &b, 0, NULL);
	return b;
}
