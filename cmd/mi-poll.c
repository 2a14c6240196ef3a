/*
 * mi-poll - job records in, final job records out.  Takes over each job's
 * lease and polls every job at once at its provider's interval (with
 * jitter, and backoff on 429 and 5xx) until it is completed, failed or
 * timed out; a job that fails in a way another provider could fix falls
 * back to the next provider of its chain, and the record written is the
 * job that produced the result.  Exits 0, 1 (some error records), 64, 69
 * (no database), 75 (the database failed or a signal stopped the run)
 * or 78 (a provider key or definition is missing).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "err.h"
#include "inq.h"
#include "json.h"
#include "outq.h"
#include "provider.h"
#include "runner.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-poll [-qv] < jobs.ndjson\n"
    "  -q, --quiet    no progress line, even on a terminal\n"
    "  -v, --verbose  say more on stderr\n"
    "      --help     this text\n"
    "      --version  print the version";

struct ctx {
	int failed, config, tty;
	long long last;
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	stop = sig;
}

static void
clear_progress(struct ctx *c)
{
	if (c->tty && c->last) {
		fputs("\r\033[K", stderr);
		c->last = 0;
	}
}

static void
emit(void *arg, jv rec, int passed)
{
	struct ctx *c = arg;
	jv e = jv_object_get(jv_copy(rec), jv_string("error"));

	clear_progress(c);
	if (jv_get_kind(e) == JV_KIND_OBJECT) {
		const char *code = "", *msg = "", *id = "";

		mi_json_str(e, "code", &code, 0, NULL);
		mi_json_str(e, "message", &msg, 0, NULL);
		mi_json_str(rec, "id", &id, 0, NULL);
		if (!passed)
			mi_warn("job %s: %s: %s", id, code, msg);
		c->failed = 1;
		if (!passed && strcmp(code, "CONFIG_ERROR") == 0)
			c->config = 1;
	}
	jv_free(e);
	mi_outq_put(rec);
}

static void
note(void *arg, int level, const char *msg)
{
	clear_progress(arg);
	mi_note(level, msg);
}

/* One line, rewritten in place, at most once a second. */
static void
progress(struct ctx *c, struct mi_runner *r)
{
	struct mi_runner_stats s;
	long long now = mi_now_ms();

	if (!c->tty || now - c->last < 1000)
		return;
	c->last = now;
	mi_runner_stats(r, &s);
	fprintf(stderr, "\r\033[K%s: %d polling (%d%% on average), "
	    "%d submitting, %d waiting for a slot, %ld done",
	    mi_getprogname(), s.polling, s.avg_progress, s.creating,
	    s.waiting, s.finished);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct mi_runner_opts ro = { 1, 0, emit, note, NULL };
	struct mi_err err = MI_ERR_INIT;
	struct ctx c = { 0, 0, 0, 0 };
	struct mi_runner *r;
	struct mi_inq *q;
	struct mi_db *db;
	int ch, k, quiet = 0;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "hqv", opts, NULL)) != -1) {
		switch (ch) {
		case 'h': mi_usage(usage, 0);
		case 'q': quiet = 1; break;
		case 'v': mi_verbosity++; break;
		case 'V': mi_version();
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mi-poll: unexpected argument '%s'\n",
		    argv[optind]);
		mi_usage(usage, EX_USAGE);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	c.tty = !quiet && isatty(STDERR_FILENO);
	ro.arg = &c;
	if ((db = mi_db_open(NULL, &err)) == NULL ||
	    (r = mi_runner_new(db, &ro, &err)) == NULL ||
	    (q = mi_inq_start(stdin, &err)) == NULL)
		mi_die_err(&err);
	/* Records wait in memory while the next program is busy: this one
	 * goes on polling, its jobs' deadlines running (outq.h). */
	mi_outq_start();
	while (!stop && (k = mi_runner_pump(r, q, 1,
	    mi_outq_pending() ? 10 : 1000, &err)) == 1) {
		mi_outq_flush();
		progress(&c, r);
	}
	clear_progress(&c);
	if (mi_verbosity > 0) {
		struct mi_runner_stats s;

		mi_runner_stats(r, &s);
		fprintf(stderr, "mi-poll: %ld polls, %ld answers read by the "
		    "definitions, %ld unchanged\n", s.polls, s.polls_read,
		    s.polls - s.polls_read);
	}
	if (stop) {
		mi_runner_release(r);
		fprintf(stderr, "mi-poll: stopped by signal %d; jobs in hand "
		    "released\n", (int)stop);
	} else if (k == -1) {
		mi_outq_drain();
		mi_die_err(&err);
	}
	/* Everything freed, a stop too (no leak for LeakSanitizer). */
	mi_inq_free(q);
	mi_runner_free(r);
	mi_provider_free_all();
	mi_db_close(db);
	mi_outq_drain();
	mi_close_stdout();
	if (stop)
		return EX_TEMPFAIL;
	return c.config ? EX_CONFIG : c.failed ? 1 : 0;
}
