/*
 * transport.c - the transport table, the loop the transports run on, and
 * the spool directory.
 *
 * The loop is a curl multi handle plus a pipe: background work (the local
 * generators) runs on threads of its own and writes one byte to the pipe
 * when it ends, so mi_loop_wait wakes for either.  Only the done callbacks
 * touch jv values and the caller's data, and they run on the loop's
 * thread: the worker threads share nothing with it but their argument.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport.h"
#include "banned.h"

struct task {
	void (*work)(void *);
	void (*done)(void *);
	void *arg;
	int wfd;
	atomic_int finished;
	pthread_t thread;
	struct task *next;
};

struct mi_loop {
	struct mi_http_multi *http;
	int pipe[2];
	struct task *tasks;
	int ntasks;
};

const struct mi_transport *
mi_transport_of(const struct mi_provider *p)
{
	const char *t = mi_provider_transport(p);

	if (t && strcmp(t, "sync") == 0)
		return &mi_transport_sync;
	if (t && strcmp(t, "local") == 0)
		return &mi_transport_local;
	return &mi_transport_http;
}

struct mi_loop *
mi_loop_new(struct mi_err *err)
{
	struct mi_loop *l = calloc(1, sizeof(*l));
	const char *s = getenv("MI_HTTP_CONNECTIONS");
	unsigned long long n = 8;

	if (l == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	if (s)
		mi_parse_uint(s, 1, 1024, &n);
	if ((l->http = mi_http_multi_new((int)n, err)) == NULL) {
		free(l);
		return NULL;
	}
	if (pipe2(l->pipe, O_CLOEXEC | O_NONBLOCK) == -1) {
		mi_http_multi_free(l->http);
		free(l);
		mi_err_set_errno(err, EX_OSERR, "pipe");
		return NULL;
	}
	return l;
}

/* Joins finished tasks and runs their done callbacks; with wait, all. */
static void
reap(struct mi_loop *l, int wait)
{
	struct task **tp = &l->tasks, *t;
	char drain[64];

	while (read(l->pipe[0], drain, sizeof(drain)) > 0)
		;
	while ((t = *tp) != NULL) {
		if (!wait && !atomic_load(&t->finished)) {
			tp = &t->next;
			continue;
		}
		pthread_join(t->thread, NULL);
		*tp = t->next;
		l->ntasks--;
		if (t->done)
			t->done(t->arg);
		free(t);
	}
}

void
mi_loop_free(struct mi_loop *l)
{
	if (l == NULL)
		return;
	reap(l, 1);
	/* Exchanges still under way end now, so that whoever waits for one
	 * frees what it holds (a runner's jobs given up at its end). */
	mi_http_multi_stop(l->http);
	mi_http_multi_free(l->http);
	close(l->pipe[0]);
	close(l->pipe[1]);
	free(l);
}

int
mi_loop_busy(const struct mi_loop *l)
{
	return mi_http_multi_count(l->http) + l->ntasks;
}

struct mi_http_multi *
mi_loop_http(struct mi_loop *l)
{
	return l->http;
}

static void *
task_main(void *arg)
{
	struct task *t = arg;

	t->work(t->arg);
	atomic_store(&t->finished, 1);
	/* The pipe is non-blocking: a full pipe already wakes the loop. */
	if (write(t->wfd, "x", 1) == -1)
		(void)0;
	return NULL;
}

int
mi_loop_spawn(struct mi_loop *l, void (*work)(void *), void (*done)(void *),
    void *arg, struct mi_err *err)
{
	struct task *t = calloc(1, sizeof(*t));
	int r;

	if (t == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	t->work = work;
	t->done = done;
	t->arg = arg;
	t->wfd = l->pipe[1];
	atomic_init(&t->finished, 0);
	if ((r = pthread_create(&t->thread, NULL, task_main, t)) != 0) {
		free(t);
		errno = r;
		return mi_err_set_errno(err, EX_OSERR, "unable to start a thread");
	}
	t->next = l->tasks;
	l->tasks = t;
	l->ntasks++;
	return 0;
}

int
mi_loop_wait(struct mi_loop *l, const int *fds, int nfds, long timeout_ms,
    struct mi_err *err)
{
	int all[8], i, r;

	if (nfds > 7)
		nfds = 7;
	all[0] = l->pipe[0];
	for (i = 0; i < nfds; i++)
		all[i + 1] = fds[i];
	r = mi_http_multi_wait(l->http, all, nfds + 1, timeout_ms, err);
	if (r == -1)
		return -1;
	if ((r & 1) && l->ntasks > 0)
		reap(l, 0);
	/* Bit 0 is the tasks' pipe, not the caller's. */
	return r >> 1;
}

jv
mi_outcome_error(const char *status, const char *code, const char *msg,
    int retryable)
{
	jv e = jv_object();

	e = jv_object_set(e, jv_string("code"), jv_string(code));
	e = jv_object_set(e, jv_string("message"), jv_string(msg));
	e = jv_object_set(e, jv_string("retryable"),
	    retryable ? jv_true() : jv_false());
	return jv_object_set(jv_object_set(jv_object(), jv_string("status"),
	    jv_string(status)), jv_string("error"), e);
}

int
mi_spool_dir(char *out, size_t outsz, struct mi_err *err)
{
	const char *d = getenv("MI_SPOOL_DIR");
	const char *root = getenv("ASSET_STORAGE_DIR");
	int n;

	if (d && *d)
		n = snprintf(out, outsz, "%s", d);
	else if (root && *root)
		n = snprintf(out, outsz, "%s/.spool", root);
	else
		return mi_err_set(err, EX_CONFIG,
		    "neither MI_SPOOL_DIR nor ASSET_STORAGE_DIR is set");
	if (n < 0 || (size_t)n >= outsz)
		return mi_err_set(err, EX_CONFIG, "spool path too long");
	if (mkdir(out, 0700) == -1 && errno != EEXIST)
		return mi_err_set_errno(err, EX_IOERR,
		    "unable to create '%s'", out);
	return 0;
}

int
mi_spool_path(const char *name, char *out, size_t outsz, struct mi_err *err)
{
	char dir[PATH_MAX];

	if (mi_spool_dir(dir, sizeof(dir), err) == -1)
		return -1;
	if ((size_t)snprintf(out, outsz, "%s/%s", dir, name) >= outsz)
		return mi_err_set(err, EX_CONFIG, "spool path too long");
	return 0;
}
