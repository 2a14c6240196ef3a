/*
 * manifest.c - canonical JSON checksums, GameConfig rules, CSS colours
 * and bundle entry types (see manifest.h).
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bundle/manifest.h"
#include "hash.h"
#include "mime.h"
#include "banned.h"

int
mi_manifest_checksum(jv v, char out[72], struct mi_err *err)
{
	char hex[65];
	jv s;

	if (jv_get_kind(v) != JV_KIND_OBJECT)
		return mi_err_set(err, EX_DATAERR, "manifest is not an object");
	s = jv_dump_string(jv_object_delete(jv_copy(v), jv_string("checksum")),
	    JV_PRINT_SORTED);
	mi_sha256_hex(jv_string_value(s),
	    (size_t)jv_string_length_bytes(jv_copy(s)), hex);
	jv_free(s);
	memcpy(out, "sha256:", 7);
	memcpy(out + 7, hex, 65);
	return 0;
}

int
mi_manifest_hash_ok(const char *s)
{
	size_t i;

	if (s == NULL || strncmp(s, "sha256:", 7) != 0 || strlen(s) != 71)
		return 0;
	for (i = 7; i < 71; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
			(s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* CSS Color Module Level 4 named colours. */
static const char *const named[] = { "aliceblue", "antiquewhite", "aqua",
	"aquamarine", "azure", "beige", "bisque", "black", "blanchedalmond",
	"blue", "blueviolet", "brown", "burlywood", "cadetblue", "chartreuse",
	"chocolate", "coral", "cornflowerblue", "cornsilk", "crimson", "cyan",
	"darkblue", "darkcyan", "darkgoldenrod", "darkgray", "darkgreen",
	"darkgrey", "darkkhaki", "darkmagenta", "darkolivegreen", "darkorange",
	"darkorchid", "darkred", "darksalmon", "darkseagreen", "darkslateblue",
	"darkslategray", "darkslategrey", "darkturquoise", "darkviolet",
	"deeppink", "deepskyblue", "dimgray", "dimgrey", "dodgerblue",
	"firebrick", "floralwhite", "forestgreen", "fuchsia", "gainsboro",
	"ghostwhite", "gold", "goldenrod", "gray", "green", "greenyellow",
	"grey", "honeydew", "hotpink", "indianred", "indigo", "ivory", "khaki",
	"lavender", "lavenderblush", "lawngreen", "lemonchiffon", "lightblue",
	"lightcoral", "lightcyan", "lightgoldenrodyellow", "lightgray",
	"lightgreen", "lightgrey", "lightpink", "lightsalmon", "lightseagreen",
	"lightskyblue", "lightslategray", "lightslategrey", "lightsteelblue",
	"lightyellow", "lime", "limegreen", "linen", "magenta", "maroon",
	"mediumaquamarine", "mediumblue", "mediumorchid", "mediumpurple",
	"mediumseagreen", "mediumslateblue", "mediumspringgreen",
	"mediumturquoise", "mediumvioletred", "midnightblue", "mintcream",
	"mistyrose", "moccasin", "navajowhite", "navy", "oldlace", "olive",
	"olivedrab", "orange", "orangered", "orchid", "palegoldenrod",
	"palegreen", "paleturquoise", "palevioletred", "papayawhip",
	"peachpuff", "peru", "pink", "plum", "powderblue", "purple",
	"rebeccapurple", "red", "rosybrown", "royalblue", "saddlebrown",
	"salmon", "sandybrown", "seagreen", "seashell", "sienna", "silver",
	"skyblue", "slateblue", "slategray", "slategrey", "snow", "springgreen",
	"steelblue", "tan", "teal", "thistle", "tomato", "turquoise", "violet",
	"wheat", "white", "whitesmoke", "yellow", "yellowgreen", "transparent",
	"currentcolor", NULL };

/* A CSS number, optionally followed by one of units; advances *p. */
static int
css_number(const char **p, const char *units)
{
	const char *s = *p;
	int digits = 0;

	if (*s == '+' || *s == '-')
		s++;
	while (isdigit((unsigned char)*s)) {
		s++;
		digits++;
	}
	if (*s == '.') {
		s++;
		while (isdigit((unsigned char)*s)) {
			s++;
			digits++;
		}
	}
	if (digits == 0)
		return 0;
	if (*s == '%' && strchr(units, '%'))
		s++;
	else if (strncmp(s, "deg", 3) == 0 && strchr(units, 'd'))
		s += 3;
	*p = s;
	return 1;
}

/* rgb(r g b / a), rgb(r, g, b), rgba(...), hsl(...), hsla(...). */
static int
css_function(const char *s)
{
	const char *units;
	int n = 0, slash = 0, commas = 0;

	if (strncasecmp(s, "rgba(", 5) == 0)
		s += 5, units = "%";
	else if (strncasecmp(s, "rgb(", 4) == 0)
		s += 4, units = "%";
	else if (strncasecmp(s, "hsla(", 5) == 0)
		s += 5, units = "%d";
	else if (strncasecmp(s, "hsl(", 4) == 0)
		s += 4, units = "%d";
	else
		return 0;
	for (;;) {
		while (*s == ' ')
			s++;
		if (*s == ')')
			break;
		if (n > 0 && *s == ',') {
			s++, commas++;
			continue;
		}
		if (n == 3 && *s == '/' && !slash) {
			s++, slash = 1;
			continue;
		}
		if (n >= 4 || !css_number(&s, units))
			return 0;
		n++;
	}
	return s[1] == '\0' && (n == 3 || n == 4) &&
	    (commas == 0 || commas == n - 1) &&
	    (n == 3 || slash || commas == 3);
}

int
mi_css_colour_ok(const char *s)
{
	size_t i, n;

	if (s == NULL)
		return 0;
	if (s[0] == '#') {
		n = strlen(s + 1);
		if (n != 3 && n != 4 && n != 6 && n != 8)
			return 0;
		for (i = 1; i <= n; i++)
			if (!isxdigit((unsigned char)s[i]))
				return 0;
		return 1;
	}
	if (css_function(s))
		return 1;
	for (i = 0; named[i]; i++)
		if (strcasecmp(named[i], s) == 0)
			return 1;
	return 0;
}

/* The value at a dotted path of o (borrowed); jv_invalid when absent. */
static jv
at(jv o, const char *path)
{
	char key[64];
	const char *dot;
	jv v = jv_copy(o);

	while (*path) {
		size_t n = (dot = strchr(path, '.')) ? (size_t)(dot - path)
						     : strlen(path);

		if (n >= sizeof(key) || jv_get_kind(v) != JV_KIND_OBJECT) {
			jv_free(v);
			return jv_invalid();
		}
		memcpy(key, path, n);
		key[n] = '\0';
		v = jv_object_get(v, jv_string(key));
		if (!jv_is_valid(v))
			return v;
		path += n + (path[n] == '.');
	}
	return v;
}

static int
number_at(jv o, const char *path, double *d)
{
	jv v = at(o, path);
	int ok = jv_get_kind(v) == JV_KIND_NUMBER;

	if (ok)
		*d = jv_number_value(v);
	jv_free(v);
	return ok && isfinite(*d);
}

int
mi_game_config_check(jv cfg, struct mi_buf *problems)
{
	int bad = 0;
	double d = 0;
	jv v;

	if (jv_get_kind(cfg) != JV_KIND_OBJECT) {
		mi_buf_adds(problems, "game config: not an object\n");
		return 1;
	}
	v = at(cfg, "template_id");
	if (jv_get_kind(v) != JV_KIND_STRING ||
	    jv_string_length_bytes(jv_copy(v)) == 0) {
		mi_buf_adds(problems,
		    "template_id: required, a non-empty "
		    "string\n");
		bad++;
	}
	jv_free(v);
	v = at(cfg, "settings.difficulty.level");
	if (jv_get_kind(v) != JV_KIND_STRING ||
	    (strcmp(jv_string_value(v), "easy") != 0 &&
		strcmp(jv_string_value(v), "medium") != 0 &&
		strcmp(jv_string_value(v), "hard") != 0)) {
		mi_buf_adds(problems,
		    "settings.difficulty.level: must be "
		    "easy, medium or hard\n");
		bad++;
	}
	jv_free(v);
	if (!number_at(cfg, "settings.difficulty.win_probability", &d) ||
	    d < 0 || d > 1) {
		mi_buf_adds(problems,
		    "settings.difficulty.win_probability: "
		    "must be a number from 0 to 1\n");
		bad++;
	}
	if (!number_at(cfg, "settings.duration_sec", &d) || d <= 0) {
		mi_buf_adds(problems,
		    "settings.duration_sec: must be a "
		    "number above 0\n");
		bad++;
	}
	v = at(cfg, "visuals.colors");
	if (jv_get_kind(v) == JV_KIND_OBJECT) {
		jv_object_foreach(v, k, c)
		{
			if (jv_get_kind(c) != JV_KIND_STRING ||
			    !mi_css_colour_ok(jv_string_value(c))) {
				mi_buf_addf(problems,
				    "visuals.colors.%s: not "
				    "a CSS colour\n",
				    jv_string_value(k));
				bad++;
			}
			jv_free(k);
			jv_free(c);
		}
	} else if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL) {
		mi_buf_adds(problems, "visuals.colors: not an object\n");
		bad++;
	}
	jv_free(v);
	return bad;
}

static const struct {
	const char *ext, *type;
} text_types[] = { { "html", "text/html; charset=utf-8" },
	{ "htm", "text/html; charset=utf-8" },
	{ "js", "text/javascript; charset=utf-8" },
	{ "mjs", "text/javascript; charset=utf-8" },
	{ "css", "text/css; charset=utf-8" },
	{ "txt", "text/plain; charset=utf-8" }, { "map", "application/json" },
	{ "svg", "image/svg+xml" }, { "ico", "image/x-icon" },
	{ "woff2", "font/woff2" }, { "woff", "font/woff" },
	{ "ttf", "font/ttf" }, { "otf", "font/otf" }, { NULL, NULL } };

const char *
mi_bundle_content_type(const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *dot = strrchr(slash ? slash + 1 : name, '.');
	const struct mi_mime *m;
	size_t i;

	if (dot == NULL || dot[1] == '\0')
		return "application/octet-stream";
	for (i = 0; text_types[i].ext; i++)
		if (strcasecmp(text_types[i].ext, dot + 1) == 0)
			return text_types[i].type;
	if ((m = mi_mime_by_ext(dot + 1)) != NULL)
		return m->type;
	return "application/octet-stream";
}

int
mi_bundle_deflate_type(const char *t)
{
	return strncmp(t, "text/", 5) == 0 ||
	    strcmp(t, "application/json") == 0 ||
	    strcmp(t, "image/svg+xml") == 0 ||
	    strcmp(t, "model/gltf+json") == 0;
}

const char *
mi_bundle_kind(const char *c)
{
	if (strcmp(c, "image") == 0 || strcmp(c, "hdr") == 0)
		return "images";
	if (strcmp(c, "audio") == 0)
		return "audio";
	if (strcmp(c, "video") == 0)
		return "video";
	if (strcmp(c, "model") == 0)
		return "models";
	return "configs";
}
