/*
 * inq.c - a reader thread over mi_json_next and a bounded queue.  The
 * thread blocks when the queue is full, so a fast producer does not fill
 * memory; an eventfd-like pipe wakes the consumer.  The records of one
 * burst of input are queued at once (see reader), so a consumer that
 * takes what is queued as a batch gets the burst whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inq.h"
#include "json.h"
#include "banned.h"

#define QUEUE_MAX 256

struct item {
	int kind;		/* 1 value, -1 bad value, -2 read error */
	jv v;
	struct mi_err err;
	struct item *next;
};

struct mi_inq {
	FILE *fp;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t room;
	struct item *head, *tail;
	int n, done, stop;
	unsigned long count;
	int pipe[2];
};

static void
wake(struct mi_inq *q)
{
	if (write(q->pipe[1], "x", 1) == -1)
		(void)0;	/* a full pipe is awake already */
}

/*
 * Whether reading on can go without waiting: bytes in the stream's buffer
 * (glibc's read pointers; elsewhere unknown, taken as none) or readable
 * on its descriptor.
 */
static int
ahead(FILE *fp)
{
	struct pollfd p = { fileno(fp), POLLIN, 0 };

#ifdef __GLIBC__
	if (fp->_IO_read_ptr < fp->_IO_read_end)
		return 1;
#endif
	return poll(&p, 1, 0) > 0;
}

/* Appends the parsed items to the queue, waiting for room; 0 if stopped. */
static int
publish(struct mi_inq *q, struct item **head, struct item **tail,
    unsigned long count)
{
	struct item *it;
	int n = 0;

	if (*head == NULL)
		return 1;
	pthread_mutex_lock(&q->lock);
	while ((it = *head) != NULL) {
		while (q->n >= QUEUE_MAX && !q->stop) {
			/* The consumer may sleep: what is queued wakes it. */
			if (n > 0)
				wake(q);
			pthread_cond_wait(&q->room, &q->lock);
		}
		if (q->stop)
			break;
		*head = it->next;
		it->next = NULL;
		if (q->tail)
			q->tail->next = it;
		else
			q->head = it;
		q->tail = it;
		q->n++;
		n++;
	}
	q->count = count;
	pthread_mutex_unlock(&q->lock);
	if (n > 0)
		wake(q);
	while ((it = *head) != NULL) {
		*head = it->next;
		jv_free(it->v);
		free(it);
	}
	*tail = NULL;
	return !q->stop;
}

/*
 * Records that were read together are queued together: parsed ones wait
 * here while more can be read without waiting (at most PUBLISH_MAX), so
 * the consumer sees a burst whole, however the threads are scheduled.
 */
#define PUBLISH_MAX 64

static void *
reader(void *arg)
{
	struct mi_inq *q = arg;
	struct mi_json_in *in = mi_json_in_new(q->fp);
	struct item *head = NULL, *tail = NULL;
	int r, n = 0;

	for (;;) {
		struct item *it;

		if (n > 0 && (n >= PUBLISH_MAX || !ahead(q->fp))) {
			if (!publish(q, &head, &tail, mi_json_count(in)))
				break;
			n = 0;
		}
		if ((it = calloc(1, sizeof(*it))) == NULL || in == NULL) {
			free(it);
			break;
		}
		it->v = jv_null();
		r = mi_json_next(in, &it->v, &it->err);
		if (r == 0) {
			free(it);
			break;
		}
		it->kind = r;
		if (tail)
			tail->next = it;
		else
			head = it;
		tail = it;
		n++;
		if (r == -2)
			break;
	}
	if (in)
		publish(q, &head, &tail, mi_json_count(in));
	mi_json_in_free(in);
	pthread_mutex_lock(&q->lock);
	q->done = 1;
	pthread_mutex_unlock(&q->lock);
	wake(q);
	return NULL;
}

struct mi_inq *
mi_inq_start(FILE *fp, struct mi_err *err)
{
	struct mi_inq *q = calloc(1, sizeof(*q));
	int r;

	if (q == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	q->fp = fp;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->room, NULL);
	if (pipe2(q->pipe, O_CLOEXEC | O_NONBLOCK) == -1) {
		mi_err_set_errno(err, EX_OSERR, "pipe");
		free(q);
		return NULL;
	}
	if ((r = pthread_create(&q->thread, NULL, reader, q)) != 0) {
		errno = r;
		mi_err_set_errno(err, EX_OSERR, "unable to start a thread");
		close(q->pipe[0]);
		close(q->pipe[1]);
		free(q);
		return NULL;
	}
	return q;
}

void
mi_inq_free(struct mi_inq *q)
{
	struct item *it;
	int done;

	if (q == NULL)
		return;
	pthread_mutex_lock(&q->lock);
	q->stop = 1;
	done = q->done;
	pthread_cond_broadcast(&q->room);
	pthread_mutex_unlock(&q->lock);
	/* A reader blocked in read(2) cannot be woken: leave it. */
	if (done)
		pthread_join(q->thread, NULL);
	else {
		pthread_detach(q->thread);
		return;
	}
	while ((it = q->head) != NULL) {
		q->head = it->next;
		jv_free(it->v);
		free(it);
	}
	close(q->pipe[0]);
	close(q->pipe[1]);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->room);
	free(q);
}

int
mi_inq_fd(const struct mi_inq *q)
{
	return q->pipe[0];
}

unsigned long
mi_inq_count(struct mi_inq *q)
{
	unsigned long n;

	pthread_mutex_lock(&q->lock);
	n = q->count;
	pthread_mutex_unlock(&q->lock);
	return n;
}

int
mi_inq_next(struct mi_inq *q, jv *out, struct mi_err *err)
{
	struct item *it;
	char drain[64];
	int r;

	pthread_mutex_lock(&q->lock);
	if ((it = q->head) == NULL) {
		r = q->done ? 2 : 0;
		pthread_mutex_unlock(&q->lock);
		/* Drained only when empty, so a wake is never lost. */
		while (read(q->pipe[0], drain, sizeof(drain)) > 0)
			;
		pthread_mutex_lock(&q->lock);
		if (q->head == NULL) {
			r = q->done ? 2 : 0;
			pthread_mutex_unlock(&q->lock);
			return r;
		}
		it = q->head;
	}
	q->head = it->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->n--;
	pthread_cond_signal(&q->room);
	pthread_mutex_unlock(&q->lock);
	r = it->kind;
	if (r == 1)
		*out = it->v;
	else {
		jv_free(it->v);
		if (err)
			*err = it->err;
	}
	free(it);
	return r;
}
