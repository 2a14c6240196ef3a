/*
 * names.c - the name grammar.  Checks work on bytes: anything outside the
 * allowed set (including '/', '.', '%', '\\' and NUL-like tricks) fails.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "mime.h"
#include "names.h"
#include "banned.h"

static int
word_ok(const char *s, size_t max)
{
	size_t n = 0;

	if (s == NULL)
		return 0;
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
		if (n >= max)
			return 0;
	}
	return n > 0;
}

int
mi_name_tenant_ok(const char *s)
{
	return word_ok(s, 255);
}

int
mi_name_type_ok(const char *s)
{
	return word_ok(s, 100);
}

static int
ishex(char c, int upper_ok)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (upper_ok && c >= 'A' && c <= 'F');
}

int
mi_name_uuid_ok(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) != 36)
		return 0;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!ishex(s[i], 1))
			return 0;
	}
	return 1;
}

int
mi_name_hash_ok(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) != 64)
		return 0;
	for (i = 0; i < 64; i++)
		if (!ishex(s[i], 0))
			return 0;
	return 1;
}

/* Copies the segment [s, end) into dst of size dstsz; -1 if it won't fit. */
static int
seg(const char *s, const char *end, char *dst, size_t dstsz)
{
	size_t n = (size_t)(end - s);

	if (n + 1 > dstsz)
		return -1;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return 0;
}

int
mi_asset_path_parse(const char *path, struct mi_asset_path *p,
    struct mi_err *err)
{
	static const char prefix[] = "/api/assets/";
	const char *s, *e, *dot;
	const struct mi_mime *m;
	size_t i;

	if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
		return mi_err_set(err, EX_DATAERR, "not an asset path");
	s = path + sizeof(prefix) - 1;
	if ((e = strchr(s, '/')) == NULL || seg(s, e, p->tenant,
	    sizeof(p->tenant)) == -1 || !mi_name_tenant_ok(p->tenant))
		return mi_err_set(err, EX_DATAERR, "bad tenant in asset path");
	s = e + 1;
	if ((e = strchr(s, '/')) == NULL || seg(s, e, p->run,
	    sizeof(p->run)) == -1 || !mi_name_uuid_ok(p->run))
		return mi_err_set(err, EX_DATAERR, "bad run in asset path");
	/* The store files runs in lower case (store.c). */
	for (i = 0; p->run[i]; i++)
		p->run[i] = (char)tolower((unsigned char)p->run[i]);
	s = e + 1;
	if ((e = strchr(s, '/')) == NULL || seg(s, e, p->type,
	    sizeof(p->type)) == -1 || !mi_name_type_ok(p->type))
		return mi_err_set(err, EX_DATAERR, "bad type in asset path");
	s = e + 1;
	if (strchr(s, '/') != NULL || (dot = strchr(s, '.')) == NULL ||
	    seg(s, dot, p->hash, sizeof(p->hash)) == -1 ||
	    !mi_name_hash_ok(p->hash))
		return mi_err_set(err, EX_DATAERR, "bad hash in asset path");
	if (seg(dot + 1, dot + 1 + strlen(dot + 1), p->ext,
	    sizeof(p->ext)) == -1 || (m = mi_mime_by_ext(p->ext)) == NULL ||
	    strcmp(m->ext, p->ext) != 0)
		return mi_err_set(err, EX_DATAERR,
		    "bad extension in asset path");
	return 0;
}

void
mi_name_uuid_new(char out[37])
{
	unsigned char b[16];
	size_t got = 0;
	ssize_t n;
	int i;

	while (got < sizeof(b) && ((n = getrandom(b + got, sizeof(b) - got,
	    0)) > 0 || (n == -1 && errno == EINTR)))
		if (n > 0)
			got += (size_t)n;
	if (got < sizeof(b))
		for (i = 0; i < 16; i++)
			b[i] = (unsigned char)(random() & 0xff);
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
	    b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}
