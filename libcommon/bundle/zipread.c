/*
 * zipread.c - the strict central-directory reader (see zipread.h).
 *
 * Everything read from the file is checked before it is used as a size,
 * an offset or a count; sizes are 64-bit so that no sum of 32-bit fields
 * can wrap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "bundle/zipread.h"
#include "banned.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define SIG_END64_LOC 0x07064b50u
#define END_SIZE 22
#define CENTRAL_SIZE 46
#define LOCAL_SIZE 30

struct mi_zip {
	struct mi_zip_entry *e;
	size_t n;
	char *names;
	size_t names_len;
};

static uint32_t
le16(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

int
mi_zip_read_fd(void *arg, void *buf, size_t len, uint64_t off)
{
	int fd = *(int *)arg;
	size_t got = 0;
	ssize_t r;

	while (got < len) {
		r = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

int
mi_zip_name_ok(const char *name, size_t len)
{
	static const char extra[] = "-._~!$&'()*+,;=:@";
	size_t i, seg = 0;

	if (len == 0 || len > MI_ZIP_MAX_NAME)
		return 0;
	for (i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)name[i] : '/';

		if (c == '/') {
			/* Empty, "." and ".." segments; a leading '/'. */
			if (i == seg || (i - seg == 1 && name[seg] == '.') ||
			    (i - seg == 2 && name[seg] == '.' &&
				name[seg + 1] == '.'))
				return 0;
			seg = i + 1;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') ||
			(c != '\0' && strchr(extra, c) != NULL)))
			return 0;
	}
	return 1;
}

static int
by_name(const void *a, const void *b)
{
	const struct mi_zip_entry *x = a, *y = b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);

	if (c != 0)
		return c;
	return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

static int
by_offset(const void *a, const void *b)
{
	const struct mi_zip_entry *const *x = a, *const *y = b;

	return (*x)->header_off < (*y)->header_off
	    ? -1
	    : (*x)->header_off > (*y)->header_off;
}

void
mi_zip_free(struct mi_zip *z)
{
	if (z == NULL)
		return;
	free(z->e);
	free(z->names);
	free(z);
}

/* Finds the end record: the one whose comment ends exactly at EOF. */
static int
find_end(mi_zip_read_fn rd, void *arg, uint64_t size, unsigned char *end,
    uint64_t *end_off, struct mi_err *err)
{
	size_t tail = size < END_SIZE + 65535 ? (size_t)size : END_SIZE + 65535;
	unsigned char *buf;
	size_t i;

	if (size < END_SIZE)
		return mi_err_set(err, EX_DATAERR, "not a zip: %llu bytes",
		    (unsigned long long)size);
	if ((buf = malloc(tail)) == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	if (rd(arg, buf, tail, size - tail) == -1) {
		free(buf);
		return mi_err_set(err, EX_IOERR, "unable to read the zip");
	}
	for (i = tail - END_SIZE + 1; i-- > 0;)
		if (le32(buf + i) == SIG_END &&
		    i + END_SIZE + le16(buf + i + 20) == tail) {
			memcpy(end, buf + i, END_SIZE);
			*end_off = size - tail + i;
			/* A ZIP64 locator just before: not ours to read. */
			if (i >= 20 && le32(buf + i - 20) == SIG_END64_LOC) {
				free(buf);
				return mi_err_set(err, EX_DATAERR,
				    "ZIP64 archives are not served");
			}
			free(buf);
			return 0;
		}
	free(buf);
	return mi_err_set(err, EX_DATAERR, "not a zip: no end record");
}

/* Checks the sizes and the kind of one parsed central entry. */
static void
judge(struct mi_zip_entry *e, uint32_t made_by, uint32_t flags, uint32_t eattr)
{
	uint32_t mode = eattr >> 16;

	if (!mi_zip_name_ok(e->name, e->name_len))
		e->refused = "name outside the grammar";
	else if ((made_by >> 8) == 3 && (mode & 0170000) == 0120000)
		e->refused = "symbolic link";
	else if ((made_by >> 8) == 3 && (mode & 0170000) != 0 &&
	    (mode & 0170000) != 0100000)
		e->refused = "not a regular file";
	else if (flags & 0x41)
		e->refused = "encrypted";
	else if (e->method != 0 && e->method != 8)
		e->refused = "compression method";
	else if (e->method == 0 && e->csize != e->usize)
		e->refused = "stored sizes differ";
	else if (e->method == 8 &&
	    (e->usize > (uint64_t)MI_ZIP_MAX_INFLATE ||
		e->usize > e->csize * 1032 + 64))
		e->refused = "inflated size over the limit";
}

/* Reads and checks the local header of e; sets data_off. */
static int
check_local(struct mi_zip_entry *e, mi_zip_read_fn rd, void *arg,
    uint64_t cd_off, struct mi_err *err)
{
	unsigned char h[LOCAL_SIZE];
	char name[MI_ZIP_MAX_NAME];

	if (e->header_off + LOCAL_SIZE > cd_off ||
	    rd(arg, h, LOCAL_SIZE, e->header_off) == -1 || le32(h) != SIG_LOCAL)
		return mi_err_set(err, EX_DATAERR,
		    "entry %.64s: no local "
		    "header",
		    e->name);
	if (le16(h + 26) != e->name_len || le16(h + 8) != e->method)
		return mi_err_set(err, EX_DATAERR,
		    "entry %.64s: local header "
		    "disagrees",
		    e->name);
	e->data_off = e->header_off + LOCAL_SIZE + le16(h + 26) + le16(h + 28);
	if (e->data_off > cd_off || e->csize > cd_off - e->data_off)
		return mi_err_set(err, EX_DATAERR,
		    "entry %.64s: data past "
		    "the directory",
		    e->name);
	if (e->name_len <= sizeof(name) &&
	    (rd(arg, name, e->name_len, e->header_off + LOCAL_SIZE) == -1 ||
		memcmp(name, e->name, e->name_len) != 0))
		return mi_err_set(err, EX_DATAERR,
		    "entry %.64s: local name "
		    "disagrees",
		    e->name);
	return 0;
}

/* Refuses the archive when two entries' bytes overlap (a bomb trick). */
static int
check_overlap(struct mi_zip *z, struct mi_err *err)
{
	struct mi_zip_entry **v;
	size_t i;

	if (z->n < 2)
		return 0;
	if ((v = malloc(z->n * sizeof(*v))) == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	for (i = 0; i < z->n; i++)
		v[i] = &z->e[i];
	qsort(v, z->n, sizeof(*v), by_offset);
	for (i = 1; i < z->n; i++)
		if (v[i]->header_off < v[i - 1]->data_off + v[i - 1]->csize) {
			free(v);
			return mi_err_set(err, EX_DATAERR, "entries overlap");
		}
	free(v);
	return 0;
}

static int
parse_central(struct mi_zip *z, const unsigned char *cd, size_t cd_size,
    size_t count, struct mi_err *err)
{
	size_t pos = 0, npos = 0, i;

	if ((z->e = calloc(count ? count : 1, sizeof(*z->e))) == NULL ||
	    (z->names = malloc(cd_size + 1)) == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	for (i = 0; i < count; i++) {
		const unsigned char *h = cd + pos;
		struct mi_zip_entry *e = &z->e[i];
		size_t nlen, xlen, clen;

		if (cd_size - pos < CENTRAL_SIZE || le32(h) != SIG_CENTRAL)
			return mi_err_set(err, EX_DATAERR,
			    "central directory "
			    "entry %zu is damaged",
			    i);
		nlen = le16(h + 28);
		xlen = le16(h + 30);
		clen = le16(h + 32);
		if (cd_size - pos - CENTRAL_SIZE < nlen + xlen + clen)
			return mi_err_set(err, EX_DATAERR,
			    "central directory "
			    "entry %zu runs past the directory",
			    i);
		if (le16(h + 34) != 0)
			return mi_err_set(err, EX_DATAERR, "multi-disk zip");
		e->method = le16(h + 10);
		e->crc = le32(h + 16);
		e->csize = le32(h + 20);
		e->usize = le32(h + 24);
		e->header_off = le32(h + 42);
		if (e->csize == 0xffffffffu || e->usize == 0xffffffffu ||
		    e->header_off == 0xffffffffu)
			return mi_err_set(err, EX_DATAERR,
			    "ZIP64 entries are "
			    "not served");
		/* Names are copied NUL-terminated; NUL inside is refused. */
		memcpy(z->names + npos, h + CENTRAL_SIZE, nlen);
		z->names[npos + nlen] = '\0';
		e->name = z->names + npos;
		e->name_len = nlen;
		npos += nlen + 1;
		judge(e, le16(h + 4), le16(h + 8), le32(h + 38));
		pos += CENTRAL_SIZE + nlen + xlen + clen;
	}
	if (pos != cd_size)
		return mi_err_set(err, EX_DATAERR,
		    "central directory has "
		    "%zu stray bytes",
		    cd_size - pos);
	z->n = count;
	z->names_len = npos;
	return 0;
}

struct mi_zip *
mi_zip_open(mi_zip_read_fn rd, void *arg, uint64_t size, struct mi_err *err)
{
	unsigned char end[END_SIZE] = { 0 }, *cd = NULL;
	uint64_t end_off = 0, cd_off, cd_size;
	struct mi_zip *z;
	size_t count, i;

	if (find_end(rd, arg, size, end, &end_off, err) == -1)
		return NULL;
	count = le16(end + 10);
	cd_size = le32(end + 12);
	cd_off = le32(end + 16);
	if (le16(end + 4) != 0 || le16(end + 6) != 0 ||
	    le16(end + 8) != count) {
		mi_err_set(err, EX_DATAERR, "multi-disk zip");
		return NULL;
	}
	if (count == 0xffff || cd_size == 0xffffffffu ||
	    cd_off == 0xffffffffu) {
		mi_err_set(err, EX_DATAERR, "ZIP64 archives are not served");
		return NULL;
	}
	/* Strict: the directory ends where the end record starts. */
	if (cd_off + cd_size != end_off) {
		mi_err_set(err, EX_DATAERR,
		    "central directory not where the "
		    "end record says");
		return NULL;
	}
	if (count > MI_ZIP_MAX_ENTRIES || cd_size > MI_ZIP_MAX_CD) {
		mi_err_set(err, EX_DATAERR,
		    "central directory over the limit "
		    "(%zu entries, %llu bytes)",
		    count, (unsigned long long)cd_size);
		return NULL;
	}
	if ((z = calloc(1, sizeof(*z))) == NULL ||
	    (cd = malloc(cd_size ? cd_size : 1)) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		goto fail;
	}
	if (cd_size > 0 && rd(arg, cd, cd_size, cd_off) == -1) {
		mi_err_set(err, EX_IOERR, "unable to read the zip");
		goto fail;
	}
	if (parse_central(z, cd, cd_size, count, err) == -1)
		goto fail;
	for (i = 0; i < z->n; i++)
		if (check_local(&z->e[i], rd, arg, cd_off, err) == -1)
			goto fail;
	if (check_overlap(z, err) == -1)
		goto fail;
	qsort(z->e, z->n, sizeof(*z->e), by_name);
	/* A name given twice: neither copy is served. */
	for (i = 1; i < z->n; i++)
		if (by_name(&z->e[i - 1], &z->e[i]) == 0)
			z->e[i - 1].refused = z->e[i].refused = "duplicate";
	free(cd);
	return z;
fail:
	free(cd);
	mi_zip_free(z);
	return NULL;
}

const struct mi_zip_entry *
mi_zip_find(const struct mi_zip *z, const char *name, size_t len)
{
	struct mi_zip_entry key;
	const struct mi_zip_entry *e;

	memset(&key, 0, sizeof(key));
	key.name = name;
	key.name_len = len;
	e = bsearch(&key, z->e, z->n, sizeof(*z->e), by_name);
	return e != NULL && e->refused == NULL ? e : NULL;
}

size_t
mi_zip_count(const struct mi_zip *z)
{
	return z->n;
}

const struct mi_zip_entry *
mi_zip_entry_at(const struct mi_zip *z, size_t i)
{
	return i < z->n ? &z->e[i] : NULL;
}

size_t
mi_zip_footprint(const struct mi_zip *z)
{
	return sizeof(*z) + z->n * sizeof(*z->e) + z->names_len;
}

int
mi_zip_extract(const struct mi_zip_entry *e, mi_zip_read_fn rd, void *arg,
    void *out, size_t outsz, struct mi_err *err)
{
	unsigned char in[65536];
	uint64_t done = 0;
	z_stream zs;
	int r = Z_OK;

	if (e->refused != NULL || outsz < e->usize)
		return mi_err_set(err, EX_DATAERR, "entry %.64s is refused",
		    e->name);
	if (e->method == 0) {
		if (e->usize > 0 && rd(arg, out, e->usize, e->data_off) == -1)
			return mi_err_set(err, EX_IOERR,
			    "unable to read "
			    "entry %.64s",
			    e->name);
	} else {
		memset(&zs, 0, sizeof(zs));
		if (inflateInit2(&zs, -15) != Z_OK)
			return mi_err_set(err, EX_OSERR, "out of memory");
		zs.next_out = out;
		zs.avail_out = (uInt)e->usize;
		/* One byte more than declared would be a lie: keep room 0. */
		while (r != Z_STREAM_END) {
			if (zs.avail_in == 0) {
				size_t n = e->csize - done < sizeof(in)
				    ? (size_t)(e->csize - done)
				    : sizeof(in);

				if (n == 0 ||
				    rd(arg, in, n, e->data_off + done) == -1)
					break;
				done += n;
				zs.next_in = in;
				zs.avail_in = (uInt)n;
			}
			r = inflate(&zs, Z_NO_FLUSH);
			if (r != Z_OK && r != Z_STREAM_END)
				break;
			if (zs.avail_out == 0 && r != Z_STREAM_END) {
				/* Full: the stream must end right here. */
				unsigned char probe;

				zs.next_out = &probe;
				zs.avail_out = 1;
				r = inflate(&zs, Z_NO_FLUSH);
				if (r != Z_STREAM_END || zs.avail_out == 0) {
					r = Z_DATA_ERROR;
					break;
				}
			}
		}
		inflateEnd(&zs);
		if (r != Z_STREAM_END || zs.total_out != e->usize)
			return mi_err_set(err, EX_DATAERR,
			    "entry %.64s does "
			    "not inflate to its declared size",
			    e->name);
	}
	if (crc32(0L, out, (uInt)e->usize) != e->crc)
		return mi_err_set(err, EX_DATAERR,
		    "entry %.64s: CRC-32 "
		    "mismatch",
		    e->name);
	return 0;
}
