/*
 * inq.h - the record stream read on a thread of its own, so a command can
 * wait for input and for other work (HTTP exchanges, database
 * notifications) at once: mi_inq_fd becomes readable when records wait.
 *
 * Values cross from the reader thread to the caller whole: the reader
 * keeps no reference to a value it queued, so jv's unlocked reference
 * counts are only ever touched by one thread at a time.
 */
#ifndef MI_INQ_H
#define MI_INQ_H

#include <stdio.h>
#include <jv.h>

#include "err.h"

struct mi_inq;

/* Starts reading fp (records as mi_json_next reads them). */
struct mi_inq *mi_inq_start(FILE *fp, struct mi_err *err);
/* Stops the reader (it may be blocked in a read: it is left detached). */
void mi_inq_free(struct mi_inq *q);
/* Readable while records or the end wait. */
int mi_inq_fd(const struct mi_inq *q);
/*
 * The next record: 1 and *out, 0 when none waits now, -1 for an
 * unparseable value (err says why; reading goes on), -2 for a read error,
 * 2 at the end of input.
 */
int mi_inq_next(struct mi_inq *q, jv *out, struct mi_err *err);
/* Records read so far. */
unsigned long mi_inq_count(struct mi_inq *q);

#endif
