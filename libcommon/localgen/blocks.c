/*
 * localgen/blocks.c - the building blocks the generators share: the
 * seeded random stream, keyword tests and whole-file writes.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "localgen/blocks.h"
#include "banned.h"

static uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void
mi_gen_rng_seed(struct mi_gen_rng *r, const char *prompt, const char *salt)
{
	struct mi_buf b = MI_BUF_INIT;
	char hex[65];
	unsigned i, j;

	/* On allocation failure the seed is the hash of the empty string. */
	mi_buf_addf(&b, "%s:%s", salt ? salt : "", prompt ? prompt : "");
	mi_sha256_hex(b.buf, b.len, hex);
	mi_buf_release(&b);
	for (i = 0; i < 4; i++) {
		uint64_t v = 0;

		for (j = 0; j < 16; j++) {
			char c = hex[i * 16 + j];

			v = (v << 4) | (uint64_t)(c <= '9' ? c - '0' :
			    c - 'a' + 10);
		}
		r->s[i] = v;
	}
	if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
		r->s[0] = 1;	/* xoshiro's one forbidden state */
}

uint64_t
mi_gen_rng_next(struct mi_gen_rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

double
mi_gen_rng_unit(struct mi_gen_rng *r)
{
	return (double)(mi_gen_rng_next(r) >> 11) * 0x1.0p-53;
}

double
mi_gen_rng_range(struct mi_gen_rng *r, double lo, double hi)
{
	return lo + (hi - lo) * mi_gen_rng_unit(r);
}

unsigned
mi_gen_rng_below(struct mi_gen_rng *r, unsigned n)
{
	return n ? (unsigned)(mi_gen_rng_unit(r) * n) : 0;
}

int
mi_gen_has_word(const char *text, const char *word)
{
	size_t n = strlen(word);
	const char *p;

	if (text == NULL || n == 0)
		return 0;
	/* At the start of a word: "spinning" has "spin", "design" no "sign". */
	for (p = text; *p; p++)
		if ((p == text || !isalnum((unsigned char)p[-1])) &&
		    strncasecmp(p, word, n) == 0)
			return 1;
	return 0;
}

int
mi_gen_write_file(const char *path, const void *data, size_t len,
    struct mi_err *err)
{
	const char *p = data;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd == -1)
		return mi_err_set_errno(err, EX_IOERR, "unable to create '%s'",
		    path);
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			mi_err_set_errno(err, EX_IOERR,
			    "unable to write '%s'", path);
			close(fd);
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	if (close(fd) == -1)
		return mi_err_set_errno(err, EX_IOERR, "unable to write '%s'",
		    path);
	return 0;
}
