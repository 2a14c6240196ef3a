/*
 * localgen/hdr.c - environment maps: a Radiance RGBE (.hdr) equirectangular
 * panorama, width x width/2, of a sky gradient over a ground plane with a
 * sun whose disc is far brighter than 1.0 (so it lights a PBR scene).
 *
 * Scanlines use the "new" run-length encoding (2 2 hi lo, then each of
 * the four channels run-length coded), which every reader accepts,
 * Three.js's RGBELoader included.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "localgen/blocks.h"
#include "banned.h"

struct sky {
	double zenith[3], horizon[3], ground[3], sun[3];
	double sundir[3], sunrad, sunpow, haze;
	double cloud_amp, cloud_phase[4];
	int cloud_fx[4];
	unsigned rings;
};

static void
mix3(double *o, const double *a, const double *b, double t)
{
	unsigned k;

	for (k = 0; k < 3; k++)
		o[k] = a[k] + (b[k] - a[k]) * t;
}

static void
set3(double *o, double r, double g, double b)
{
	o[0] = r;
	o[1] = g;
	o[2] = b;
}

static void
sky_init(struct sky *s, const char *prompt)
{
	struct mi_gen_rng r;
	double el, az, j;
	unsigned i;

	mi_gen_rng_seed(&r, prompt, "sky");
	j = mi_gen_rng_range(&r, -0.08, 0.08);	/* a hue nudge */
	if (mi_gen_has_word(prompt, "night") ||
	    mi_gen_has_word(prompt, "neon") ||
	    mi_gen_has_word(prompt, "space")) {
		set3(s->zenith, 0.01, 0.015 + j / 10, 0.06);
		set3(s->horizon, 0.12 + j, 0.05, 0.25);
		set3(s->sun, 8, 9, 14);	/* a cold, small moon-like light */
		el = mi_gen_rng_range(&r, 0.5, 0.9);
		s->sunpow = 0.4;
	} else if (mi_gen_has_word(prompt, "sunset") ||
	    mi_gen_has_word(prompt, "dusk") ||
	    mi_gen_has_word(prompt, "dawn") ||
	    mi_gen_has_word(prompt, "golden")) {
		set3(s->zenith, 0.12, 0.16 + j, 0.45);
		set3(s->horizon, 1.6, 0.7 + j, 0.3);
		set3(s->sun, 60, 38, 18);
		el = mi_gen_rng_range(&r, 0.03, 0.12);
		s->sunpow = 1.5;
	} else {
		set3(s->zenith, 0.18 + j, 0.38, 0.95);
		set3(s->horizon, 0.85, 0.92 + j / 2, 1.05);
		set3(s->sun, 120, 110, 95);
		el = mi_gen_rng_range(&r, 0.35, 1.0);
		s->sunpow = 1;
	}
	set3(s->ground, mi_gen_rng_range(&r, 0.08, 0.3),
	    mi_gen_rng_range(&r, 0.08, 0.25), mi_gen_rng_range(&r, 0.06, 0.2));
	az = mi_gen_rng_range(&r, 0, 2 * M_PI);
	s->sundir[0] = cos(el) * sin(az);
	s->sundir[1] = sin(el);
	s->sundir[2] = cos(el) * cos(az);
	s->sunrad = mi_gen_rng_range(&r, 0.012, 0.022);
	s->haze = mi_gen_rng_range(&r, 3, 7);
	s->cloud_amp = mi_gen_rng_range(&r, 0.1, 0.5);
	for (i = 0; i < 4; i++) {
		s->cloud_fx[i] = 2 + (int)mi_gen_rng_below(&r, 9);
		s->cloud_phase[i] = mi_gen_rng_range(&r, 0, 2 * M_PI);
	}
	s->rings = 6 + mi_gen_rng_below(&r, 20);
}

/* Radiance toward elevation el and azimuth az. */
static void
sky_color(const struct sky *s, double el, double az, double *c)
{
	double d[3] = { cos(el) * sin(az), sin(el), cos(el) * cos(az) };
	double cosang = d[0] * s->sundir[0] + d[1] * s->sundir[1] +
	    d[2] * s->sundir[2];
	double ang = acos(cosang > 1 ? 1 : cosang < -1 ? -1 : cosang);
	double glow, sunlight = s->sundir[1] > 0 ? s->sundir[1] : 0.05;
	unsigned k;

	if (el >= 0) {
		double t = exp(-el * s->haze), cl = 0;
		unsigned i;

		mix3(c, s->zenith, s->horizon, t);
		/* Cloud bands: whole periods in azimuth keep the seam closed. */
		for (i = 0; i < 4; i++)
			cl += sin(s->cloud_fx[i] * az + s->cloud_phase[i] +
			    el * (3 + i * 2));
		cl = cl / 4 * s->cloud_amp * sin(el * 2) * (1 - t);
		if (cl > 0)
			for (k = 0; k < 3; k++)
				c[k] += cl * (0.6 + c[k]) * s->sunpow;
	} else {
		/* A floor at unit depth: rings and spokes around the viewer. */
		double dist = 1 / tan(-el > 1e-4 ? -el : 1e-4);
		double pat = 0.85 + 0.15 * cos(dist * 2 * M_PI / 3) *
		    cos(az * s->rings);
		double t = exp(el * 30);

		for (k = 0; k < 3; k++)
			c[k] = s->ground[k] * pat * (0.3 + sunlight);
		mix3(c, c, s->horizon, t * 0.8);
	}
	glow = 0.6 * pow(fmax(cosang, 0), 48) + 0.25 * pow(fmax(cosang, 0), 6);
	for (k = 0; k < 3; k++)
		c[k] += glow * s->sun[k] / 40 * s->sunpow;
	if (ang < s->sunrad) {
		/* The disc, darker toward its limb. */
		double limb = 0.6 + 0.4 * sqrt(1 - (ang / s->sunrad) *
		    (ang / s->sunrad));

		for (k = 0; k < 3; k++)
			c[k] = s->sun[k] * limb;
	}
}

static void
to_rgbe(const double *c, uint8_t *o)
{
	double v = fmax(c[0], fmax(c[1], c[2]));
	int e;

	if (v < 1e-32) {
		o[0] = o[1] = o[2] = o[3] = 0;
		return;
	}
	v = frexp(v, &e) * 256.0 / v;
	o[0] = (uint8_t)(fmax(c[0], 0) * v);
	o[1] = (uint8_t)(fmax(c[1], 0) * v);
	o[2] = (uint8_t)(fmax(c[2], 0) * v);
	o[3] = (uint8_t)(e + 128);
}

/* Run-length codes n bytes of one channel (stride 4) onto out. */
static int
rle_channel(const uint8_t *p, unsigned n, struct mi_buf *out)
{
	unsigned i = 0;
	uint8_t lit[128];

	while (i < n) {
		unsigned run = 1, nlit = 0;

		while (i + run < n && run < 127 && p[(i + run) * 4] == p[i * 4])
			run++;
		if (run >= 3) {
			uint8_t hdr[2] = { (uint8_t)(128 + run), p[i * 4] };

			if (mi_buf_add(out, hdr, 2) == -1)
				return -1;
			i += run;
			continue;
		}
		/* Literals up to the next run of three or more. */
		while (i < n && nlit < 128) {
			if (i + 2 < n && p[i * 4] == p[(i + 1) * 4] &&
			    p[i * 4] == p[(i + 2) * 4])
				break;
			lit[nlit++] = p[i * 4];
			i++;
		}
		if (mi_buf_add(out, &(uint8_t){ (uint8_t)nlit }, 1) == -1 ||
		    mi_buf_add(out, lit, nlit) == -1)
			return -1;
	}
	return 0;
}

int
mi_gen_hdr(const char *prompt, unsigned width, const char *path,
    struct mi_err *err)
{
	struct mi_buf out = MI_BUF_INIT;
	struct sky s;
	unsigned h = width / 2, x, y, k;
	uint8_t *line;
	int rc = -1;

	if (width < 64 || width > 8192 || width % 2 != 0)
		return mi_err_set(err, EX_DATAERR,
		    "environment map width %u not an even number in 64..8192",
		    width);
	line = malloc((size_t)width * 4);
	if (line == NULL)
		return mi_err_set(err, EX_SOFTWARE, "out of memory");
	sky_init(&s, prompt);
	if (mi_buf_addf(&out, "#?RADIANCE\n# mi environment map\n"
	    "FORMAT=32-bit_rle_rgbe\n\n-Y %u +X %u\n", h, width) == -1)
		goto oom;
	for (y = 0; y < h; y++) {
		double el = M_PI / 2 - M_PI * (y + 0.5) / h;
		uint8_t start[4] = { 2, 2, (uint8_t)(width >> 8),
			(uint8_t)(width & 0xff) };

		for (x = 0; x < width; x++) {
			double c[3], az = 2 * M_PI * (x + 0.5) / width - M_PI;

			sky_color(&s, el, az, c);
			to_rgbe(c, line + x * 4);
		}
		if (mi_buf_add(&out, start, 4) == -1)
			goto oom;
		for (k = 0; k < 4; k++)
			if (rle_channel(line + k, width, &out) == -1)
				goto oom;
	}
	rc = mi_gen_write_file(path, out.buf, out.len, err);
	goto out;
oom:
	mi_err_set(err, EX_SOFTWARE, "out of memory");
out:
	mi_buf_release(&out);
	free(line);
	return rc;
}
