/*
 * zipwrite.h - writing a reproducible zip with libarchive.
 *
 * Entries go out in the order they are added (callers sort them), each a
 * regular file of mode 0644, owner 0:0, modified at MI_ZIPW_MTIME, with no
 * other time or owner name recorded: the same entries in the same order
 * give the same bytes.  An entry is deflated (level 9) or stored as the
 * caller asks; stored entries can be served from their offset as they are.
 */
#ifndef MI_ZIPWRITE_H
#define MI_ZIPWRITE_H

#include <stdint.h>

#include "err.h"

/* 1980-01-02T00:00:00Z: the first day every zip time field can hold. */
#define MI_ZIPW_MTIME 315619200LL

struct mi_zipw;

/* Writes to fd (not closed by mi_zipw_close). */
struct mi_zipw *mi_zipw_new(int fd, struct mi_err *err);
/* Adds size bytes from mem, or from src_fd's start when mem is NULL. */
int mi_zipw_add(struct mi_zipw *w, const char *name, int deflate,
    const void *mem, int src_fd, uint64_t size, struct mi_err *err);
/* Finishes the archive and frees w, success or not. */
int mi_zipw_close(struct mi_zipw *w, struct mi_err *err);

#endif
