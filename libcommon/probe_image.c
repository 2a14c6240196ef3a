/*
 * probe_image.c - width, height and channels from image headers: PNG,
 * JPEG, WebP, KTX2, Radiance HDR and OpenEXR.  Each reader looks at a
 * window (off, len) of an open file, so the same code reads a texture
 * embedded in a GLB's binary chunk; it reads only what the header needs
 * (a few KiB at most) and checks every length against the window.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "probe.h"
#include "banned.h"

struct win {
	int fd;
	long long off, len;
};

/* Reads n bytes at pos of the window; -1 when they are not all there. */
static int
rd(const struct win *w, long long pos, void *buf, size_t n)
{
	ssize_t k;

	if (pos < 0 || (long long)n > w->len || pos > w->len - (long long)n)
		return -1;
	k = pread(w->fd, buf, n, (off_t)(w->off + pos));
	return k == (ssize_t)n ? 0 : -1;
}

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[1] << 8 | p[0];
}

static jv
facts(const char *format, long long w, long long h, int channels)
{
	jv o = jv_object();

	o = jv_object_set(o, jv_string("kind"), jv_string("image"));
	o = jv_object_set(o, jv_string("format"), jv_string(format));
	o = jv_object_set(o, jv_string("width"), jv_number((double)w));
	o = jv_object_set(o, jv_string("height"), jv_number((double)h));
	if (channels > 0)
		o = jv_object_set(o, jv_string("channels"),
		    jv_number(channels));
	return o;
}

static jv
bad(const char *format, const char *msg)
{
	jv o = jv_object();

	o = jv_object_set(o, jv_string("kind"), jv_string("image"));
	o = jv_object_set(o, jv_string("format"), jv_string(format));
	return jv_object_set(o, jv_string("error"), jv_string(msg));
}

static jv
png(const struct win *w)
{
	unsigned char h[26];
	static const int ch[7] = { 1, 0, 3, 3, 2, 0, 4 };

	if (rd(w, 0, h, sizeof(h)) == -1 ||
	    memcmp(h, "\x89PNG\r\n\x1a\n", 8) != 0 ||
	    memcmp(h + 12, "IHDR", 4) != 0 || h[25] > 6 || ch[h[25]] == 0)
		return bad("png", "no PNG header");
	return facts("png", be32(h + 16), be32(h + 20), ch[h[25]]);
}

/* Walks the segments to the first start-of-frame marker. */
static jv
jpeg(const struct win *w)
{
	unsigned char m[10];
	long long pos = 2;
	int n;

	if (rd(w, 0, m, 2) == -1 || m[0] != 0xff || m[1] != 0xd8)
		return bad("jpg", "no JPEG header");
	for (n = 0; n < 4096; n++) {
		unsigned seglen;

		if (rd(w, pos, m, 4) == -1 || m[0] != 0xff)
			break;
		if (m[1] == 0xff) { /* fill byte */
			pos++;
			continue;
		}
		seglen = (unsigned)m[2] << 8 | m[3];
		if (m[1] >= 0xc0 && m[1] <= 0xcf && m[1] != 0xc4 &&
		    m[1] != 0xc8 && m[1] != 0xcc) {
			if (rd(w, pos + 4, m, 6) == -1)
				break;
			return facts("jpg", (unsigned)m[3] << 8 | m[4],
			    (unsigned)m[1] << 8 | m[2], m[5]);
		}
		if (m[1] == 0xd9 || m[1] == 0xda || seglen < 2)
			break;
		pos += 2 + seglen;
	}
	return bad("jpg", "no JPEG frame header");
}

static jv
webp(const struct win *w)
{
	unsigned char h[30];

	if (rd(w, 0, h, sizeof(h)) == -1 || memcmp(h, "RIFF", 4) != 0 ||
	    memcmp(h + 8, "WEBP", 4) != 0)
		return bad("webp", "no WebP header");
	if (memcmp(h + 12, "VP8 ", 4) == 0 && h[23] == 0x9d && h[24] == 0x01 &&
	    h[25] == 0x2a)
		return facts("webp", (h[26] | h[27] << 8) & 0x3fff,
		    (h[28] | h[29] << 8) & 0x3fff, 3);
	if (memcmp(h + 12, "VP8L", 4) == 0 && h[20] == 0x2f) {
		uint32_t b = le32(h + 21);

		return facts("webp", (b & 0x3fff) + 1, ((b >> 14) & 0x3fff) + 1,
		    (b >> 28) & 1 ? 4 : 3);
	}
	if (memcmp(h + 12, "VP8X", 4) == 0)
		return facts("webp", (h[24] | h[25] << 8 | h[26] << 16) + 1,
		    (h[27] | h[28] << 8 | h[29] << 16) + 1,
		    h[20] & 0x10 ? 4 : 3);
	return bad("webp", "unknown WebP chunk");
}

/* Channels from the data format descriptor's sample count; UASTC
 * and ETC1S name their channels in the first sample. */
static int
ktx2_channels(const struct win *w, uint32_t dfd_off, uint32_t dfd_len)
{
	unsigned char b[32];
	unsigned size, model, nsamp;

	if (dfd_len < 28 || rd(w, dfd_off, b, sizeof(b)) == -1)
		return 0;
	size = le32(b + 8) >> 16;
	model = b[12];
	if (size < 24 || size > dfd_len)
		return 0;
	nsamp = (size - 24) / 16;
	if (model == 166 && nsamp >= 1) { /* UASTC */
		static const int ch[16] = { 3, 0, 0, 4, 1, 2, 2, 0, 0, 0, 0, 0,
			0, 0, 0, 0 };

		return ch[(b[28 + 3] & 0x0f)];
	}
	return (int)nsamp;
}

static jv
ktx2(const struct win *w)
{
	unsigned char h[56];
	static const unsigned char id[12] = { 0xab, 'K', 'T', 'X', ' ', '2',
		'0', 0xbb, '\r', '\n', 0x1a, '\n' };
	jv o;

	if (rd(w, 0, h, sizeof(h)) == -1 || memcmp(h, id, 12) != 0)
		return bad("ktx2", "no KTX2 header");
	o = facts("ktx2", le32(h + 20), le32(h + 24),
	    ktx2_channels(w, le32(h + 48), le32(h + 52)));
	o = jv_object_set(o, jv_string("levels"), jv_number(le32(h + 40)));
	return jv_object_set(o, jv_string("supercompression"),
	    jv_number(le32(h + 44)));
}

/* Header lines, a blank line, then "-Y H +X W" (or another orientation). */
static jv
hdr(const struct win *w)
{
	char b[8192], *p, *line;
	long long n = w->len < (long long)sizeof(b) - 1
	    ? w->len
	    : (long long)sizeof(b) - 1;
	char a1[3], a2[3];
	long d1, d2;

	if (rd(w, 0, b, (size_t)n) == -1)
		return bad("hdr", "unreadable header");
	b[n] = '\0';
	if (strncmp(b, "#?", 2) != 0)
		return bad("hdr", "no Radiance header");
	if ((p = strstr(b, "\n\n")) == NULL)
		return bad("hdr", "no end of the Radiance header");
	line = p + 2;
	if (sscanf(line, "%2s %ld %2s %ld", a1, &d1, a2, &d2) != 4 || d1 <= 0 ||
	    d2 <= 0)
		return bad("hdr", "no Radiance resolution line");
	if (a1[1] == 'Y')
		return facts("hdr", d2, d1, 3);
	return facts("hdr", d1, d2, 3);
}

/* Attributes after the magic and version: name, type, size, value. */
static jv
exr(const struct win *w)
{
	unsigned char b[16384];
	long long n =
	    w->len < (long long)sizeof(b) ? w->len : (long long)sizeof(b);
	size_t pos = 8;
	long long width = -1, height = -1;
	int channels = 0;

	if (rd(w, 0, b, (size_t)n) == -1 || n < 8 || le32(b) != 20000630)
		return bad("exr", "no OpenEXR header");
	while (pos < (size_t)n && b[pos] != '\0') {
		const char *name = (const char *)b + pos, *type;
		size_t nl = strnlen(name, (size_t)n - pos), tl;
		uint32_t sz;

		if (pos + nl + 1 >= (size_t)n)
			break;
		type = (const char *)b + pos + nl + 1;
		tl = strnlen(type, (size_t)n - pos - nl - 1);
		if (pos + nl + tl + 6 > (size_t)n)
			break;
		sz = le32(b + pos + nl + tl + 2);
		pos += nl + tl + 6;
		if (sz > (size_t)n - pos)
			break;
		if (strcmp(name, "dataWindow") == 0 &&
		    strcmp(type, "box2i") == 0 && sz == 16) {
			int32_t x0 = (int32_t)le32(b + pos);
			int32_t y0 = (int32_t)le32(b + pos + 4);
			int32_t x1 = (int32_t)le32(b + pos + 8);
			int32_t y1 = (int32_t)le32(b + pos + 12);

			width = (long long)x1 - x0 + 1;
			height = (long long)y1 - y0 + 1;
		} else if (strcmp(name, "channels") == 0 &&
		    strcmp(type, "chlist") == 0) {
			size_t q = pos, end = pos + sz;

			/* name\0, then 16 bytes per channel, then \0 */
			while (q < end && b[q] != '\0') {
				q += strnlen((const char *)b + q, end - q) + 1 +
				    16;
				channels++;
			}
		}
		pos += sz;
	}
	if (width <= 0 || height <= 0)
		return bad("exr", "no dataWindow in the OpenEXR header");
	return facts("exr", width, height, channels);
}

jv
mi_probe_image_fd(int fd, long long off, long long len, const char *ext)
{
	struct win w = { fd, off, len };

	if (strcmp(ext, "png") == 0)
		return png(&w);
	if (strcmp(ext, "jpg") == 0 || strcmp(ext, "jpeg") == 0)
		return jpeg(&w);
	if (strcmp(ext, "webp") == 0)
		return webp(&w);
	if (strcmp(ext, "ktx2") == 0)
		return ktx2(&w);
	if (strcmp(ext, "hdr") == 0)
		return hdr(&w);
	if (strcmp(ext, "exr") == 0)
		return exr(&w);
	return bad(ext, "no reader for this image type");
}
