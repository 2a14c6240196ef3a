/*
 * outq.h - records to standard output without blocking the engine.
 *
 * A worker that blocks on a full pipe stops polling: the jobs it holds
 * run past their deadlines while the next program catches up.  When
 * standard output is a pipe or a socket, mi_outq_start makes it
 * non-blocking, and each record goes into a queue in memory that is
 * written as the pipe takes it (at every mi_outq_put and mi_outq_flush);
 * mi_outq_pending tells the caller to come back soon.  Records keep their
 * order.  mi_outq_drain writes what is left, blocking, before the
 * program closes standard output; a write that fails is kept for
 * mi_close_stdout, which reports it (err.h).  Elsewhere (a terminal, a
 * file) records are written at once, as mi_json_write does.
 */
#ifndef MI_OUTQ_H
#define MI_OUTQ_H

#include <stddef.h>

#include <jv.h>

void mi_outq_start(void);
void mi_outq_put(jv rec);		/* consumes rec */
void mi_outq_flush(void);
size_t mi_outq_pending(void);
void mi_outq_drain(void);

#endif
