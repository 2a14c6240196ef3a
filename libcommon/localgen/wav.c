/*
 * localgen/wav.c - sound effects (44100 Hz) and background music
 * (22050 Hz) as 16-bit mono PCM WAV files, synthesised from wavetable
 * voices, decaying noise and pitch sweeps.
 *
 * Every file has exactly round(seconds * rate) samples and is normalised
 * to -1 dBFS.  The prompt's hash picks pitch, tempo, key, chord
 * progression and melody, so two prompts give two different pieces.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "localgen/blocks.h"
#include "banned.h"

#define SFX_RATE 44100
#define BGM_RATE 22050
#define TABN 2048

enum tab { T_SINE, T_SAW, T_SQUARE, T_TRI, T_KEYS, T_STRINGS, T_NTABS };

/* Harmonic limits of the band-limited copies of each table. */
static const unsigned harm_limit[] = { 10, 6, 3, 1 };
#define NLIMITS (sizeof(harm_limit) / sizeof(harm_limit[0]))

struct synth {
	float *buf;
	size_t n;
	double rate;
	uint32_t noise;
	float tab[T_NTABS][NLIMITS][TABN + 1];
};

/* Fills one table: one cycle of timbre t with at most nh harmonics. */
static void
fill_table(float *tab, enum tab t, unsigned nh)
{
	double peak = 0;
	unsigned i, k;

	for (i = 0; i <= TABN; i++) {
		double ph = 2 * M_PI * i / TABN, v = 0;

		for (k = 1; k <= nh; k++) {
			double a = 0;

			switch (t) {
			case T_SINE:
				a = k == 1;
				break;
			case T_SAW:
				a = 1.0 / k;
				break;
			case T_SQUARE:
				a = k % 2 ? 1.0 / k : 0;
				break;
			case T_TRI:
				a = k % 2 ? ((k / 2) % 2 ? -1.0 : 1.0) / (k * k) : 0;
				break;
			case T_KEYS:
				a = k <= 4 ? 1.0 / (k * k * 0.8) : 0;
				break;
			case T_STRINGS:
				a = k <= 8 ? 1.0 / k * (k == 2 ? 1.3 : 1) : 0;
				break;
			default:
				break;
			}
			v += a * sin(k * ph);
		}
		tab[i] = (float)v;
		if (fabs(v) > peak)
			peak = fabs(v);
	}
	for (i = 0; i <= TABN; i++)
		tab[i] = (float)(tab[i] / peak);
}

static void
synth_tables(struct synth *s)
{
	unsigned t, l;

	for (t = 0; t < T_NTABS; t++)
		for (l = 0; l < NLIMITS; l++)
			fill_table(s->tab[t][l], (enum tab)t, harm_limit[l]);
}

/* The richest copy of table t whose harmonics at freq stay below Nyquist. */
static const float *
table(const struct synth *s, enum tab t, double freq)
{
	unsigned l;

	for (l = 0; l + 1 < NLIMITS; l++)
		if (freq * harm_limit[l] < s->rate * 0.45)
			break;
	return s->tab[t][l];
}

static int
synth_init(struct synth *s, double seconds, double rate, struct mi_gen_rng *r)
{
	s->rate = rate;
	s->n = (size_t)llround(seconds * rate);
	s->buf = calloc(s->n ? s->n : 1, sizeof(*s->buf));
	s->noise = (uint32_t)mi_gen_rng_next(r) | 1;
	if (s->buf == NULL)
		return -1;
	synth_tables(s);
	return 0;
}

static float
noise(struct synth *s)
{
	uint32_t x = s->noise;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	s->noise = x;
	return (float)((int32_t)x / 2147483648.0);
}

static float
lookup(const float *tab, double ph)
{
	double p = ph * TABN;
	unsigned i = (unsigned)p;
	float f = (float)(p - i);

	i &= TABN - 1;
	return tab[i] + (tab[i + 1] - tab[i]) * f;
}

static double
midi_hz(double note)
{
	return 440.0 * pow(2, (note - 69) / 12);
}

/* Sample range [*a, *b) of the span t0 .. t0 + len, clipped to the buffer. */
static int
span(const struct synth *s, double t0, double len, size_t *a, size_t *b)
{
	double x0 = t0 * s->rate, x1 = (t0 + len) * s->rate;

	if (x0 < 0)
		x0 = 0;
	if (x1 > (double)s->n)
		x1 = (double)s->n;
	if (x1 <= x0)
		return 0;
	*a = (size_t)x0;
	*b = (size_t)x1;
	return 1;
}

struct voice {
	enum tab tab;
	double amp;
	double att, decay, rel;	/* seconds; decay 0 holds the level */
	double vib;		/* vibrato depth as a frequency ratio */
	double drive;		/* > 0: soft-clipped, like an overdriven amp */
	double glide;		/* frequency ratio reached at the end */
};

/* One note: freq for dur seconds plus release. */
static void
play(struct synth *s, const struct voice *v, double t0, double dur,
    double freq)
{
	size_t a, b, i;
	double ph = 0, total = dur + v->rel;
	double kdec = v->decay > 0 ? exp(-1 / (v->decay * s->rate)) : 1;
	double lvl = 1;
	const float *tab = table(s, v->tab, freq * (v->glide > 1 ? v->glide :
	    1));

	if (!span(s, t0, total, &a, &b))
		return;
	for (i = a; i < b; i++) {
		double t = i / s->rate - t0, env, f, x;

		if (t < 0)
			continue;
		env = v->att > 0 && t < v->att ? t / v->att : 1;
		env *= lvl;
		lvl *= kdec;
		if (t > dur)
			env *= v->rel > 0 ? fmax(0, 1 - (t - dur) / v->rel) : 0;
		f = freq;
		if (v->glide != 0 && v->glide != 1)
			f *= pow(v->glide, t / total);
		if (v->vib > 0)
			f *= 1 + v->vib * lookup(s->tab[T_SINE][NLIMITS - 1],
			    fmod(5.5 * t, 1.0)) * fmin(1, t / 0.3);
		x = lookup(tab, ph);
		ph += f / s->rate;
		ph -= floor(ph);
		if (v->drive > 0) {
			double d = x * v->drive;

			x = d * (27 + d * d) / (27 + 9 * d * d);
			x = fmax(-1, fmin(1, x));
		}
		s->buf[i] += (float)(x * env * v->amp);
	}
}

/*
 * Noise through a one-pole low-pass of cutoff lp (Hz; 0: none), minus a
 * low-pass at hp (Hz; 0: none), with an exponential decay tau (0: flat)
 * and a linear attack.
 */
static void
hiss(struct synth *s, double t0, double len, double amp, double tau,
    double att, double lp, double hp)
{
	size_t a, b, i;
	double kl = lp > 0 ? 1 - exp(-2 * M_PI * lp / s->rate) : 1;
	double kh = hp > 0 ? 1 - exp(-2 * M_PI * hp / s->rate) : 0;
	double kdec = tau > 0 ? exp(-1 / (tau * s->rate)) : 1;
	double yl = 0, yh = 0, lvl = 1;

	if (!span(s, t0, len, &a, &b))
		return;
	for (i = a; i < b; i++) {
		double t = i / s->rate - t0, x = noise(s), env;

		yl += kl * (x - yl);
		yh += kh * (yl - yh);
		env = att > 0 && t < att ? t / att : 1;
		s->buf[i] += (float)((yl - yh) * env * lvl * amp);
		lvl *= kdec;
	}
}

/* A decaying sine whose pitch falls from f0 toward f1 (drums, thumps). */
static void
thump(struct synth *s, double t0, double amp, double f0, double f1,
    double tau, double ftau)
{
	size_t a, b, i;
	double ph = 0, lvl = 1, fl = 1;
	double kdec = exp(-1 / (tau * s->rate)), kf = exp(-1 / (ftau *
	    s->rate));

	if (!span(s, t0, tau * 6, &a, &b))
		return;
	for (i = a; i < b; i++) {
		s->buf[i] += (float)(lookup(s->tab[T_SINE][NLIMITS - 1], ph) *
		    lvl * amp);
		ph += (f1 + (f0 - f1) * fl) / s->rate;
		ph -= floor(ph);
		lvl *= kdec;
		fl *= kf;
	}
}

/* Normalises to -1 dBFS with short fades and writes the WAV file. */
static int
synth_write(struct synth *s, const char *path, struct mi_err *err)
{
	size_t i, fade = (size_t)(s->rate * 0.005), data = s->n * 2;
	double peak = 0, g;
	uint8_t *out;
	int rc;

	for (i = 0; i < s->n; i++)
		if (fabs(s->buf[i]) > peak)
			peak = fabs(s->buf[i]);
	g = peak > 0 ? 0.891 / peak : 0;
	out = malloc(44 + data);
	if (out == NULL)
		return mi_err_set(err, EX_SOFTWARE, "out of memory");
	memcpy(out, "RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0", 24);
	out[4] = (uint8_t)(36 + data);
	out[5] = (uint8_t)((36 + data) >> 8);
	out[6] = (uint8_t)((36 + data) >> 16);
	out[7] = (uint8_t)((36 + data) >> 24);
	{
		uint32_t rate = (uint32_t)s->rate, bps = rate * 2;
		uint8_t tail[20] = {
			(uint8_t)rate, (uint8_t)(rate >> 8),
			(uint8_t)(rate >> 16), (uint8_t)(rate >> 24),
			(uint8_t)bps, (uint8_t)(bps >> 8),
			(uint8_t)(bps >> 16), (uint8_t)(bps >> 24),
			2, 0, 16, 0, 'd', 'a', 't', 'a',
			(uint8_t)data, (uint8_t)(data >> 8),
			(uint8_t)(data >> 16), (uint8_t)(data >> 24)
		};

		memcpy(out + 24, tail, sizeof(tail));
	}
	for (i = 0; i < s->n; i++) {
		double v = s->buf[i] * g;
		long q;

		if (i < fade)
			v *= (double)i / fade;
		if (s->n - i <= fade)
			v *= (double)(s->n - 1 - i) / fade;
		q = lrint(v * 32767);
		q = q > 32767 ? 32767 : q < -32768 ? -32768 : q;
		out[44 + i * 2] = (uint8_t)(q & 0xff);
		out[45 + i * 2] = (uint8_t)((q >> 8) & 0xff);
	}
	rc = mi_gen_write_file(path, out, 44 + data, err);
	free(out);
	return rc;
}

/* Sound effects. */

struct sfx {
	const char *name;
	double dflt;
	void (*fn)(struct synth *, struct mi_gen_rng *, double, double);
};

static void
sfx_click(struct synth *s, struct mi_gen_rng *r, double d, double pm)
{
	struct voice v = { T_SINE, 0.8, 0, 0.006, 0, 0, 0, 0.6 };
	double gap = mi_gen_rng_range(r, 0.05, 0.09);

	(void)d;
	play(s, &v, 0, 0.05, 2400 * pm);
	hiss(s, 0, 0.02, 0.7, 0.002, 0, 0, 800);
	v.amp = 0.45;
	play(s, &v, gap, 0.04, 3100 * pm);
	hiss(s, gap, 0.015, 0.4, 0.0015, 0, 0, 1500);
}

static void
sfx_spin(struct synth *s, struct mi_gen_rng *r, double d, double pm)
{
	struct voice v = { T_TRI, 0.5, 0, 0.004, 0, 0, 0, 0 };
	double t = 0, f = mi_gen_rng_range(r, 2400, 3400) * pm;

	/* A clicker slowing down: the gaps grow as the wheel loses speed. */
	while (t < d - 0.02) {
		double x = t / d;

		play(s, &v, t, 0.02, f);
		hiss(s, t, 0.01, 0.35, 0.0015, 0, 0, 2000);
		t += 0.03 + 0.25 * x * x;
	}
	hiss(s, 0, d, 0.12, d / 2, 0.05, 700, 150);
}

static void
sfx_flip(struct synth *s, struct mi_gen_rng *r, double d, double pm)
{
	double t = 0, step = mi_gen_rng_range(r, 0.45, 0.7);

	while (t + 0.3 <= d || t == 0) {
		hiss(s, t, 0.22, 0.6, 0, 0.18, 3500 * pm, 600);
		thump(s, t + 0.2, 0.7, 260 * pm, 120, 0.03, 0.01);
		hiss(s, t + 0.2, 0.03, 0.5, 0.004, 0, 6000, 300);
		t += step;
	}
}

static void
sfx_scratch(struct synth *s, struct mi_gen_rng *r, double d, double pm)
{
	double t = 0;

	/* Strokes of grainy, band-limited noise, each a little different. */
	while (t < d - 0.08) {
		double len = mi_gen_rng_range(r, 0.07, 0.14);

		hiss(s, t, len, mi_gen_rng_range(r, 0.5, 0.9), len / 2, 0.01,
		    mi_gen_rng_range(r, 3000, 7000) * pm,
		    mi_gen_rng_range(r, 600, 1500));
		t += len + mi_gen_rng_range(r, 0.0, 0.05);
	}
}

static void
bell(struct synth *s, double t0, double f, double amp, double tau)
{
	static const double part[] = { 1, 2.0, 3.01, 4.2 };
	static const double pamp[] = { 1, 0.5, 0.25, 0.12 };
	struct voice v = { T_SINE, 0, 0.002, 0, 0, 0, 0, 0 };
	unsigned k;

	for (k = 0; k < 4; k++) {
		v.amp = amp * pamp[k];
		v.decay = tau / (1 + k);
		play(s, &v, t0, tau * 5, f * part[k]);
	}
}

static void
sfx_match(struct synth *s, struct mi_gen_rng *r, double d, double pm)
{
	double f = midi_hz(76 + mi_gen_rng_below(r, 5)) * pm;

	bell(s, 0, f, 0.6, d / 4);
	bell(s, 0.12, f * 1.5, 0.6, d / 4);
	bell(s, 0.24, f * 2, 0.5, d / 3);
}

static void
sfx_win(struct synth *s, struct mi_gen_rng *r, double d, double pm)
{
	static const int arp[] = { 0, 4, 7, 12, 16 };
	struct voice v = { T_SQUARE, 0.35, 0.005, 0.25, 0.03, 0, 0, 0 };
	double root = 72 + mi_gen_rng_below(r, 5), step = fmin(0.09, d / 10);
	unsigned k;

	for (k = 0; k < 5; k++)
		play(s, &v, k * step, step, midi_hz(root + arp[k]) * pm);
	v.decay = d / 2;
	v.vib = 0.006;
	v.rel = 0.1;
	for (k = 0; k < 3; k++)
		play(s, &v, 5 * step, d - 5 * step - 0.1,
		    midi_hz(root + 12 + arp[k]) * pm);
	for (k = 0; k < 8; k++)
		bell(s, 5 * step + mi_gen_rng_range(r, 0, d / 2),
		    midi_hz(root + 24 + arp[mi_gen_rng_below(r, 5)]) * pm,
		    0.15, 0.15);
}

static void
sfx_lose(struct synth *s, struct mi_gen_rng *r, double d, double pm)
{
	struct voice v = { T_SAW, 0.45, 0.02, 0, 0.05, 0, 0, 0 };
	double root = 62 + mi_gen_rng_below(r, 4), q = d / 5;
	unsigned k;

	for (k = 0; k < 3; k++)
		play(s, &v, k * q * 1.1, q, midi_hz(root - k) * pm);
	v.vib = 0.02;
	v.glide = 0.94;
	v.rel = 0.2;
	play(s, &v, 3.3 * q, d - 3.3 * q - 0.2, midi_hz(root - 3) * pm);
}

static void
sfx_countdown(struct synth *s, struct mi_gen_rng *r, double d, double pm)
{
	struct voice v = { T_TRI, 0.7, 0.003, 0, 0.01, 0, 0, 0 };
	double q = d / 4, f = mi_gen_rng_range(r, 800, 1000) * pm;
	unsigned k;

	for (k = 0; k < 3; k++)
		play(s, &v, k * q, fmin(0.12, q / 2), f);
	v.decay = q / 2;
	play(s, &v, 3 * q, q * 0.8, f * 2);
}

static void
sfx_reveal(struct synth *s, struct mi_gen_rng *r, double d, double pm)
{
	struct voice v = { T_SAW, 0.3, d * 0.6, 0, 0.02, 0, 0, 8 };
	double rise = d * 0.65, root = 67 + mi_gen_rng_below(r, 5);

	play(s, &v, 0, rise, 200 * pm);
	hiss(s, 0, rise, 0.25, 0, rise, 9000, 2000);
	bell(s, rise, midi_hz(root) * pm, 0.5, (d - rise) / 2);
	bell(s, rise, midi_hz(root + 4) * pm, 0.4, (d - rise) / 2);
	bell(s, rise, midi_hz(root + 7) * pm, 0.4, (d - rise) / 2);
	bell(s, rise + 0.05, midi_hz(root + 12) * pm, 0.3, (d - rise) / 3);
}

static void
sfx_confetti(struct synth *s, struct mi_gen_rng *r, double d, double pm)
{
	unsigned k, n = (unsigned)(30 * d);

	thump(s, 0, 0.9, 180 * pm, 50, 0.06, 0.02);
	hiss(s, 0, 0.08, 0.8, 0.02, 0, 5000, 200);
	for (k = 0; k < n; k++) {
		/* Pops thin out as the confetti falls. */
		double u = mi_gen_rng_unit(r), t = 0.03 + d * 0.9 * u * u;

		if (mi_gen_rng_unit(r) < 0.5)
			hiss(s, t, 0.02, mi_gen_rng_range(r, 0.1, 0.4), 0.004,
			    0, mi_gen_rng_range(r, 2000, 9000), 500);
		else
			bell(s, t, mi_gen_rng_range(r, 2500, 5000) * pm,
			    mi_gen_rng_range(r, 0.05, 0.15), 0.03);
	}
}

static const struct sfx sfxs[] = {
	{ "click", 0.5, sfx_click },
	{ "spin", 3.0, sfx_spin },
	{ "flip", 0.6, sfx_flip },
	{ "scratch", 1.5, sfx_scratch },
	{ "match", 1.0, sfx_match },
	{ "win", 2.5, sfx_win },
	{ "lose", 2.0, sfx_lose },
	{ "countdown", 4.0, sfx_countdown },
	{ "reveal", 2.5, sfx_reveal },
	{ "confetti", 2.0, sfx_confetti },
};

static const struct sfx *
sfx_find(const char *name)
{
	size_t i;

	for (i = 0; name && i < sizeof(sfxs) / sizeof(sfxs[0]); i++)
		if (strcmp(sfxs[i].name, name) == 0)
			return &sfxs[i];
	return NULL;
}

double
mi_gen_sfx_default(const char *sfx_type)
{
	const struct sfx *x = sfx_find(sfx_type);

	return x ? x->dflt : 1;
}

int
mi_gen_sfx(const char *prompt, const char *sfx_type, double seconds,
    const char *path, struct mi_err *err)
{
	const struct sfx *x = sfx_find(sfx_type);
	struct mi_gen_rng r;
	struct synth *s;
	double pm;
	int rc;

	if (x == NULL)
		return mi_err_set(err, EX_DATAERR,
		    "unknown sfx_type '%s' (one of " MI_GEN_SFX_TYPES ")",
		    sfx_type ? sfx_type : "");
	if (!(seconds >= 0.5 - 1e-9 && seconds <= 5 + 1e-9))
		return mi_err_set(err, EX_DATAERR,
		    "sfx duration %g s out of range 0.5..5", seconds);
	mi_gen_rng_seed(&r, prompt, sfx_type);
	/* Up to three semitones either way. */
	pm = pow(2, mi_gen_rng_range(&r, -3, 3) / 12);
	s = malloc(sizeof(*s));
	if (s == NULL || synth_init(s, seconds, SFX_RATE, &r) == -1) {
		free(s);
		return mi_err_set(err, EX_SOFTWARE, "out of memory");
	}
	x->fn(s, &r, seconds, pm);
	rc = synth_write(s, path, err);
	free(s->buf);
	free(s);
	return rc;
}

/* Background music. */

enum quality { MAJ, MIN, DOM7, MAJ7, MIN7, POW };

struct chord {
	int root;		/* semitones above the key */
	enum quality q;
};

struct genre {
	const char *name;
	double bpm_lo, bpm_hi;
	struct chord prog[2][4];
	int minor;		/* melody from the minor pentatonic */
	int swing;
};

static const struct genre genres[] = {
	{ "electronic", 118, 130, { { { 0, MIN }, { 8, MAJ }, { 3, MAJ },
	    { 10, MAJ } }, { { 0, MIN }, { 5, MIN }, { 8, MAJ }, { 7, MAJ } } },
	    1, 0 },
	{ "orchestral", 70, 96, { { { 0, MIN }, { 8, MAJ }, { 3, MAJ },
	    { 10, MAJ } }, { { 0, MAJ }, { 7, MAJ }, { 9, MIN }, { 5, MAJ } } },
	    1, 0 },
	{ "rock", 110, 140, { { { 0, POW }, { 10, POW }, { 5, POW },
	    { 7, POW } }, { { 0, POW }, { 5, POW }, { 7, POW }, { 5, POW } } },
	    0, 0 },
	{ "jazz", 96, 140, { { { 2, MIN7 }, { 7, DOM7 }, { 0, MAJ7 },
	    { 9, DOM7 } }, { { 0, MAJ7 }, { 9, MIN7 }, { 2, MIN7 },
	    { 7, DOM7 } } }, 0, 1 },
	{ "ambient", 60, 80, { { { 0, MAJ7 }, { 5, MAJ7 }, { 9, MIN7 },
	    { 4, MIN7 } }, { { 0, MAJ7 }, { 2, MIN7 }, { 5, MAJ7 },
	    { 7, MAJ } } }, 0, 0 },
	{ "pop", 96, 122, { { { 0, MAJ }, { 7, MAJ }, { 9, MIN }, { 5, MAJ } },
	    { { 9, MIN }, { 5, MAJ }, { 0, MAJ }, { 7, MAJ } } }, 0, 0 },
	{ "hip-hop", 82, 96, { { { 0, MIN7 }, { 8, MAJ7 }, { 5, MIN7 },
	    { 7, MIN } }, { { 0, MIN7 }, { 3, MAJ7 }, { 5, MIN7 },
	    { 10, DOM7 } } }, 1, 1 },
};

static unsigned
chord_notes(const struct chord *c, int base, int *out)
{
	static const int iv[][4] = {
		{ 0, 4, 7, -1 }, { 0, 3, 7, -1 }, { 0, 4, 7, 10 },
		{ 0, 4, 7, 11 }, { 0, 3, 7, 10 }, { 0, 7, 12, -1 },
	};
	unsigned k, n = 0;

	for (k = 0; k < 4; k++)
		if (iv[c->q][k] >= 0)
			out[n++] = base + c->root + iv[c->q][k];
	return n;
}

struct song {
	const struct genre *g;
	struct synth *s;
	double beat;		/* seconds */
	int key;		/* MIDI note of the key's root, octave 3 */
	const struct chord *prog;
	int mel[2][32];		/* two 4-bar phrases, eighth notes, -1 rest */
};

static void
make_melody(struct song *m, struct mi_gen_rng *r)
{
	static const int majp[] = { 0, 2, 4, 7, 9 }, minp[] = { 0, 3, 5, 7,
		10 };
	const int *pent = m->g->minor ? minp : majp;
	unsigned ph, i;

	for (ph = 0; ph < 2; ph++) {
		int deg = 5 + (int)mi_gen_rng_below(r, 3);

		for (i = 0; i < 32; i++) {
			/* Rests more often off the beat; steps, not leaps. */
			if (mi_gen_rng_unit(r) < (i % 2 ? 0.55 : 0.25)) {
				m->mel[ph][i] = -1;
				continue;
			}
			deg += (int)mi_gen_rng_below(r, 5) - 2;
			deg = deg < 2 ? 2 : deg > 11 ? 11 : deg;
			m->mel[ph][i] = 12 * (deg / 5) + pent[deg % 5];
		}
		m->mel[ph][31] = -1;
		m->mel[ph][0] = 12;
	}
}

static void
drums(struct song *m, struct mi_gen_rng *r, double t, unsigned beat,
    int fill)
{
	struct synth *s = m->s;
	const char *g = m->g->name;
	double b = m->beat, sw = m->g->swing ? b * 2 / 3 : b / 2;

	(void)r;
	if (strcmp(g, "electronic") == 0) {
		thump(s, t, 0.9, 160, 48, 0.18, 0.03);
		hiss(s, t + b / 2, 0.1, 0.25, 0.04, 0, 0, 6000);
		if (beat % 2)
			hiss(s, t, 0.2, 0.35, 0.07, 0, 6000, 1200);
	} else if (strcmp(g, "rock") == 0) {
		if (beat % 2 == 0)
			thump(s, t, 0.9, 140, 55, 0.14, 0.025);
		else {
			hiss(s, t, 0.3, 0.6, 0.1, 0, 7000, 400);
			thump(s, t, 0.35, 220, 180, 0.06, 0.02);
		}
		hiss(s, t, 0.05, 0.2, 0.02, 0, 0, 6000);
		hiss(s, t + b / 2, 0.05, 0.15, 0.02, 0, 0, 6000);
		if (fill && beat == 0)
			hiss(s, t, 1.5, 0.35, 0.5, 0, 9000, 3000);
	} else if (strcmp(g, "jazz") == 0) {
		hiss(s, t, 0.4, 0.1, 0.15, 0, 0, 5000);
		if (beat % 2)
			hiss(s, t + sw, 0.3, 0.07, 0.1, 0, 0, 5000);
		if (beat % 2)
			hiss(s, t, 0.05, 0.1, 0.03, 0, 0, 4000);
		if (beat == 0)
			thump(s, t, 0.35, 90, 60, 0.12, 0.03);
	} else if (strcmp(g, "hip-hop") == 0) {
		if (beat == 0 || (beat == 2 && fill))
			thump(s, t, 1.0, 130, 45, 0.3, 0.04);
		if (beat == 2 && !fill)
			thump(s, t + sw, 0.8, 130, 45, 0.3, 0.04);
		if (beat % 2) {
			hiss(s, t, 0.2, 0.55, 0.09, 0, 5000, 700);
			hiss(s, t + 0.01, 0.2, 0.4, 0.07, 0, 4000, 900);
		}
		hiss(s, t, 0.05, 0.15, 0.02, 0, 0, 7000);
		hiss(s, t + sw, 0.05, 0.1, 0.02, 0, 0, 7000);
	} else if (strcmp(g, "pop") == 0) {
		if (beat % 2 == 0)
			thump(s, t, 0.85, 150, 50, 0.16, 0.03);
		else
			hiss(s, t, 0.25, 0.45, 0.08, 0, 6000, 900);
		hiss(s, t + b / 2, 0.05, 0.15, 0.02, 0, 0, 7000);
	} else if (strcmp(g, "orchestral") == 0) {
		if (beat == 0)
			thump(s, t, 0.8, 95, 70, 0.5, 0.1);
		if (fill && beat == 3) {
			thump(s, t, 0.5, 95, 70, 0.3, 0.1);
			thump(s, t + b / 2, 0.6, 95, 70, 0.3, 0.1);
		}
	}
}

/* One bar of bass, harmony and (when on) melody over chord c. */
static void
bar(struct song *m, double t, const struct chord *c, int full,
    const int *mel)
{
	struct synth *s = m->s;
	const char *g = m->g->name;
	double b = m->beat, bl = 4 * b, sw = m->g->swing ? b * 2 / 3 : b / 2;
	struct voice bass = { T_SAW, 0.5, 0.005, 0.4, 0.04, 0, 0, 0 };
	struct voice pad = { T_STRINGS, 0.16, 0.4, 0, 0.5, 0.003, 0, 0 };
	struct voice lead = { T_SQUARE, 0.22, 0.01, 0.4, 0.05, 0.004, 0, 0 };
	int notes[4], root = m->key + c->root - 12;
	unsigned n = chord_notes(c, m->key + 12, notes), k, i;

	if (strcmp(g, "jazz") == 0) {
		/* Walking bass: chord tones on every beat. */
		bass.tab = T_TRI;
		bass.amp = 0.6;
		for (i = 0; i < 4; i++)
			play(s, &bass, t + i * b, b * 0.9, midi_hz(notes[i %
			    n] - 24));
		pad.tab = T_KEYS;
		pad.att = 0.005;
		pad.decay = 0.8;
		pad.amp = 0.2;
		for (k = 0; k < n; k++) {
			play(s, &pad, t, b * 1.5, midi_hz(notes[k]));
			play(s, &pad, t + 2 * b + sw, b, midi_hz(notes[k]));
		}
		lead.tab = T_KEYS;
		lead.decay = 0.5;
	} else if (strcmp(g, "rock") == 0) {
		struct voice gtr = { T_SAW, 0.2, 0.005, 0.3, 0.03, 0, 4, 0 };

		for (i = 0; i < 8; i++) {
			play(s, &bass, t + i * b / 2, b / 2 * 0.9,
			    midi_hz(root));
			for (k = 0; k < n; k++)
				play(s, &gtr, t + i * b / 2, b / 2 * 0.85,
				    midi_hz(notes[k] - 12));
		}
		lead.tab = T_SAW;
		lead.drive = 2;
	} else if (strcmp(g, "ambient") == 0) {
		pad.att = 1.5;
		pad.rel = 2;
		pad.tab = T_TRI;
		pad.amp = 0.2;
		for (k = 0; k < n; k++)
			play(s, &pad, t, bl, midi_hz(notes[k]));
		bass.tab = T_SINE;
		bass.att = 1;
		bass.decay = 0;
		bass.rel = 1.5;
		play(s, &bass, t, bl, midi_hz(root));
		lead.tab = T_SINE;
		lead.att = 0.003;
		lead.decay = 1.2;
		lead.rel = 1;
	} else if (strcmp(g, "orchestral") == 0) {
		pad.amp = 0.2;
		for (k = 0; k < n; k++) {
			play(s, &pad, t, bl, midi_hz(notes[k]));
			play(s, &pad, t, bl, midi_hz(notes[k]) * 1.004);
		}
		bass.tab = T_STRINGS;
		bass.att = 0.15;
		bass.decay = 0;
		bass.rel = 0.3;
		play(s, &bass, t, bl, midi_hz(root));
		lead.tab = T_STRINGS;
		lead.att = 0.06;
		lead.decay = 0;
		lead.vib = 0.006;
	} else {
		/* electronic, pop, hip-hop: pulsing bass and stabs or keys. */
		unsigned steps = strcmp(g, "hip-hop") == 0 ? 2 : 8;

		bass.tab = strcmp(g, "electronic") == 0 ? T_SAW : T_TRI;
		for (i = 0; i < steps; i++)
			play(s, &bass, t + i * bl / steps + (steps == 8 ?
			    b / 4 : 0), bl / steps * 0.7, midi_hz(root));
		pad.tab = strcmp(g, "electronic") == 0 ? T_SAW : T_KEYS;
		pad.att = 0.01;
		pad.decay = 0.6;
		pad.amp = 0.14;
		for (i = 0; i < 4; i += strcmp(g, "pop") == 0 ? 1 : 2)
			for (k = 0; k < n; k++)
				play(s, &pad, t + i * b, b * 0.9,
				    midi_hz(notes[k]));
		if (strcmp(g, "hip-hop") == 0) {
			lead.tab = T_KEYS;
			lead.decay = 0.6;
		}
	}
	if (!full || mel == NULL)
		return;
	for (i = 0; i < 8; i++) {
		double at = t + (i / 2) * b + (i % 2 ? sw : 0), len = b / 2;

		if (mel[i] < 0)
			continue;
		if (i + 1 < 8 && mel[i + 1] < 0)
			len = b;	/* a rest after a note holds it */
		play(s, &lead, at, len * 0.9, midi_hz(m->key + 12 + mel[i]));
	}
}

static int
bgm_render(const char *prompt, const char *genre, double seconds,
    double lo, double hi, const char *path, struct mi_err *err)
{
	struct mi_gen_rng r;
	struct song m;
	double t, bl, end;
	unsigned i, barno;
	int rc;

	memset(&m, 0, sizeof(m));
	for (i = 0; genre && i < sizeof(genres) / sizeof(genres[0]); i++)
		if (strcmp(genres[i].name, genre) == 0)
			m.g = &genres[i];
	if (m.g == NULL)
		return mi_err_set(err, EX_DATAERR,
		    "unknown genre '%s' (one of " MI_GEN_GENRES ")",
		    genre ? genre : "");
	if (!(seconds >= lo - 1e-9 && seconds <= hi + 1e-9))
		return mi_err_set(err, EX_DATAERR,
		    "music duration %g s out of range %g..%g", seconds, lo, hi);
	mi_gen_rng_seed(&r, prompt, genre);
	m.beat = 60 / mi_gen_rng_range(&r, m.g->bpm_lo, m.g->bpm_hi);
	m.key = 48 + (int)mi_gen_rng_below(&r, 12);
	if (m.key > 53)
		m.key -= 12;	/* keep the bass out of the mud */
	m.prog = m.g->prog[mi_gen_rng_below(&r, 2)];
	make_melody(&m, &r);
	m.s = malloc(sizeof(*m.s));
	if (m.s == NULL || synth_init(m.s, seconds, BGM_RATE, &r) == -1) {
		free(m.s);
		return mi_err_set(err, EX_SOFTWARE, "out of memory");
	}
	bl = 4 * m.beat;
	end = seconds;
	/*
	 * Form: a 4-bar intro without drums or tune, then 16-bar sections
	 * (phrases A A B A) whose last 4 bars drop the tune; the final bar
	 * rings out.
	 */
	for (barno = 0, t = 0; t < end; barno++, t += bl) {
		unsigned sec = barno < 4 ? 0 : (barno - 4) % 16;
		int intro = barno < 4, last = t + bl >= end - bl;
		int tune = !intro && sec < 12 && !last;
		const int *mel = m.mel[sec / 4 == 2] + 8 * (sec % 4);
		unsigned beat;

		bar(&m, t, &m.prog[barno % 4], tune, mel);
		if (intro && strcmp(m.g->name, "orchestral") != 0)
			continue;
		for (beat = 0; beat < 4 && !last; beat++)
			drums(&m, &r, t + beat * m.beat, beat, sec % 4 == 3);
	}
	/* Fade out over the last two seconds. */
	{
		size_t n = m.s->n, f = (size_t)(2 * BGM_RATE), j;

		for (j = 0; j < f && j < n; j++)
			m.s->buf[n - 1 - j] *= (float)j / f;
	}
	rc = synth_write(m.s, path, err);
	free(m.s->buf);
	free(m.s);
	return rc;
}

int
mi_gen_bgm(const char *prompt, const char *genre, double seconds,
    const char *path, struct mi_err *err)
{
	return bgm_render(prompt, genre, seconds, 30, 120, path, err);
}

int
mi_gen_soundtrack(const char *prompt, const char *genre, double seconds,
    const char *path, struct mi_err *err)
{
	return bgm_render(prompt, genre, seconds, 1, 600, path, err);
}
