/*
 * recover/fetch.c - the fetcher pool: mi-fetch children that store the
 * results of completed jobs, fed job records through a pipe.
 *
 * Each child has at most FETCH_DEPTH records in its pipe, and answers
 * them in order, one line each, so the oldest id in sent is the one an
 * answer is for.  A child that dies gives its records back for a later
 * take once their lease lapses; one that dies young is not restarted for
 * a second.  A full store stops all fetching for a while, doubling up to
 * ten minutes.  The leases of the jobs queued here are renewed here.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobs.h"
#include "json.h"
#include "recover/worker.h"
#include "banned.h"

/* Fetchers: mi-fetch children, fed job records through a pipe. */

/*
 * A result the store refused (STORAGE_ERROR): the job waits, 5 s then
 * twice as long each time, rather than being downloaded again at once;
 * a full disk stops the fetching of every job for a while (and ends a
 * --once pass early), instead of downloading everything again in vain.
 */
static void
store_failed(struct mi_recover *c, const char *id, const char *msg)
{
	jv v = jv_object_get(jv_copy(c->backoff), jv_string(id));
	long long now = mi_now_ms();
	double tries = 0;

	if (jv_get_kind(v) == JV_KIND_ARRAY) {
		jv t = jv_array_get(jv_copy(v), 1);

		tries = jv_number_value(t);
		jv_free(t);
	}
	jv_free(v);
	tries++;
	c->backoff = jv_object_set(c->backoff, jv_string(id),
	    jv_array_append(jv_array_append(jv_array(), jv_number((double)(
	    now + (5000LL << (tries < 8 ? (int)tries - 1 : 7))))),
	    jv_number(tries)));
	if (strstr(msg, "No space left") || strstr(msg, "Disk quota") ||
	    strstr(msg, "ENOSPC")) {
		if (c->store_full == 0)
			rec_note(c, MI_NOTE_WARN,
			    "the store is full (%s): no result is fetched "
			    "for %ld s",
			    msg, c->store_full_ms / 1000);
		c->store_full = now + c->store_full_ms;
		if (c->store_full_ms < 600000)
			c->store_full_ms *= 2;
	}
}

static void
fetcher_start(struct mi_recover *c, struct fetcher *f)
{
	int in[2], out[2];
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1)
		rec_fail(c, EX_OSERR, "unable to make a pipe: %s",
		    strerror(errno));
	if ((pid = fork()) == -1)
		rec_fail(c, EX_OSERR, "unable to fork: %s", strerror(errno));
	if (pid == 0) {
		static char name[] = "mi-fetch", verbose[] = "-v";
		char *argv[3] = { name, NULL, NULL };

		if (mi_verbosity > 0)
			argv[1] = verbose;
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if (dup2(in[0], 0) == -1 || dup2(out[1], 1) == -1)
			_exit(EX_OSERR);
		execvp(c->fetch_prog, argv);
		/* The child's last words: the command prints them. */
		rec_note(c, MI_NOTE_INFO, "unable to run '%s': %s",
		    c->fetch_prog, strerror(errno));
		_exit(EX_UNAVAILABLE);
	}
	close(in[0]);
	close(out[1]);
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	f->pid = pid;
	f->started = mi_now_ms();
	f->in = in[1];
	f->out = out[0];
	mi_buf_reset(&f->w);
	mi_buf_reset(&f->r);
	jv_free(f->sent);
	f->sent = jv_array();
}

/* The job records still due from a fetcher that is gone are taken
 * again when their lease lapses. */
static void
fetcher_lost(struct mi_recover *c, struct fetcher *f)
{
	int i, n = jv_array_length(jv_copy(f->sent)), status;
	long long until = mi_now_ms() + 2 * c->lease_ms + 1000;

	for (i = 0; i < n; i++) {
		jv id = jv_array_get(jv_copy(f->sent), i);

		c->reclaim = jv_object_set(c->reclaim, id,
		    jv_number((double)until));
	}
	if (f->in >= 0)
		close(f->in);
	close(f->out);
	f->in = f->out = -1;
	waitpid(f->pid, &status, 0);
	if (WIFSIGNALED(status))
		rec_note(c, MI_NOTE_WARN,
		    "mi-fetch (pid %ld) was killed by signal %d; %d jobs "
		    "are taken again",
		    (long)f->pid, WTERMSIG(status), n);
	else if (n > 0)
		rec_note(c, MI_NOTE_WARN,
		    "mi-fetch (pid %ld) exited with status %d; %d jobs "
		    "are taken again",
		    (long)f->pid, WEXITSTATUS(status), n);
	f->pid = -1;
	jv_free(f->sent);
	f->sent = jv_array();
	/* One that cannot even start is not restarted in a tight loop. */
	if (mi_now_ms() - f->started < 1000)
		f->not_before = mi_now_ms() + 1000;
}

static void
fetcher_flush(struct mi_recover *c, struct fetcher *f)
{
	ssize_t n;

	while (f->in >= 0 && f->w.len > 0) {
		n = write(f->in, f->w.buf, f->w.len);
		if (n > 0) {
			memmove(f->w.buf, f->w.buf + n, f->w.len - (size_t)n);
			f->w.len -= (size_t)n;
			f->w.buf[f->w.len] = '\0';
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		/* EPIPE: the child is gone; its stdout tells the rest. */
		close(f->in);
		f->in = -1;
		mi_buf_reset(&f->w);
		(void)c;
		return;
	}
}

/* One answer of a fetcher: an artifact, or the job as an error record. */
static void
fetched(struct mi_recover *c, struct fetcher *f, const char *line)
{
	struct mi_err err = MI_ERR_INIT;
	jv rec = mi_json_parse(line, &err), id;
	const char *st = NULL, *ids;

	id = jv_array_length(jv_copy(f->sent)) > 0 ?
	    jv_array_get(jv_copy(f->sent), 0) : jv_string("");
	if (jv_array_length(jv_copy(f->sent)) > 0)
		f->sent = jv_array_slice(f->sent, 1,
		    jv_array_length(jv_copy(f->sent)));
	ids = jv_string_value(id);
	if (!jv_is_valid(rec)) {
		jv_free(rec);
		rec_note(c, MI_NOTE_WARN, "job %s: mi-fetch wrote no JSON",
		    ids);
		rec_set_state(c, ids, "left");
	} else if (mi_json_has_error(rec)) {
		mi_json_str(rec, "status", &st, 0, NULL);
		if (st && (strcmp(st, "failed") == 0 ||
		    strcmp(st, "timed_out") == 0))
			rec_out_final(c, rec);
		else {
			jv e = jv_object_get(jv_copy(rec), jv_string("error"));
			const char *m = "not stored";

			mi_json_str(e, "message", &m, 0, NULL);
			rec_note(c, MI_NOTE_VERBOSE,
			    "job %s: left for later: %s", ids, m);
			if (mi_json_str(e, "code", &st, 0, NULL) == 1 &&
			    strcmp(st, "STORAGE_ERROR") == 0)
				store_failed(c, ids, m);
			jv_free(e);
			jv_free(rec);
			rec_set_state(c, ids, "left");
		}
	} else {
		c->stored++;
		rec_set_state(c, ids, "final");
		rec_out_record(c, rec);
	}
	jv_free(id);
}

/* Reads what a fetcher wrote; a fetcher at its end is replaced. */
void
rec_fetcher_read(struct mi_recover *c, struct fetcher *f)
{
	char buf[65536], *nl;
	ssize_t n;

	if (f->pid <= 0)
		return;
	for (;;) {
		n = read(f->out, buf, sizeof(buf));
		if (n > 0) {
			mi_buf_add(&f->r, buf, (size_t)n);
			while ((nl = memchr(f->r.buf, '\n', f->r.len)) != NULL) {
				size_t k = (size_t)(nl - f->r.buf) + 1;

				*nl = '\0';
				if (nl > f->r.buf)
					fetched(c, f, f->r.buf);
				memmove(f->r.buf, f->r.buf + k, f->r.len - k);
				f->r.len -= k;
				f->r.buf[f->r.len] = '\0';
			}
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		fetcher_lost(c, f);
		return;
	}
}

/* Hands waiting completed jobs to fetchers with room. */
void
rec_feed(struct mi_recover *c)
{
	int i;

	if (c->store_full > mi_now_ms()) {
		int n = jv_array_length(jv_copy(c->fq));

		for (i = 0; i < n; i++) {
			jv row = jv_array_get(jv_copy(c->fq), i);
			const char *id = NULL;

			if (mi_json_str(row, "id", &id, 0, NULL) == 1)
				rec_left(c, id, "the store is full");
			jv_free(row);
		}
		jv_free(c->fq);
		c->fq = jv_array();
		return;
	}
	if (c->store_full) {
		/* The wait is over: the next result tries the store. */
		c->store_full = 0;
	}

	for (i = 0; i < c->nfetch; i++) {
		struct fetcher *f = &c->f[i];

		while (jv_array_length(jv_copy(c->fq)) > 0 &&
		    jv_array_length(jv_copy(f->sent)) < FETCH_DEPTH) {
			jv row = jv_array_get(jv_copy(c->fq), 0);
			const char *id = NULL;
			char *text;

			if (f->pid <= 0 && !*c->o.stop &&
			    mi_now_ms() >= f->not_before)
				fetcher_start(c, f);
			if (f->pid <= 0 || f->in < 0) {
				jv_free(row);
				break;
			}
			c->fq = jv_array_slice(c->fq, 1,
			    jv_array_length(jv_copy(c->fq)));
			mi_json_str(row, "id", &id, 0, NULL);
			f->sent = jv_array_append(f->sent, jv_string(id));
			if ((text = mi_json_dump(row)) == NULL)
				rec_fail(c, EX_OSERR, "out of memory");
			mi_buf_adds(&f->w, text);
			mi_buf_adds(&f->w, "\n");
			free(text);
			jv_free(row);
		}
		fetcher_flush(c, f);
	}
}

/* Keeps the leases of jobs waiting for a fetcher (or in its pipe). */
void
rec_renew_queued(struct mi_recover *c)
{
	struct mi_err err = MI_ERR_INIT;
	jv ids = jv_array(), kept, held = jv_object(), q = jv_array();
	int i, n;

	n = jv_array_length(jv_copy(c->fq));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(c->fq), i);

		ids = jv_array_append(ids, jv_object_get(row,
		    jv_string("id")));
	}
	for (i = 0; i < c->nfetch; i++)
		ids = jv_array_concat(ids, jv_copy(c->f[i].sent));
	jv_object_foreach(c->later, k, v) {
		ids = jv_array_append(ids, k);
		jv_free(v);
	}
	if (jv_array_length(jv_copy(ids)) == 0) {
		jv_free(ids);
		jv_free(held);
		jv_free(q);
		return;
	}
	kept = mi_jobs_renew(c->db, ids, &err);
	if (!jv_is_valid(kept))
		rec_die(c, &err);
	n = jv_array_length(jv_copy(kept));
	for (i = 0; i < n; i++)
		held = jv_object_set(held, jv_array_get(jv_copy(kept), i),
		    jv_true());
	jv_free(kept);
	/* A queued job whose lease was lost belongs to another worker. */
	n = jv_array_length(jv_copy(c->fq));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(c->fq), i);
		jv id = jv_object_get(jv_copy(row), jv_string("id"));
		jv h = jv_object_get(jv_copy(held), jv_copy(id));

		if (jv_is_valid(h))
			q = jv_array_append(q, row);
		else {
			rec_set_state(c, jv_string_value(id), "left");
			jv_free(row);
		}
		jv_free(h);
		jv_free(id);
	}
	jv_free(held);
	jv_free(c->fq);
	c->fq = q;
}
