/*
 * mi-submit - request records in, job records out.  Checks each request
 * against its provider, writes the job row, waits for a concurrency slot
 * (or with --no-wait leaves the job queued), submits it and writes the
 * job: processing, completed (synchronous and local providers) or, after
 * every fallback failed, an error record.  Exits 0, 1 (some error
 * records), 64, 69 (no database), 75 (the database failed or a signal
 * stopped the run) or 78 (a provider key or definition is missing).
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
    "usage: mi-submit [-nv] < requests.ndjson\n"
    "  -n, --no-wait  leave a job queued when its slot is not free\n"
    "  -v, --verbose  say more on stderr\n"
    "      --help     this text\n"
    "      --version  print the version";

struct ctx {
	int failed, config;
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	stop = sig;
}

static void
emit(void *arg, jv rec, int passed)
{
	struct ctx *c = arg;
	jv e = jv_object_get(jv_copy(rec), jv_string("error"));

	if (jv_get_kind(e) == JV_KIND_OBJECT) {
		const char *code = "", *msg = "";

		mi_json_str(e, "code", &code, 0, NULL);
		mi_json_str(e, "message", &msg, 0, NULL);
		if (!passed)
			mi_warn("%s: %s", code, msg);
		c->failed = 1;
		if (!passed && strcmp(code, "CONFIG_ERROR") == 0)
			c->config = 1;
	}
	jv_free(e);
	mi_outq_put(rec);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "no-wait", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct mi_runner_opts ro = { 0, 0, emit, mi_note_cb, NULL };
	struct mi_err err = MI_ERR_INIT;
	struct ctx c = { 0, 0 };
	struct mi_runner *r;
	struct mi_inq *q;
	struct mi_db *db;
	int ch, k;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "hnv", opts, NULL)) != -1) {
		switch (ch) {
		case 'h': mi_usage(usage, 0);
		case 'n': ro.no_wait = 1; break;
		case 'v': mi_verbosity++; break;
		case 'V': mi_version();
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mi-submit: unexpected argument '%s'\n",
		    argv[optind]);
		mi_usage(usage, EX_USAGE);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	ro.arg = &c;
	if ((db = mi_db_open(NULL, &err)) == NULL ||
	    (r = mi_runner_new(db, &ro, &err)) == NULL ||
	    (q = mi_inq_start(stdin, &err)) == NULL)
		mi_die_err(&err);
	/* Records wait in memory while the next program is busy: this one
	 * goes on creating (outq.h). */
	mi_outq_start();
	while (!stop && (k = mi_runner_pump(r, q, 0,
	    mi_outq_pending() ? 10 : 1000, &err)) == 1)
		mi_outq_flush();
	if (stop) {
		mi_runner_release(r);
		mi_outq_drain();
		mi_die(EX_TEMPFAIL, "stopped by signal %d; jobs in hand "
		    "released", (int)stop);
	}
	if (k == -1) {
		mi_outq_drain();
		mi_die_err(&err);
	}
	mi_inq_free(q);
	mi_runner_free(r);
	mi_provider_free_all();
	mi_db_close(db);
	mi_outq_drain();
	mi_close_stdout();
	return c.config ? EX_CONFIG : c.failed ? 1 : 0;
}
