/*
 * localgen/png.c - generated pictures (image, texture) and the PNG encoder
 * the other generators share.
 *
 * A picture is a palette-mapped field of sinusoids with soft discs and
 * rings laid over it.  Seamless pictures use only whole periods across the
 * width and height and wrap every shape around the edges, so the picture
 * tiles: column 0 continues column w-1 and row 0 continues row h-1.  The
 * sinusoids are separable (sin(a+b) = sin a cos b + cos a sin b), which
 * keeps 4096x4096 well under a second before compression.
 */
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "localgen/blocks.h"
#include "banned.h"

#define NWAVES 7
#define LUTN 1024

struct wave {
	double amp, phase;
	int fx, fy;		/* whole periods across width and height */
};

struct palette {
	float lut[LUTN][3];
};

/* A cosine palette: color(t) = a + b cos(2 pi (c t + d)), per channel. */
static void
palette_init(struct palette *p, struct mi_gen_rng *r)
{
	double a[3], b[3], c[3], d[3];
	unsigned i, k;

	for (k = 0; k < 3; k++) {
		a[k] = mi_gen_rng_range(r, 0.45, 0.6);
		b[k] = mi_gen_rng_range(r, 0.3, 0.5);
		c[k] = mi_gen_rng_range(r, 0.6, 1.4);
		d[k] = mi_gen_rng_unit(r);
	}
	for (i = 0; i < LUTN; i++) {
		double t = (double)i / (LUTN - 1);

		for (k = 0; k < 3; k++) {
			double v = a[k] + b[k] * cos(2 * M_PI * (c[k] * t +
			    d[k]));

			p->lut[i][k] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
		}
	}
}

static const float *
palette_at(const struct palette *p, double t)
{
	int i = (int)(t * (LUTN - 1) + 0.5);

	if (i < 0)
		i = 0;
	if (i >= LUTN)
		i = LUTN - 1;
	return p->lut[i];
}

/* Signed offset from c to x on a ring of size n (seamless) or a line. */
static double
offset(double x, double c, double n, int wrap)
{
	double d = x - c;

	if (wrap) {
		d = fmod(d, n);
		if (d > n / 2)
			d -= n;
		else if (d < -n / 2)
			d += n;
	}
	return d;
}

/*
 * A soft disc (ring > 0: an annulus of that relative width) blended over
 * the picture, lit from the top left so it reads as a raised shape.
 */
static void
draw_disc(float *img, unsigned w, unsigned h, int wrap, double cx, double cy,
    double rad, double ring, const float *col, double alpha)
{
	long x0 = (long)floor(cx - rad - 2), x1 = (long)ceil(cx + rad + 2);
	long y0 = (long)floor(cy - rad - 2), y1 = (long)ceil(cy + rad + 2);
	long x, y;

	for (y = y0; y <= y1; y++) {
		long py = y;

		if (wrap)
			py = ((y % (long)h) + (long)h) % (long)h;
		else if (y < 0 || y >= (long)h)
			continue;
		for (x = x0; x <= x1; x++) {
			long px = x;
			double dx, dy, dist, cov, light, a;
			float *o;
			unsigned k;

			if (wrap)
				px = ((x % (long)w) + (long)w) % (long)w;
			else if (x < 0 || x >= (long)w)
				continue;
			dx = offset((double)px + 0.5, cx, w, wrap);
			dy = offset((double)py + 0.5, cy, h, wrap);
			dist = sqrt(dx * dx + dy * dy);
			cov = rad - dist + 0.5;	/* one-pixel soft edge */
			if (ring > 0) {
				double inner = dist - rad * (1 - ring) + 0.5;

				cov = fmin(cov, inner);
			}
			if (cov <= 0)
				continue;
			if (cov > 1)
				cov = 1;
			light = 1.0 + 0.25 * (-dx - dy) / (rad * 1.414);
			a = alpha * cov;
			o = img + ((size_t)py * w + (size_t)px) * 3;
			for (k = 0; k < 3; k++)
				o[k] = (float)(o[k] * (1 - a) + col[k] * light *
				    a);
		}
	}
}

int
mi_gen_picture(const char *prompt, unsigned w, unsigned h, int seamless,
    uint8_t *px, struct mi_err *err)
{
	struct mi_gen_rng r;
	struct palette pal;
	struct wave wv[NWAVES];
	float *img, *cu, *su, *cv, *sv;
	double norm = 0, m = (w < h ? w : h);
	unsigned x, y, i, k, nshapes;
	int rc = -1;

	mi_gen_rng_seed(&r, prompt, "picture");
	palette_init(&pal, &r);
	for (i = 0; i < NWAVES; i++) {
		wv[i].amp = mi_gen_rng_range(&r, 0.3, 1.0) / (1 + i * 0.5);
		wv[i].phase = mi_gen_rng_range(&r, 0, 2 * M_PI);
		do {
			wv[i].fx = (int)mi_gen_rng_below(&r, 2 + i) -
			    (int)(1 + i) / 2;
			wv[i].fy = (int)mi_gen_rng_below(&r, 2 + i) -
			    (int)(1 + i) / 2;
		} while (wv[i].fx == 0 && wv[i].fy == 0);
		norm += wv[i].amp;
	}

	/* Per-column and per-row sines and cosines of every wave. */
	img = malloc((size_t)w * h * 3 * sizeof(*img));
	cu = malloc((size_t)w * NWAVES * sizeof(*cu));
	su = malloc((size_t)w * NWAVES * sizeof(*su));
	cv = malloc((size_t)h * NWAVES * sizeof(*cv));
	sv = malloc((size_t)h * NWAVES * sizeof(*sv));
	if (img == NULL || cu == NULL || su == NULL || cv == NULL ||
	    sv == NULL) {
		mi_err_set(err, EX_SOFTWARE, "out of memory");
		goto out;
	}
	for (i = 0; i < NWAVES; i++) {
		/* A picture that need not tile stretches its waves a little. */
		double sx = seamless ? 1 : 0.85, sy = seamless ? 1 : 0.7;

		for (x = 0; x < w; x++) {
			double a = 2 * M_PI * wv[i].fx * sx * (x + 0.5) / w +
			    wv[i].phase;

			cu[i * w + x] = (float)cos(a);
			su[i * w + x] = (float)sin(a);
		}
		for (y = 0; y < h; y++) {
			double a = 2 * M_PI * wv[i].fy * sy * (y + 0.5) / h;

			cv[i * h + y] = (float)cos(a);
			sv[i * h + y] = (float)sin(a);
		}
	}
	for (y = 0; y < h; y++) {
		float *row = img + (size_t)y * w * 3;

		for (x = 0; x < w; x++) {
			double f = 0, t;
			const float *c;

			for (i = 0; i < NWAVES; i++)
				f += wv[i].amp * (su[i * w + x] *
				    cv[i * h + y] + cu[i * w + x] *
				    sv[i * h + y]);
			t = 0.5 + 0.5 * f / norm;
			/* Banding gives the field visible contour lines. */
			t = t * 0.8 + 0.2 * (0.5 + 0.5 * sin(t * 40));
			c = palette_at(&pal, t);
			row[x * 3] = c[0];
			row[x * 3 + 1] = c[1];
			row[x * 3 + 2] = c[2];
		}
	}

	nshapes = 6 + mi_gen_rng_below(&r, 10);
	for (i = 0; i < nshapes; i++) {
		double cx = mi_gen_rng_unit(&r) * w, cy = mi_gen_rng_unit(&r) * h;
		double rad = m * mi_gen_rng_range(&r, 0.03, 0.16);
		double ring = mi_gen_rng_unit(&r) < 0.4 ?
		    mi_gen_rng_range(&r, 0.15, 0.4) : 0;
		double t = mi_gen_rng_unit(&r), alpha =
		    mi_gen_rng_range(&r, 0.55, 0.9);

		draw_disc(img, w, h, seamless, cx, cy, rad, ring,
		    palette_at(&pal, t), alpha);
	}

	if (!seamless) {
		/* A centred hero: concentric rings, lit from above. */
		double hr = m * mi_gen_rng_range(&r, 0.22, 0.32);
		double t0 = mi_gen_rng_unit(&r);

		for (k = 0; k < 5; k++)
			draw_disc(img, w, h, 0, w / 2.0, h / 2.0,
			    hr * (1 - 0.17 * k), k % 2 ? 0 : 0.35,
			    palette_at(&pal, fmod(t0 + 0.21 * k, 1.0)), 0.92);
	}

	for (y = 0; y < h; y++) {
		const float *row = img + (size_t)y * w * 3;
		uint8_t *o = px + (size_t)y * w * 3;
		double vy = seamless ? 0 : (y + 0.5) / h - 0.5;

		for (x = 0; x < w; x++) {
			double g = 1;

			if (!seamless) {
				/* Vignette for a composed, non-tiling picture. */
				double vx = (x + 0.5) / w - 0.5;

				g = 1.1 - 0.9 * (vx * vx + vy * vy) - 0.2 * vy;
			}
			for (k = 0; k < 3; k++) {
				double v = row[x * 3 + k] * g * 255 + 0.5;

				o[x * 3 + k] = (uint8_t)(v < 0 ? 0 : v > 255 ?
				    255 : v);
			}
		}
	}
	rc = 0;
out:
	free(sv);
	free(cv);
	free(su);
	free(cu);
	free(img);
	return rc;
}

struct png_sink {
	struct mi_buf *out;
	int failed;
};

static void
png_sink_write(png_structp png, png_bytep data, png_size_t len)
{
	struct png_sink *s = png_get_io_ptr(png);

	if (!s->failed && mi_buf_add(s->out, data, len) == -1)
		s->failed = 1;
}

static void
png_sink_flush(png_structp png)
{
	(void)png;
}

int
mi_gen_png_encode(const uint8_t *px, unsigned w, unsigned h,
    unsigned channels, int level, struct mi_buf *out, struct mi_err *err)
{
	png_structp png;
	png_infop info;
	struct png_sink sink = { out, 0 };
	unsigned y;

	if (channels != 3 && channels != 4)
		return mi_err_set(err, EX_SOFTWARE, "png: %u channels",
		    channels);
	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL,
	    NULL);
	if (png == NULL)
		return mi_err_set(err, EX_SOFTWARE, "png: out of memory");
	info = png_create_info_struct(png);
	if (info == NULL) {
		png_destroy_write_struct(&png, NULL);
		return mi_err_set(err, EX_SOFTWARE, "png: out of memory");
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		return mi_err_set(err, EX_SOFTWARE, "png: encoding failed");
	}
	png_set_write_fn(png, &sink, png_sink_write, png_sink_flush);
	png_set_compression_level(png, level);
	/* One fixed filter: fast, and as good as the heuristic on gradients. */
	png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_PAETH);
	png_set_IHDR(png, info, w, h, 8,
	    channels == 4 ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB,
	    PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_BASE,
	    PNG_FILTER_TYPE_BASE);
	png_write_info(png, info);
	for (y = 0; y < h; y++)
		png_write_row(png, px + (size_t)y * w * channels);
	png_write_end(png, info);
	png_destroy_write_struct(&png, &info);
	if (sink.failed)
		return mi_err_set(err, EX_SOFTWARE, "png: out of memory");
	return 0;
}

int
mi_gen_image(const char *prompt, unsigned w, unsigned h, int seamless,
    const char *path, struct mi_err *err)
{
	struct mi_buf png = MI_BUF_INIT;
	uint8_t *px;
	int rc;

	if (w < 512 || w > 4096 || h < 512 || h > 4096)
		return mi_err_set(err, EX_DATAERR,
		    "image size %ux%u out of range 512..4096", w, h);
	px = malloc((size_t)w * h * 3);
	if (px == NULL)
		return mi_err_set(err, EX_SOFTWARE, "out of memory");
	rc = mi_gen_picture(prompt, w, h, seamless, px, err);
	if (rc == 0)
		rc = mi_gen_png_encode(px, w, h, 3, 1, &png, err);
	free(px);
	if (rc == 0)
		rc = mi_gen_write_file(path, png.buf, png.len, err);
	mi_buf_release(&png);
	return rc;
}
