/*
 * localgen/blocks.h - the building blocks that the generators of
 * localgen/ share, and nothing outside the folder uses: a seeded random
 * stream, keyword tests, the PNG encoder and picture painter (png.c)
 * that the model and video generators reuse, and whole-file writes.
 *
 * Every generator draws its randomness only from a mi_gen_rng seeded
 * from the prompt, never from the clock or rand(), so its output is a
 * function of its inputs.  The same error rules as localgen.h hold.
 */
#ifndef MI_LOCALGEN_BLOCKS_H
#define MI_LOCALGEN_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "localgen/localgen.h"

/* A small deterministic generator (xoshiro256**) seeded from SHA-256. */
struct mi_gen_rng {
	uint64_t s[4];
};

/* Seeds r from SHA-256(salt ":" prompt); the salt separates the streams. */
void mi_gen_rng_seed(struct mi_gen_rng *r, const char *prompt,
    const char *salt);
uint64_t mi_gen_rng_next(struct mi_gen_rng *r);
/* Uniform in [0, 1). */
double mi_gen_rng_unit(struct mi_gen_rng *r);
/* Uniform in [lo, hi). */
double mi_gen_rng_range(struct mi_gen_rng *r, double lo, double hi);
/* Uniform integer in [0, n). */
unsigned mi_gen_rng_below(struct mi_gen_rng *r, unsigned n);

/* True when a word of text starts with word, ignoring case. */
int mi_gen_has_word(const char *text, const char *word);

/*
 * PNG encoding (8 bits per channel, channels 3 or 4) of a w x h pixel
 * array, appended to out; compression level 0..9.
 */
int mi_gen_png_encode(const uint8_t *px, unsigned w, unsigned h,
    unsigned channels, int level, struct mi_buf *out, struct mi_err *err);
/* Renders the picture mi_gen_image writes, into px (w * h * 3 bytes). */
int mi_gen_picture(const char *prompt, unsigned w, unsigned h, int seamless,
    uint8_t *px, struct mi_err *err);

/* Writes len bytes to path (created or truncated); EX_IOERR on failure. */
int mi_gen_write_file(const char *path, const void *data, size_t len,
    struct mi_err *err);

#endif
