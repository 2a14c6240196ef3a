/*
 * buf.h - a growable byte buffer with a size cap (git's strbuf, curl's
 * dynbuf).  A buffer is never NULL and always NUL-terminated; a buffer that
 * would grow past max refuses the addition and returns -1.  _detach is the
 * only ownership transfer.
 */
#ifndef MI_BUF_H
#define MI_BUF_H

#include <stddef.h>

struct mi_buf {
	char *buf;
	size_t len;
	size_t alloc;
	size_t max;		/* 0: no cap */
};

extern char mi_buf_empty[];
#define MI_BUF_INIT { mi_buf_empty, 0, 0, 0 }

void mi_buf_init(struct mi_buf *b, size_t max);
int mi_buf_add(struct mi_buf *b, const void *data, size_t len);
int mi_buf_adds(struct mi_buf *b, const char *s);
int mi_buf_addf(struct mi_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void mi_buf_reset(struct mi_buf *b);
void mi_buf_release(struct mi_buf *b);
char *mi_buf_detach(struct mi_buf *b, size_t *len);

#endif
