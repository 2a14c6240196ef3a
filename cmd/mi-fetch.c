/*
 * mi-fetch - completed job records in, artifact records out.  Downloads
 * each job's result at once (a provider URL, or the spool file of a
 * synchronous or local provider), streaming it into the store while it
 * is hashed and checked against the job's media type, records the
 * artifact and links it to the job.  Several downloads run at once (-j);
 * records come out in the order of the input.  Exits 0, 1 (some error
 * records), 64, 69 (no database), 75 (the database failed, or a signal
 * stopped the run) or 78 (no store directory, or a provider key is
 * missing).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "db.h"
#include "err.h"
#include "fetch/pool.h"
#include "inq.h"
#include "json.h"
#include "provider.h"
#include "runner.h"
#include "store.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-fetch [-v] [-j N] < jobs.ndjson\n"
    "  -j, --jobs N   downloads at once, 1-64 (default 4, or "
    "$MI_FETCH_JOBS)\n"
    "  -v, --verbose  say more on stderr\n"
    "      --help     this text\n"
    "      --version  print the version";

/* SIGTERM or SIGINT: the downloads under way are abandoned at once,
 * their jobs released, and mi-fetch exits 75. */
static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	stop = sig;
}

static void
out(void *arg, jv rec)
{
	(void)arg;
	mi_json_write(stdout, rec);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct mi_fetch_pool_opts o = { 4, 4LL << 30, 1000, &stop, out,
	    mi_note_cb, mi_die_cb, NULL };
	struct mi_err err = MI_ERR_INIT;
	struct mi_fetch_pool_stats st;
	struct mi_fetch_pool *pool;
	struct mi_store *store;
	struct mi_inq *q;
	struct mi_db *db;
	const char *sj = NULL, *sv;
	unsigned long long v;
	int ch, eof = 0;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "hj:v", opts, NULL)) != -1) {
		switch (ch) {
		case 'h': mi_usage(usage, 0);
		case 'j': sj = optarg; break;
		case 'v': mi_verbosity++; break;
		case 'V': mi_version();
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mi-fetch: unexpected argument '%s'\n",
		    argv[optind]);
		mi_usage(usage, EX_USAGE);
	}
	if (sj == NULL && (sv = getenv("MI_FETCH_JOBS")) != NULL && *sv)
		sj = sv;
	if (sj != NULL) {
		if (mi_parse_uint(sj, 1, 64, &v) == -1) {
			fprintf(stderr, "mi-fetch: -j takes 1 to 64, not '%s'\n",
			    sj);
			mi_usage(usage, EX_USAGE);
		}
		o.jobs = (int)v;
	}
	signal(SIGPIPE, SIG_IGN);
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
	}
	if ((sv = getenv("MI_FETCH_MAX_BYTES")) != NULL &&
	    mi_parse_uint(sv, 1, 1ULL << 50, &v) == 0)
		o.max_size = (long long)v;
	if ((sv = getenv("MI_FETCH_BACKOFF_MS")) != NULL &&
	    mi_parse_uint(sv, 0, 600000, &v) == 0)
		o.backoff_ms = (long)v;
	if ((store = mi_store_open(NULL, &err)) == NULL ||
	    (db = mi_db_open(NULL, &err)) == NULL ||
	    (pool = mi_fetch_pool_new(db, store, &o, &err)) == NULL ||
	    (q = mi_inq_start(stdin, &err)) == NULL)
		mi_die_err(&err);
	if (((sv = getenv("MI_GROUP_COMMIT")) == NULL || strcmp(sv, "0") != 0) &&
	    mi_db_group_commit(db, &err) == -1)
		mi_die_err(&err);
	for (;;) {
		int want, fd = mi_inq_fd(q), k;
		long long next;
		jv rec;

		next = mi_fetch_pool_step(pool);
		mi_fetch_pool_flush(pool);
		if (stop)
			break;
		if (eof && mi_fetch_pool_count(pool) == 0)
			break;
		want = !eof && mi_fetch_pool_room(pool);
		if (mi_fetch_pool_wait(pool, want ? &fd : NULL, want, next -
		    mi_now_ms(), &err) == -1)
			mi_die_err(&err);
		while (want && !stop && mi_fetch_pool_room(pool) &&
		    (k = mi_inq_next(q, &rec, &err)) != 0) {
			if (k == 2) {
				eof = 1;
				break;
			}
			if (k == -2)
				mi_die_err(&err);
			if (k == -1)
				mi_fetch_pool_add_invalid(pool, err.msg);
			else
				mi_fetch_pool_add(pool, rec);
		}
	}
	if (stop)
		mi_fetch_pool_stop(pool);
	mi_fetch_pool_stats(pool, &st);
	mi_inq_free(q);
	mi_fetch_pool_free(pool);
	mi_provider_free_all();
	mi_db_close(db);
	mi_store_close(store);
	mi_close_stdout();
	if (stop)
		return EX_TEMPFAIL;
	return st.config ? EX_CONFIG : st.failed ? 1 : 0;
}
