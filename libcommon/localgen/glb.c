/*
 * localgen/glb.c - 3D models: a binary glTF 2.0 (GLB) of one mesh with a
 * PBR metallic-roughness material whose base colour, metallic-roughness
 * and normal textures are PNGs embedded in the binary chunk.
 *
 * Every part is a sweep: a profile of (r, z) points swept around a circle
 * or a rounded rectangle, with flat caps.  Faces get a planar mapping into
 * the face area of the texture, sides a band mapping into one of four
 * swatches along its bottom; the painters below draw those areas in
 * texture space, and the normal map is derived from the painted height.
 * Tangents are analytic (MikkTSpace-compatible handedness), so the normal
 * map needs no tangent generation in the viewer.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "localgen/blocks.h"
#include "banned.h"

#define TEX 1024		/* texture size */
#define NSWATCH 4

enum shape { WHEEL, CARD, COIN, STAGE, PLATE, NSHAPES };

static const char *const shape_names[NSHAPES] = { "wheel", "card", "coin",
	"stage", "plate" };

struct vtx {
	float p[3], n[3], t[4], uv[2];
};

struct mesh {
	struct vtx *v;
	size_t nv, av;
	uint32_t *idx;
	size_t ni, ai;
	int oom;
};

/* A profile point; map is the mapping of the segment that starts here. */
struct ppt {
	double r, z;
	int map;		/* MAP_FACE or MAP_BAND */
};

enum { MAP_FACE, MAP_BAND };

struct rect {
	double u0, v0, u1, v1;
};

struct sweep {
	double a, b;		/* inner rectangle half extents; 0 0: circle */
	const struct ppt *prof;
	unsigned np;
	unsigned n;		/* intervals around (a multiple of 4) */
	double phase;		/* angle of the first sample (circles) */
	int flat;		/* faceted sides instead of smooth ones */
	int cap_front, cap_back;
	double ox, oy, oz;	/* placement */
	int up;			/* lay flat: local +Z becomes +Y */
	struct rect face, band;
	double fx, fy;		/* local half extents that face maps */
};

struct paint {
	double rgb[3];
	double h, rough, metal;
};

struct look {
	enum shape shape;
	double col[6][3];	/* palette */
	double metal[3];	/* the shape's metal colour */
	unsigned segs;		/* wheel wedges, plate bars... */
	double phase;
	double fx, fy;		/* face half extents */
	struct rect face;
};

static struct rect
swatch(unsigned k)
{
	struct rect r = { 0.25 * k + 0.01, 0.895, 0.25 * k + 0.24, 0.99 };

	return r;
}

static void
hsv(double h, double s, double v, double *rgb)
{
	double c = v * s, hp = fmod(h, 1.0) * 6, x = c * (1 - fabs(fmod(hp, 2) -
	    1)), m = v - c;
	double r = 0, g = 0, b = 0;

	if (hp < 1) {
		r = c;
		g = x;
	} else if (hp < 2) {
		r = x;
		g = c;
	} else if (hp < 3) {
		g = c;
		b = x;
	} else if (hp < 4) {
		g = x;
		b = c;
	} else if (hp < 5) {
		r = x;
		b = c;
	} else {
		r = c;
		b = x;
	}
	rgb[0] = r + m;
	rgb[1] = g + m;
	rgb[2] = b + m;
}

/* Mesh building. */

static int
mesh_vtx(struct mesh *m, const struct vtx *v)
{
	if (m->nv == m->av) {
		size_t na = m->av ? m->av * 2 : 1024;
		struct vtx *p = realloc(m->v, na * sizeof(*p));

		if (p == NULL) {
			m->oom = 1;
			return 0;
		}
		m->v = p;
		m->av = na;
	}
	m->v[m->nv] = *v;
	return (int)m->nv++;
}

/* Adds a triangle wound counter-clockwise about its vertices' normals. */
static void
mesh_tri(struct mesh *m, uint32_t a, uint32_t b, uint32_t c)
{
	const float *pa = m->v[a].p, *pb = m->v[b].p, *pc = m->v[c].p;
	double e1[3], e2[3], g[3], len, dot = 0;
	unsigned k;

	for (k = 0; k < 3; k++) {
		e1[k] = pb[k] - pa[k];
		e2[k] = pc[k] - pa[k];
	}
	g[0] = e1[1] * e2[2] - e1[2] * e2[1];
	g[1] = e1[2] * e2[0] - e1[0] * e2[2];
	g[2] = e1[0] * e2[1] - e1[1] * e2[0];
	len = sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2]);
	if (len < 1e-12)
		return;		/* degenerate: collapsed corner samples */
	for (k = 0; k < 3; k++)
		dot += g[k] * (m->v[a].n[k] + m->v[b].n[k] + m->v[c].n[k]);
	if (m->ni + 3 > m->ai) {
		size_t na = m->ai ? m->ai * 2 : 4096;
		uint32_t *p = realloc(m->idx, na * sizeof(*p));

		if (p == NULL) {
			m->oom = 1;
			return;
		}
		m->idx = p;
		m->ai = na;
	}
	m->idx[m->ni++] = a;
	m->idx[m->ni++] = dot >= 0 ? b : c;
	m->idx[m->ni++] = dot >= 0 ? c : b;
}

static void
norm3(double *v)
{
	double l = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);

	if (l > 0) {
		v[0] /= l;
		v[1] /= l;
		v[2] /= l;
	}
}

/*
 * Finishes a vertex: tangent from the direction of increasing u (du),
 * handedness from the direction the image's up (decreasing v) points
 * (up), then placement.
 */
static int
emit(struct mesh *m, const struct sweep *s, const double *p, const double *n,
    const double *du, const double *up, double u, double v)
{
	struct vtx x;
	double t[3], b[3], d = du[0] * n[0] + du[1] * n[1] + du[2] * n[2];
	double w;
	unsigned k;

	for (k = 0; k < 3; k++)
		t[k] = du[k] - n[k] * d;
	norm3(t);
	b[0] = n[1] * t[2] - n[2] * t[1];
	b[1] = n[2] * t[0] - n[0] * t[2];
	b[2] = n[0] * t[1] - n[1] * t[0];
	w = b[0] * up[0] + b[1] * up[1] + b[2] * up[2] >= 0 ? 1 : -1;
	if (s->up) {
		/* (x, y, z) -> (x, z, -y): a rotation, handedness kept. */
		x.p[0] = (float)(p[0] + s->ox);
		x.p[1] = (float)(p[2] + s->oy);
		x.p[2] = (float)(-p[1] + s->oz);
		x.n[0] = (float)n[0];
		x.n[1] = (float)n[2];
		x.n[2] = (float)-n[1];
		x.t[0] = (float)t[0];
		x.t[1] = (float)t[2];
		x.t[2] = (float)-t[1];
	} else {
		for (k = 0; k < 3; k++) {
			x.n[k] = (float)n[k];
			x.t[k] = (float)t[k];
		}
		x.p[0] = (float)(p[0] + s->ox);
		x.p[1] = (float)(p[1] + s->oy);
		x.p[2] = (float)(p[2] + s->oz);
	}
	x.t[3] = (float)w;
	x.uv[0] = (float)u;
	x.uv[1] = (float)v;
	return mesh_vtx(m, &x);
}

/* One sample of the outline: corner centre and angle. */
struct ring {
	double cx, cy, th, s;	/* s: arc length fraction for band u */
};

static unsigned
outline(const struct sweep *s, struct ring *out)
{
	unsigned i, k, q, cnt = 0;
	double len = 0, rr = 0;

	for (i = 0; i < s->np; i++)
		if (s->prof[i].r > rr)
			rr = s->prof[i].r;
	if (s->a == 0 && s->b == 0) {
		for (i = 0; i <= s->n; i++) {
			out[cnt].cx = out[cnt].cy = 0;
			out[cnt].th = s->phase + 2 * M_PI * i / s->n;
			out[cnt++].s = (double)i / s->n;
		}
		return cnt;
	}
	q = s->n / 4;
	for (k = 0; k < 4; k++)
		for (i = 0; i <= q; i++) {
			out[cnt].cx = k == 0 || k == 3 ? s->a : -s->a;
			out[cnt].cy = k < 2 ? s->b : -s->b;
			out[cnt++].th = M_PI / 2 * (k + (double)i / q);
		}
	out[cnt] = out[0];
	out[cnt++].th = 2 * M_PI;
	/* Arc length at the outer radius, for an even band mapping. */
	out[0].s = 0;
	for (i = 1; i < cnt; i++) {
		double x0 = out[i - 1].cx + rr * cos(out[i - 1].th);
		double y0 = out[i - 1].cy + rr * sin(out[i - 1].th);
		double x1 = out[i].cx + rr * cos(out[i].th);
		double y1 = out[i].cy + rr * sin(out[i].th);

		len += hypot(x1 - x0, y1 - y0);
		out[i].s = len;
	}
	for (i = 1; i < cnt; i++)
		out[i].s /= len;
	return cnt;
}

static void
face_uv(const struct sweep *s, double x, double y, int back, double *u,
    double *v)
{
	double fu = (x + s->fx) / (2 * s->fx);

	if (back)
		fu = 1 - fu;	/* mirrored, so the back reads the right way */
	*u = s->face.u0 + (s->face.u1 - s->face.u0) * fu;
	*v = s->face.v0 + (s->face.v1 - s->face.v0) * (s->fy - y) /
	    (2 * s->fy);
}

static void
cap(struct mesh *m, const struct sweep *s, const struct ring *rg,
    unsigned cnt, const struct ppt *pp, int back)
{
	double n[3] = { 0, 0, back ? -1 : 1 }, du[3] = { back ? -1 : 1, 0, 0 };
	double up[3] = { 0, 1, 0 }, p[3] = { 0, 0, pp->z }, u, v;
	unsigned i;
	int c, first = -1, prev = -1;

	face_uv(s, 0, 0, back, &u, &v);
	c = emit(m, s, p, n, du, up, u, v);
	for (i = 0; i < cnt; i++) {
		int cur;

		p[0] = rg[i].cx + pp->r * cos(rg[i].th);
		p[1] = rg[i].cy + pp->r * sin(rg[i].th);
		face_uv(s, p[0], p[1], back, &u, &v);
		if (i == cnt - 1 && first >= 0)
			cur = first;
		else
			cur = emit(m, s, p, n, du, up, u, v);
		if (i == 0)
			first = cur;
		if (prev >= 0 && !m->oom)
			mesh_tri(m, (uint32_t)c, (uint32_t)prev,
			    (uint32_t)cur);
		prev = cur;
	}
}

static void
sweep(struct mesh *m, const struct sweep *s)
{
	struct ring rg[4 * 260 + 8];
	double plen = 0, acc = 0;
	unsigned cnt, j, i;

	if (s->n < 3 || s->n > 1024)
		return;
	cnt = outline(s, rg);
	for (j = 0; j + 1 < s->np; j++)
		plen += hypot(s->prof[j + 1].r - s->prof[j].r,
		    s->prof[j + 1].z - s->prof[j].z);
	for (j = 0; j + 1 < s->np && !m->oom; j++) {
		const struct ppt *p0 = &s->prof[j], *p1 = &s->prof[j + 1];
		double dr = p1->r - p0->r, dz = p1->z - p0->z;
		double nl = hypot(dr, dz), nr = -dz / nl, nz = dr / nl;
		double seg = nl / plen;
		int prev0 = -1, prev1 = -1;

		for (i = 0; i < cnt; i++) {
			/* Faceted sides take the normal of each facet. */
			unsigned sub, nsub = s->flat && i > 0 && i + 1 < cnt ?
			    2 : 1;

			for (sub = 0; sub < nsub; sub++) {
				double th = rg[i].th, c, sn, n[3], du[3], up[3];
				double q0[3], q1[3], u0, v0, u1, v1;
				int a, b;

				if (s->flat) {
					unsigned f = i == 0 ? 0 : sub == 0 ?
					    i - 1 : i;

					if (f + 1 >= cnt)
						f = cnt - 2;
					th = (rg[f].th + rg[f + 1].th) / 2;
				}
				c = cos(th);
				sn = sin(th);
				n[0] = nr * c;
				n[1] = nr * sn;
				n[2] = nz;
				q0[0] = rg[i].cx + p0->r * cos(rg[i].th);
				q0[1] = rg[i].cy + p0->r * sin(rg[i].th);
				q0[2] = p0->z;
				q1[0] = rg[i].cx + p1->r * cos(rg[i].th);
				q1[1] = rg[i].cy + p1->r * sin(rg[i].th);
				q1[2] = p1->z;
				if (p0->map == MAP_FACE) {
					int back = nz < 0;

					du[0] = back ? -1 : 1;
					du[1] = du[2] = 0;
					up[0] = up[2] = 0;
					up[1] = 1;
					face_uv(s, q0[0], q0[1], back, &u0, &v0);
					face_uv(s, q1[0], q1[1], back, &u1, &v1);
				} else {
					du[0] = -sn;
					du[1] = c;
					du[2] = 0;
					up[0] = -dr * c;
					up[1] = -dr * sn;
					up[2] = -dz;
					u0 = u1 = s->band.u0 + (s->band.u1 -
					    s->band.u0) * rg[i].s;
					v0 = s->band.v0 + (s->band.v1 -
					    s->band.v0) * acc;
					v1 = s->band.v0 + (s->band.v1 -
					    s->band.v0) * (acc + seg);
				}
				a = emit(m, s, q0, n, du, up, u0, v0);
				b = emit(m, s, q1, n, du, up, u1, v1);
				if (sub == 0 && prev0 >= 0 && !m->oom) {
					mesh_tri(m, (uint32_t)prev0,
					    (uint32_t)a, (uint32_t)b);
					mesh_tri(m, (uint32_t)prev0,
					    (uint32_t)b, (uint32_t)prev1);
				}
				prev0 = a;
				prev1 = b;
			}
		}
		acc += seg;
	}
	if (s->cap_front && !m->oom)
		cap(m, s, rg, cnt, &s->prof[0], 0);
	if (s->cap_back && !m->oom)
		cap(m, s, rg, cnt, &s->prof[s->np - 1], 1);
}

/* The parts of each shape, at n intervals around. */

static void
sweep_init(struct sweep *s, const struct ppt *prof, unsigned np, unsigned n)
{
	memset(s, 0, sizeof(*s));
	s->prof = prof;
	s->np = np;
	s->n = n;
	s->cap_front = s->cap_back = 1;
}

/* Maps a part entirely into swatch k (extent: its half size). */
static void
to_swatch(struct sweep *s, unsigned k, double extent)
{
	s->face = s->band = swatch(k);
	s->fx = s->fy = extent;
}

static void
build(struct mesh *m, const struct look *lk, unsigned n)
{
	struct sweep s;
	unsigned k, small = n / 8 < 8 ? 8 : n / 8;

	switch (lk->shape) {
	case WHEEL: {
		static const struct ppt body[] = {
			{ 0.16, 0.06, MAP_FACE }, { 0.88, 0.06, MAP_FACE },
			{ 0.90, 0.08, MAP_FACE }, { 0.98, 0.08, MAP_BAND },
			{ 1.00, 0.06, MAP_BAND }, { 1.00, -0.06, MAP_BAND },
			{ 0.98, -0.08, MAP_FACE }, { 0.16, -0.08, MAP_FACE },
		};
		static const struct ppt hub[] = {
			{ 0.10, 0.16, MAP_BAND }, { 0.17, 0.13, MAP_BAND },
			{ 0.17, 0.04, MAP_BAND },
		};
		static const struct ppt peg[] = {
			{ 0.012, 0.15, MAP_BAND }, { 0.02, 0.14, MAP_BAND },
			{ 0.02, 0.06, MAP_BAND },
		};
		static const struct ppt ptr[] = {
			{ 0.11, 0.05, MAP_BAND }, { 0.11, -0.05, MAP_BAND },
		};
		static const struct ppt base[] = {
			{ 0.0, 0.1, MAP_BAND }, { 0.06, 0.1, MAP_BAND },
			{ 0.08, 0.08, MAP_BAND }, { 0.08, 0.0, MAP_BAND },
			{ 0.0, 0.0, MAP_BAND },
		};
		static const struct ppt post[] = {
			{ 0.0, 1.2, MAP_BAND }, { 0.04, 1.2, MAP_BAND },
			{ 0.04, 0.1, MAP_BAND }, { 0.0, 0.1, MAP_BAND },
		};

		sweep_init(&s, body, 8, n);
		s.oy = 1.25;
		s.face = lk->face;
		s.band = swatch(0);
		s.fx = s.fy = 1.0;
		sweep(m, &s);
		sweep_init(&s, hub, 3, n / 2);
		s.oy = 1.25;
		s.cap_back = 0;
		to_swatch(&s, 0, 0.17);
		sweep(m, &s);
		for (k = 0; n >= 32 && k < lk->segs; k++) {
			double a = lk->phase + 2 * M_PI * k / lk->segs;

			sweep_init(&s, peg, 3, small);
			s.ox = 0.935 * cos(a);
			s.oy = 1.25 + 0.935 * sin(a);
			s.cap_back = 0;
			to_swatch(&s, 0, 0.02);
			sweep(m, &s);
		}
		sweep_init(&s, ptr, 2, 3);
		s.phase = -M_PI / 2;
		s.flat = 1;
		s.oy = 1.25 + 1.06;
		s.oz = 0.1;
		to_swatch(&s, 1, 0.11);
		sweep(m, &s);
		sweep_init(&s, base, 5, n / 4 < 8 ? 8 : n / 4);
		s.a = 0.45;
		s.b = 0.16;
		s.up = 1;
		s.oz = -0.05;
		to_swatch(&s, 2, 0.53);
		sweep(m, &s);
		sweep_init(&s, post, 4, 8);
		s.a = 0.04;
		s.b = 0.02;
		s.up = 1;
		s.oz = -0.12;
		to_swatch(&s, 2, 0.08);
		sweep(m, &s);
		break;
	}
	case COIN: {
		static const struct ppt body[] = {
			{ 0.82, 0.07, MAP_FACE }, { 0.85, 0.10, MAP_FACE },
			{ 0.97, 0.10, MAP_BAND }, { 1.00, 0.08, MAP_BAND },
			{ 1.00, -0.08, MAP_BAND }, { 0.97, -0.10, MAP_FACE },
			{ 0.85, -0.10, MAP_FACE }, { 0.82, -0.07, MAP_FACE },
		};

		sweep_init(&s, body, 8, n);
		s.face = lk->face;
		s.band = swatch(0);
		s.fx = s.fy = 1.0;
		sweep(m, &s);
		break;
	}
	case CARD:
	case PLATE: {
		static const struct ppt card[] = {
			{ 0.0, 0.0075, MAP_FACE }, { 0.07, 0.0075, MAP_BAND },
			{ 0.08, 0.0045, MAP_BAND }, { 0.08, -0.0045, MAP_BAND },
			{ 0.07, -0.0075, MAP_FACE }, { 0.0, -0.0075, MAP_FACE },
		};
		static const struct ppt plate[] = {
			{ 0.0, 0.04, MAP_FACE }, { 0.07, 0.04, MAP_BAND },
			{ 0.15, 0.0, MAP_BAND }, { 0.15, -0.04, MAP_FACE },
			{ 0.0, -0.04, MAP_FACE },
		};

		if (lk->shape == CARD) {
			sweep_init(&s, card, 6, n / 2);
			s.a = 0.55;
			s.b = 0.85;
		} else {
			sweep_init(&s, plate, 5, n / 2);
			s.a = 0.9;
			s.b = 0.35;
		}
		s.n -= s.n % 4;
		s.face = lk->face;
		s.band = swatch(0);
		s.fx = lk->fx;
		s.fy = lk->fy;
		sweep(m, &s);
		break;
	}
	case STAGE: {
		static const struct ppt top[] = {
			{ 1.60, 0.30, MAP_BAND }, { 1.62, 0.28, MAP_BAND },
			{ 1.62, 0.15, MAP_BAND }, { 2.00, 0.15, MAP_BAND },
			{ 2.00, 0.00, MAP_BAND },
		};
		static const struct ppt wall[] = {
			{ 0.0, 0.03, MAP_FACE }, { 0.1, 0.03, MAP_BAND },
			{ 0.1, -0.03, MAP_FACE }, { 0.0, -0.03, MAP_FACE },
		};

		sweep_init(&s, top, 5, n);
		s.up = 1;
		s.face = lk->face;
		s.band = swatch(0);
		s.fx = s.fy = 1.6;
		sweep(m, &s);
		sweep_init(&s, wall, 4, n / 4 < 8 ? 8 : n / 4);
		s.n -= s.n % 4;
		s.a = 1.7;
		s.b = 0.8;
		s.oy = 0.3 + 0.9;
		s.oz = -1.75;
		s.face = swatch(3);
		s.band = swatch(1);
		s.fx = 1.8;
		s.fy = 0.9;
		sweep(m, &s);
		break;
	}
	default:
		break;
	}
}

/* Texture painting. */

static double
clamp01(double x)
{
	return x < 0 ? 0 : x > 1 ? 1 : x;
}

/* Coverage of a shape at signed distance d (negative inside). */
static double
cover(double d, double px)
{
	return clamp01(0.5 - d / px);
}

static void
blend(struct paint *p, const double *rgb, double h, double rough,
    double metal, double a)
{
	unsigned k;

	for (k = 0; k < 3; k++)
		p->rgb[k] += (rgb[k] - p->rgb[k]) * a;
	p->h += (h - p->h) * a;
	p->rough += (rough - p->rough) * a;
	p->metal += (metal - p->metal) * a;
}

static double
sd_rrect(double x, double y, double a, double b, double r)
{
	double qx = fabs(x) - a, qy = fabs(y) - b;

	return hypot(fmax(qx, 0), fmax(qy, 0)) + fmin(fmax(qx, qy), 0) - r;
}

static double
hash1(unsigned i)
{
	uint32_t x = i * 2654435761u;

	x ^= x >> 15;
	x *= 2246822519u;
	x ^= x >> 13;
	return (x & 0xffff) / 65535.0;
}

static void
paint_face(const struct look *lk, double x, double y, double px,
    struct paint *p)
{
	static const double white[3] = { 0.95, 0.93, 0.88 };
	static const double dark[3] = { 0.05, 0.05, 0.07 };
	double rho = hypot(x, y), phi = atan2(y, x);
	unsigned k;

	switch (lk->shape) {
	case WHEEL: {
		double seg = 2 * M_PI / lk->segs, a = fmod(phi - lk->phase +
		    4 * M_PI, 2 * M_PI), mid, db;
		unsigned w = (unsigned)(a / seg) % lk->segs;

		memcpy(p->rgb, lk->col[lk->segs % 3 ? w % 2 : w % 3],
		    sizeof(p->rgb));
		p->rough = 0.45;
		mid = lk->phase + (w + 0.5) * seg;
		db = fmin(a - w * seg, (w + 1) * seg - a) * rho;
		/* Prize icons in each wedge: a disc and a coloured dot. */
		blend(p, white, 0.6, 0.3, 0,
		    cover(hypot(x - 0.62 * cos(mid), y - 0.62 * sin(mid)) -
		    0.09, px));
		blend(p, lk->col[(w + 3) % 6], 0.7, 0.25, 0,
		    cover(hypot(x - 0.62 * cos(mid), y - 0.62 * sin(mid)) -
		    0.05, px));
		blend(p, lk->metal, 1, 0.25, 1, cover(db - 0.012, px) *
		    (rho > 0.15));
		blend(p, lk->metal, 1, 0.22, 1, cover(0.885 - rho, px));
		blend(p, lk->metal, 1, 0.22, 1, cover(rho - 0.2, px));
		/* Bulbs round the rim, between the pegs. */
		if (rho > 0.9)
			blend(p, white, 1.2, 0.15, 0,
			    cover(hypot(x - 0.945 * cos(mid), y - 0.945 *
			    sin(mid)) - 0.022, px));
		break;
	}
	case COIN: {
		double a = fmod(phi + M_PI / 2 + 4 * M_PI, 2 * M_PI / 5) /
		    (2 * M_PI / 5), star = 0.22 + 0.28 * fabs(1 - 2 * a);

		memcpy(p->rgb, lk->metal, sizeof(p->rgb));
		p->metal = 1;
		p->rough = 0.55;
		blend(p, lk->metal, 1, 0.18, 1, cover(rho - star, px));
		blend(p, lk->metal, 0.8, 0.2, 1,
		    cover(fabs(rho - 0.7) - 0.02, px));
		for (k = 0; k < 24; k++) {
			double t = 2 * M_PI * k / 24;

			if (rho > 0.72 && rho < 0.8)
				blend(p, lk->metal, 0.7, 0.2, 1,
				    cover(hypot(x - 0.76 * cos(t), y - 0.76 *
				    sin(t)) - 0.015, px));
		}
		blend(p, lk->metal, 0.5, 0.15, 1, cover(0.82 - rho, px));
		break;
	}
	case CARD: {
		double t = clamp01((y + 0.93) / 1.86), d;
		unsigned c;

		for (c = 0; c < 3; c++)
			p->rgb[c] = lk->col[0][c] * t + lk->col[1][c] * (1 - t);
		p->rgb[0] *= 0.85 + 0.15 * (sin((x + y) * 40) > 0.6);
		p->rough = 0.35;
		d = sd_rrect(x, y, 0.55, 0.85, 0.08);
		blend(p, lk->metal, 1, 0.25, 1,
		    cover(fabs(d + 0.05) - 0.012, px));
		blend(p, lk->metal, 1, 0.25, 1, cover(hypot(x, y - 0.3) -
		    0.3, px));
		blend(p, lk->col[2], 0.5, 0.3, 0, cover(hypot(x, y - 0.3) -
		    0.26, px));
		blend(p, lk->col[3], 0.8, 0.3, 0, cover(fabs(x) +
		    fabs(y - 0.3) - 0.17, px));
		for (c = 0; c < 3; c++)
			blend(p, white, 0.4, 0.4, 0,
			    cover(sd_rrect(x, y + 0.05 + 0.07 * c,
			    0.3 - 0.08 * c, 0.012, 0.01), px));
		d = sd_rrect(x, y + 0.5, 0.4, 0.2, 0.04);
		blend(p, lk->metal[0] > 0.9 ? lk->metal : white, 0.3,
		    0.45 + 0.1 * hash1((unsigned)(x * 300) * 977 +
		    (unsigned)((y + 1) * 300)), 0.9, cover(d, px));
		break;
	}
	case PLATE: {
		double d = sd_rrect(x, y, 0.9, 0.35, 0.15), bar;

		memcpy(p->rgb, lk->metal, sizeof(p->rgb));
		p->metal = 1;
		/* Brushed: roughness streaks along x. */
		p->rough = 0.3 + 0.12 * hash1((unsigned)((y + 1) * 700));
		blend(p, dark, -0.6, 0.6, 0.3, cover(fabs(d + 0.06) - 0.01,
		    px));
		blend(p, lk->col[0], 1, 0.25, 0,
		    cover(fabs(hypot(x + 0.55, y) - 0.2) - 0.045, px));
		blend(p, lk->col[1], 1, 0.25, 0, cover(hypot(x + 0.55, y) -
		    0.08, px));
		for (k = 0; k < lk->segs; k++) {
			double yy = 0.14 - 0.28 * k / (lk->segs - 1);

			bar = sd_rrect(x - 0.3, y - yy, 0.42 - 0.1 * (k % 2),
			    0.035, 0.02);
			blend(p, lk->col[2 + k % 2], 1, 0.25, 0,
			    cover(bar, px));
		}
		break;
	}
	case STAGE: {
		unsigned plank = (unsigned)((y + 2) / 0.16);
		double gy = fmod(y + 2, 0.16), grain, v;
		unsigned c;

		v = 0.75 + 0.25 * hash1(plank);
		grain = 0.9 + 0.1 * sin(x * 35 + 3 * sin(x * 2.3 + plank));
		for (c = 0; c < 3; c++)
			p->rgb[c] = lk->col[5][c] * v * grain;
		p->rough = 0.5;
		blend(p, dark, -0.5, 0.8, 0, cover(fmin(gy, 0.16 - gy) -
		    0.004, px));
		blend(p, lk->metal, 0.8, 0.25, 1,
		    cover(fabs(rho - 0.55) - 0.03, px));
		blend(p, lk->col[0], 0.6, 0.2, 0, cover(rho - 0.5, px));
		{
			double a = fmod(phi + 4 * M_PI, 2 * M_PI / 5) /
			    (2 * M_PI / 5), star = 0.15 + 0.25 * fabs(1 - 2 *
			    a);

			blend(p, lk->col[1], 0.8, 0.2, 0, cover(rho - star,
			    px));
		}
		for (k = 0; k < 24; k++) {
			double t = 2 * M_PI * k / 24;

			if (rho > 1.4)
				blend(p, white, 1, 0.15, 0,
				    cover(hypot(x - 1.5 * cos(t), y - 1.5 *
				    sin(t)) - 0.03, px));
		}
		break;
	}
	default:
		break;
	}
}

static void
paint_swatch(const struct look *lk, unsigned k, double su, double sv,
    struct paint *p)
{
	static const double dark[3] = { 0.06, 0.06, 0.07 };

	switch (k) {
	case 0:
		memcpy(p->rgb, lk->metal, sizeof(p->rgb));
		p->metal = 1;
		p->rough = 0.25;
		if (lk->shape == COIN)		/* a reeded edge */
			p->h = 0.5 + 0.5 * cos(2 * M_PI * su * 120);
		if (lk->shape == STAGE) {
			memcpy(p->rgb, lk->col[4], sizeof(p->rgb));
			p->metal = 0;
			p->rough = 0.8;
		}
		break;
	case 1:
		memcpy(p->rgb, lk->col[1], sizeof(p->rgb));
		p->rough = 0.3;
		break;
	case 2:
		memcpy(p->rgb, dark, sizeof(p->rgb));
		p->rough = 0.5;
		p->metal = 0.2;
		break;
	default: {
		/* A backdrop: dusk gradient with a scatter of lights. */
		unsigned c, gx = (unsigned)(su * 48), gy = (unsigned)(sv * 20);
		double fx = su * 48 - gx - 0.5, fy = sv * 20 - gy - 0.5;

		for (c = 0; c < 3; c++)
			p->rgb[c] = lk->col[2][c] * (0.2 + 0.5 * sv);
		p->rough = 0.7;
		if (hash1(gx * 131 + gy) > 0.9 && fx * fx + fy * fy < 0.06)
			memcpy(p->rgb, (double[3]){ 1, 0.95, 0.8 },
			    sizeof(p->rgb));
		break;
	}
	}
}

static int
in_rect(const struct rect *r, double u, double v)
{
	return u >= r->u0 && u <= r->u1 && v >= r->v0 && v <= r->v1;
}

/* Paints the three textures (RGB each) of TEX x TEX. */
static int
paint(const struct look *lk, uint8_t *base, uint8_t *mr, uint8_t *nrm)
{
	float *hf = malloc((size_t)TEX * TEX * sizeof(*hf));
	double px = 2 * lk->fx / ((lk->face.u1 - lk->face.u0) * TEX);
	unsigned x, y, k;

	if (hf == NULL)
		return -1;
	for (y = 0; y < TEX; y++)
		for (x = 0; x < TEX; x++) {
			double u = (x + 0.5) / TEX, v = (y + 0.5) / TEX;
			struct paint p = { { 0.1, 0.1, 0.12 }, 0, 0.6, 0 };
			size_t o = ((size_t)y * TEX + x) * 3;

			if (in_rect(&lk->face, u, v)) {
				const struct rect *f = &lk->face;

				paint_face(lk, -lk->fx + 2 * lk->fx * (u -
				    f->u0) / (f->u1 - f->u0), lk->fy - 2 *
				    lk->fy * (v - f->v0) / (f->v1 - f->v0), px,
				    &p);
			}
			for (k = 0; k < NSWATCH; k++) {
				struct rect r = swatch(k);

				if (in_rect(&r, u, v))
					paint_swatch(lk, k, (u - r.u0) /
					    (r.u1 - r.u0), (v - r.v0) /
					    (r.v1 - r.v0), &p);
			}
			for (k = 0; k < 3; k++)
				base[o + k] = (uint8_t)(clamp01(p.rgb[k]) *
				    255 + 0.5);
			mr[o] = 255;
			mr[o + 1] = (uint8_t)(clamp01(p.rough) * 255 + 0.5);
			mr[o + 2] = (uint8_t)(clamp01(p.metal) * 255 + 0.5);
			hf[(size_t)y * TEX + x] = (float)p.h;
		}
	/* Tangent-space normals: x along +u, y along image up (-v). */
	for (y = 0; y < TEX; y++)
		for (x = 0; x < TEX; x++) {
			unsigned xl = x ? x - 1 : x, xr = x + 1 < TEX ? x + 1 : x;
			unsigned yu = y ? y - 1 : y, yd = y + 1 < TEX ? y + 1 : y;
			double s = 1.5;
			double dx = (hf[(size_t)y * TEX + xr] -
			    hf[(size_t)y * TEX + xl]) * s;
			double dy = (hf[(size_t)yu * TEX + x] -
			    hf[(size_t)yd * TEX + x]) * s;
			double n[3] = { -dx, -dy, 1 };
			size_t o = ((size_t)y * TEX + x) * 3;

			norm3(n);
			for (k = 0; k < 3; k++)
				nrm[o + k] = (uint8_t)((n[k] * 0.5 + 0.5) *
				    255 + 0.5);
		}
	free(hf);
	return 0;
}

static void
look_init(struct look *lk, const char *prompt, enum shape shape)
{
	struct mi_gen_rng r;
	double h0, W = 0.98, H = 0.87, sc;
	unsigned k;

	memset(lk, 0, sizeof(*lk));
	mi_gen_rng_seed(&r, prompt, "model");
	lk->shape = shape;
	h0 = mi_gen_rng_unit(&r);
	for (k = 0; k < 6; k++)
		hsv(h0 + k * 0.618034, mi_gen_rng_range(&r, 0.55, 0.9),
		    mi_gen_rng_range(&r, 0.7, 0.95), lk->col[k]);
	/* Stage floors are wood-toned whatever the palette. */
	hsv(0.07 + mi_gen_rng_range(&r, -0.02, 0.03), 0.6,
	    mi_gen_rng_range(&r, 0.45, 0.65), lk->col[5]);
	if (mi_gen_has_word(prompt, "silver") ||
	    mi_gen_has_word(prompt, "chrome"))
		k = 1;
	else if (mi_gen_has_word(prompt, "bronze") ||
	    mi_gen_has_word(prompt, "copper"))
		k = 2;
	else if (mi_gen_has_word(prompt, "gold"))
		k = 0;
	else
		k = mi_gen_rng_below(&r, 3);
	if (k == 0) {
		lk->metal[0] = 1.0;
		lk->metal[1] = 0.78;
		lk->metal[2] = 0.34;
	} else if (k == 1) {
		lk->metal[0] = lk->metal[1] = 0.95;
		lk->metal[2] = 0.97;
	} else {
		lk->metal[0] = 0.8;
		lk->metal[1] = 0.5;
		lk->metal[2] = 0.3;
	}
	lk->segs = 8 + 2 * mi_gen_rng_below(&r, 5);
	lk->phase = mi_gen_rng_range(&r, 0, 2 * M_PI);
	switch (shape) {
	case CARD:
		lk->fx = 0.63;
		lk->fy = 0.93;
		break;
	case PLATE:
		lk->fx = 1.05;
		lk->fy = 0.5;
		lk->segs = 3;
		break;
	case STAGE:
		lk->fx = lk->fy = 1.6;
		break;
	default:
		lk->fx = lk->fy = 1.0;
		break;
	}
	/* The face area keeps square texels, above the swatch row. */
	sc = fmin(W / (2 * lk->fx), H / (2 * lk->fy));
	lk->face.u0 = 0.5 - lk->fx * sc;
	lk->face.u1 = 0.5 + lk->fx * sc;
	lk->face.v0 = 0.445 - lk->fy * sc;
	lk->face.v1 = 0.445 + lk->fy * sc;
}

static enum shape
pick_shape(const char *prompt, const char *name, struct mi_err *err)
{
	static const char *const words[][6] = {
		{ "wheel", "spin", "roulette", NULL },
		{ "card", "scratch", "ticket", NULL },
		{ "coin", "token", "chip", "medal", NULL },
		{ "stage", "podium", "platform", NULL },
		{ "plate", "logo", "badge", "sign", "plaque", NULL },
	};
	struct mi_gen_rng r;
	unsigned k, j;

	if (name != NULL) {
		for (k = 0; k < NSHAPES; k++)
			if (strcmp(shape_names[k], name) == 0 ||
			    (k == PLATE && strcmp(name, "logo") == 0))
				return (enum shape)k;
		mi_err_set(err, EX_DATAERR,
		    "unknown shape '%s' (one of " MI_GEN_SHAPES ")", name);
		return NSHAPES;
	}
	for (k = 0; k < NSHAPES; k++)
		for (j = 0; words[k][j]; j++)
			if (mi_gen_has_word(prompt, words[k][j]))
				return (enum shape)k;
	mi_gen_rng_seed(&r, prompt, "shape");
	return (enum shape)mi_gen_rng_below(&r, NSHAPES);
}

/* GLB assembly. */

static int
pad4(struct mi_buf *b, char fill)
{
	while (b->len % 4)
		if (mi_buf_add(b, &fill, 1) == -1)
			return -1;
	return 0;
}

static jv
view(size_t off, size_t len, int target)
{
	jv v = jv_object();

	v = jv_object_set(v, jv_string("buffer"), jv_number(0));
	v = jv_object_set(v, jv_string("byteOffset"), jv_number((double)off));
	v = jv_object_set(v, jv_string("byteLength"), jv_number((double)len));
	if (target)
		v = jv_object_set(v, jv_string("target"), jv_number(target));
	return v;
}

static jv
accessor(unsigned bv, int ctype, size_t count, const char *type)
{
	jv a = jv_object();

	a = jv_object_set(a, jv_string("bufferView"), jv_number(bv));
	a = jv_object_set(a, jv_string("componentType"), jv_number(ctype));
	a = jv_object_set(a, jv_string("count"), jv_number((double)count));
	a = jv_object_set(a, jv_string("type"), jv_string(type));
	return a;
}

static jv
texref(unsigned i)
{
	return jv_object_set(jv_object(), jv_string("index"), jv_number(i));
}

static int
write_glb(const struct mesh *m, const struct look *lk, int pbr,
    struct mi_buf pngs[3], const char *path, struct mi_err *err)
{
	struct mi_buf bin = MI_BUF_INIT, out = MI_BUF_INIT;
	jv views = jv_array(), accs = jv_array(), imgs = jv_array();
	jv texs = jv_array(), attrs, prim, mat, pbrm, doc, mn, mx;
	double lo[3], hi[3];
	size_t i, off;
	unsigned k, nimg = pbr ? 3 : 1, attr;
	int wide = m->nv > 65535, rc = -1;
	char *json = NULL;
	uint32_t hdr[5];

	for (k = 0; k < 3; k++) {
		lo[k] = hi[k] = m->v[0].p[k];
		for (i = 1; i < m->nv; i++) {
			lo[k] = fmin(lo[k], m->v[i].p[k]);
			hi[k] = fmax(hi[k], m->v[i].p[k]);
		}
	}
	/* Attributes, one tightly packed view each. */
	for (attr = 0; attr < (pbr ? 4u : 3u); attr++) {
		static const unsigned comps[] = { 3, 3, 2, 4 };
		static const char *const types[] = { "VEC3", "VEC3", "VEC2",
			"VEC4" };

		off = bin.len;
		for (i = 0; i < m->nv; i++) {
			const float *f = attr == 0 ? m->v[i].p : attr == 1 ?
			    m->v[i].n : attr == 2 ? m->v[i].uv : m->v[i].t;

			if (mi_buf_add(&bin, f, comps[attr] * 4) == -1)
				goto oom;
		}
		views = jv_array_append(views, view(off, bin.len - off, 34962));
		accs = jv_array_append(accs, accessor(attr, 5126, m->nv,
		    types[attr]));
	}
	mn = jv_array();
	mx = jv_array();
	for (k = 0; k < 3; k++) {
		mn = jv_array_append(mn, jv_number(lo[k]));
		mx = jv_array_append(mx, jv_number(hi[k]));
	}
	accs = jv_array_set(accs, 0, jv_object_set(jv_object_set(
	    jv_array_get(jv_copy(accs), 0), jv_string("min"), mn),
	    jv_string("max"), mx));
	off = bin.len;
	for (i = 0; i < m->ni; i++) {
		uint16_t s = (uint16_t)m->idx[i];

		if (mi_buf_add(&bin, wide ? (const void *)&m->idx[i] :
		    (const void *)&s, wide ? 4 : 2) == -1)
			goto oom;
	}
	views = jv_array_append(views, view(off, bin.len - off, 34963));
	accs = jv_array_append(accs, accessor(attr, wide ? 5125 : 5123, m->ni,
	    "SCALAR"));
	if (pad4(&bin, 0) == -1)
		goto oom;
	for (k = 0; k < nimg; k++) {
		off = bin.len;
		if (mi_buf_add(&bin, pngs[k].buf, pngs[k].len) == -1)
			goto oom;
		views = jv_array_append(views, view(off, pngs[k].len, 0));
		if (pad4(&bin, 0) == -1)
			goto oom;
		imgs = jv_array_append(imgs, jv_object_set(jv_object_set(
		    jv_object(), jv_string("bufferView"), jv_number(attr + 1 +
		    k)), jv_string("mimeType"), jv_string("image/png")));
		texs = jv_array_append(texs, jv_object_set(jv_object_set(
		    jv_object(), jv_string("sampler"), jv_number(0)),
		    jv_string("source"), jv_number(k)));
	}

	attrs = jv_object();
	attrs = jv_object_set(attrs, jv_string("POSITION"), jv_number(0));
	attrs = jv_object_set(attrs, jv_string("NORMAL"), jv_number(1));
	attrs = jv_object_set(attrs, jv_string("TEXCOORD_0"), jv_number(2));
	if (pbr)
		attrs = jv_object_set(attrs, jv_string("TANGENT"),
		    jv_number(3));
	prim = jv_object();
	prim = jv_object_set(prim, jv_string("attributes"), attrs);
	prim = jv_object_set(prim, jv_string("indices"), jv_number(attr));
	prim = jv_object_set(prim, jv_string("material"), jv_number(0));
	prim = jv_object_set(prim, jv_string("mode"), jv_number(4));
	pbrm = jv_object();
	pbrm = jv_object_set(pbrm, jv_string("baseColorTexture"), texref(0));
	if (pbr) {
		pbrm = jv_object_set(pbrm, jv_string("metallicRoughnessTexture"),
		    texref(1));
		pbrm = jv_object_set(pbrm, jv_string("metallicFactor"),
		    jv_number(1));
		pbrm = jv_object_set(pbrm, jv_string("roughnessFactor"),
		    jv_number(1));
	} else {
		pbrm = jv_object_set(pbrm, jv_string("metallicFactor"),
		    jv_number(0));
		pbrm = jv_object_set(pbrm, jv_string("roughnessFactor"),
		    jv_number(0.5));
	}
	mat = jv_object();
	mat = jv_object_set(mat, jv_string("name"),
	    jv_string(shape_names[lk->shape]));
	mat = jv_object_set(mat, jv_string("pbrMetallicRoughness"), pbrm);
	if (pbr)
		mat = jv_object_set(mat, jv_string("normalTexture"), texref(2));

	doc = jv_object();
	doc = jv_object_set(doc, jv_string("asset"), jv_object_set(
	    jv_object_set(jv_object(), jv_string("version"), jv_string("2.0")),
	    jv_string("generator"), jv_string("mi local generator")));
	doc = jv_object_set(doc, jv_string("scene"), jv_number(0));
	doc = jv_object_set(doc, jv_string("scenes"), JV_ARRAY(jv_object_set(
	    jv_object(), jv_string("nodes"), JV_ARRAY(jv_number(0)))));
	doc = jv_object_set(doc, jv_string("nodes"), JV_ARRAY(jv_object_set(
	    jv_object_set(jv_object(), jv_string("mesh"), jv_number(0)),
	    jv_string("name"), jv_string(shape_names[lk->shape]))));
	doc = jv_object_set(doc, jv_string("meshes"), JV_ARRAY(jv_object_set(
	    jv_object_set(jv_object(), jv_string("name"),
	    jv_string(shape_names[lk->shape])), jv_string("primitives"),
	    JV_ARRAY(prim))));
	doc = jv_object_set(doc, jv_string("materials"), JV_ARRAY(mat));
	doc = jv_object_set(doc, jv_string("textures"), texs);
	texs = jv_invalid();
	doc = jv_object_set(doc, jv_string("images"), imgs);
	imgs = jv_invalid();
	{
		jv smp = jv_object();

		smp = jv_object_set(smp, jv_string("magFilter"),
		    jv_number(9729));
		smp = jv_object_set(smp, jv_string("minFilter"),
		    jv_number(9987));
		smp = jv_object_set(smp, jv_string("wrapS"), jv_number(33071));
		smp = jv_object_set(smp, jv_string("wrapT"), jv_number(33071));
		doc = jv_object_set(doc, jv_string("samplers"), JV_ARRAY(smp));
	}
	doc = jv_object_set(doc, jv_string("buffers"), JV_ARRAY(jv_object_set(
	    jv_object(), jv_string("byteLength"), jv_number((double)bin.len))));
	doc = jv_object_set(doc, jv_string("bufferViews"), views);
	views = jv_invalid();
	doc = jv_object_set(doc, jv_string("accessors"), accs);
	accs = jv_invalid();
	{
		jv s = jv_dump_string(doc, 0);

		json = strdup(jv_string_value(s));
		jv_free(s);
	}
	if (json == NULL)
		goto oom;

	/* Header, JSON chunk (space padded), BIN chunk (zero padded). */
	if (mi_buf_add(&out, "glTF", 4) == -1)
		goto oom;
	hdr[0] = 2;
	hdr[1] = 0;		/* total length, below */
	hdr[2] = 0;
	hdr[3] = 0x4E4F534A;	/* "JSON" */
	if (mi_buf_add(&out, hdr, 16) == -1 || mi_buf_adds(&out, json) == -1 ||
	    pad4(&out, ' ') == -1)
		goto oom;
	hdr[2] = (uint32_t)(out.len - 20);
	memcpy(out.buf + 12, &hdr[2], 4);
	hdr[0] = (uint32_t)bin.len;
	hdr[1] = 0x004E4942;	/* "BIN\0" */
	if (mi_buf_add(&out, hdr, 8) == -1 ||
	    mi_buf_add(&out, bin.buf, bin.len) == -1)
		goto oom;
	hdr[0] = (uint32_t)out.len;
	memcpy(out.buf + 8, &hdr[0], 4);
	rc = mi_gen_write_file(path, out.buf, out.len, err);
	goto out;
oom:
	rc = mi_err_set(err, EX_SOFTWARE, "out of memory");
out:
	jv_free(views);
	jv_free(accs);
	jv_free(imgs);
	jv_free(texs);
	free(json);
	mi_buf_release(&out);
	mi_buf_release(&bin);
	return rc;
}

int
mi_gen_model(const char *prompt, const char *shape, unsigned max_triangles,
    int pbr, const char *path, struct mi_err *err)
{
	static const unsigned levels[] = { 256, 192, 128, 96, 64, 48, 32, 24,
		16, 12, 8 };
	struct mesh m;
	struct look lk;
	struct mi_buf pngs[3] = { MI_BUF_INIT, MI_BUF_INIT, MI_BUF_INIT };
	uint8_t *tex[3] = { NULL, NULL, NULL };
	enum shape sh = pick_shape(prompt, shape, err);
	size_t least = 0;
	unsigned l, k;
	int rc = -1;

	if (sh == NSHAPES)
		return -1;
	look_init(&lk, prompt, sh);
	memset(&m, 0, sizeof(m));
	/* The finest level of detail that fits the triangle budget. */
	for (l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
		m.nv = m.ni = 0;
		build(&m, &lk, levels[l]);
		if (m.oom)
			break;
		least = m.ni / 3;
		if (m.ni / 3 <= max_triangles)
			break;
	}
	if (m.oom) {
		rc = mi_err_set(err, EX_SOFTWARE, "out of memory");
		goto out;
	}
	if (m.ni / 3 > max_triangles) {
		rc = mi_err_set(err, EX_DATAERR,
		    "max_triangles %u too small for a %s (needs %zu)",
		    max_triangles, shape_names[sh], least);
		goto out;
	}
	for (k = 0; k < 3; k++)
		if ((tex[k] = malloc((size_t)TEX * TEX * 3)) == NULL) {
			rc = mi_err_set(err, EX_SOFTWARE, "out of memory");
			goto out;
		}
	if (paint(&lk, tex[0], tex[1], tex[2]) == -1) {
		rc = mi_err_set(err, EX_SOFTWARE, "out of memory");
		goto out;
	}
	for (k = 0; k < (pbr ? 3u : 1u); k++)
		if (mi_gen_png_encode(tex[k], TEX, TEX, 3, 6, &pngs[k],
		    err) == -1)
			goto out;
	rc = write_glb(&m, &lk, pbr, pngs, path, err);
out:
	for (k = 0; k < 3; k++) {
		free(tex[k]);
		mi_buf_release(&pngs[k]);
	}
	free(m.v);
	free(m.idx);
	return rc;
}

int
mi_gen_glb(const char *prompt, unsigned max_triangles, const char *path,
    struct mi_err *err)
{
	return mi_gen_model(prompt, NULL, max_triangles, 1, path, err);
}
