/*
 * buf.c - struct mi_buf.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "banned.h"

char mi_buf_empty[1];

void
mi_buf_init(struct mi_buf *b, size_t max)
{
	b->buf = mi_buf_empty;
	b->len = 0;
	b->alloc = 0;
	b->max = max;
}

static int
grow(struct mi_buf *b, size_t extra)
{
	size_t want = b->len + extra + 1;
	size_t n;
	char *p;

	if (b->max && b->len + extra > b->max)
		return -1;
	if (want <= b->alloc)
		return 0;
	n = b->alloc ? b->alloc : 64;
	while (n < want)
		n *= 2;
	p = realloc(b->alloc ? b->buf : NULL, n);
	if (p == NULL)
		return -1;
	if (b->alloc == 0)
		p[0] = '\0';
	b->buf = p;
	b->alloc = n;
	return 0;
}

int
mi_buf_add(struct mi_buf *b, const void *data, size_t len)
{
	if (grow(b, len) == -1)
		return -1;
	memcpy(b->buf + b->len, data, len);
	b->len += len;
	b->buf[b->len] = '\0';
	return 0;
}

int
mi_buf_adds(struct mi_buf *b, const char *s)
{
	return mi_buf_add(b, s, strlen(s));
}

int
mi_buf_addf(struct mi_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || grow(b, (size_t)n) == -1)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void
mi_buf_reset(struct mi_buf *b)
{
	b->len = 0;
	if (b->alloc)
		b->buf[0] = '\0';
}

void
mi_buf_release(struct mi_buf *b)
{
	if (b->alloc)
		free(b->buf);
	mi_buf_init(b, b->max);
}

char *
mi_buf_detach(struct mi_buf *b, size_t *len)
{
	char *p;

	if (b->alloc == 0)
		p = calloc(1, 1);
	else
		p = b->buf;
	if (len)
		*len = b->len;
	mi_buf_init(b, b->max);
	return p;
}
