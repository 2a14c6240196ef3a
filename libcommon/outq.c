/*
 * outq.c - see outq.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "json.h"
#include "outq.h"
#include "banned.h"

static struct {
	int on, failed;
	char *buf;
	size_t off, len, cap;
} q;

void
mi_outq_start(void)
{
	struct stat sb;
	int fl;

	if (fstat(STDOUT_FILENO, &sb) == -1 ||
	    !(S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)) ||
	    (fl = fcntl(STDOUT_FILENO, F_GETFL)) == -1 ||
	    fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK) == -1)
		return;
	fflush(stdout);
	q.on = 1;
}

static void
failed(int e)
{
	q.failed = 1;
	q.off = q.len = 0;
	mi_note_write_error(e);
}

void
mi_outq_flush(void)
{
	while (q.on && q.off < q.len) {
		ssize_t n = write(STDOUT_FILENO, q.buf + q.off, q.len - q.off);

		if (n > 0) {
			q.off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		failed(n == -1 ? errno : EIO);
	}
	if (q.off == q.len)
		q.off = q.len = 0;
}

void
mi_outq_put(jv rec)
{
	char *text;
	size_t n, need;

	if (!q.on) {
		mi_json_write(stdout, rec);	/* consumes rec */
		return;
	}
	text = mi_json_dump(rec);
	jv_free(rec);
	if (q.failed)
		goto out;
	if (text == NULL) {
		failed(ENOMEM);
		return;
	}
	n = strlen(text);
	if (q.off > 0 && q.off == q.len)
		q.off = q.len = 0;
	need = q.len + n + 1;
	if (need > q.cap) {
		size_t cap = q.cap ? q.cap : 65536;
		char *b;

		/* What was written already is not kept. */
		if (q.off > 0) {
			memmove(q.buf, q.buf + q.off, q.len - q.off);
			q.len -= q.off;
			q.off = 0;
			need = q.len + n + 1;
		}
		while (cap < need)
			cap *= 2;
		if (cap != q.cap) {
			if ((b = realloc(q.buf, cap)) == NULL) {
				failed(ENOMEM);
				goto out;
			}
			q.buf = b;
			q.cap = cap;
		}
	}
	memcpy(q.buf + q.len, text, n);
	q.buf[q.len + n] = '\n';
	q.len += n + 1;
	mi_outq_flush();
out:
	free(text);
}

size_t
mi_outq_pending(void)
{
	return q.len - q.off;
}

void
mi_outq_drain(void)
{
	struct pollfd p = { STDOUT_FILENO, POLLOUT, 0 };

	while (q.on && q.off < q.len) {
		mi_outq_flush();
		if (q.off < q.len && poll(&p, 1, -1) == -1 && errno != EINTR)
			failed(errno);
	}
	free(q.buf);
	q.buf = NULL;
	q.cap = 0;
}
