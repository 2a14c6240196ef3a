/*
 * mi-recover - takes over every job not in a final state whose lease is
 * free and drives it to its end: pending jobs wait for a slot and are
 * submitted, processing jobs are polled (a create whose outcome is
 * unknown is first looked up at the provider, or else sent again once),
 * completed jobs not yet stored go to mi-fetch children.  Writes artifact
 * records and the records of jobs that ended failed or timed out.  Exits
 * 0 (every job it took is final), 64, 69 (no database), 75 (jobs left for
 * a later run, or stopped by a signal) or 78.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "err.h"
#include "json.h"
#include "provider.h"
#include "runner.h"
#include "recover/recover.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-recover [-qv] [--once | --watch] [-f fetchers] [-n max-jobs]\n"
    "  -1, --once       take what is free now, finish it, exit (default)\n"
    "  -w, --watch      keep taking jobs over until SIGTERM\n"
    "  -f, --fetchers N mi-fetch processes storing results, 1-6 (default 2)\n"
    "  -n, --max-jobs N jobs in hand at once (default 1000)\n"
    "  -q, --quiet      no summary on stderr\n"
    "  -v, --verbose    say more on stderr\n"
    "      --help       this text\n"
    "      --version    print the version";

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

/* The mi-fetch beside this program, or else the one on PATH. */
static void
fetch_program(char *prog, size_t progsz)
{
	char self[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	snprintf(prog, progsz, "mi-fetch");
	if (n <= 0)
		return;
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) == NULL)
		return;
	*slash = '\0';
	if ((size_t)snprintf(prog, progsz, "%s/mi-fetch", self) >= progsz ||
	    access(prog, X_OK) == -1)
		snprintf(prog, progsz, "mi-fetch");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "fetchers", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "max-jobs", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, '1' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "watch", no_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 }
	};
	struct mi_recover_opts o = { 1, 2, 1000, NULL, &stop, out,
	    mi_note_cb, mi_die_cb, NULL };
	struct mi_err err = MI_ERR_INIT;
	struct mi_recover_stats st;
	struct mi_recover *rc;
	struct mi_db *db;
	char prog[PATH_MAX];
	unsigned long long v;
	int ch, once = 0, watch = 0, quiet = 0;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "1f:hn:qvw", opts, NULL)) != -1) {
		switch (ch) {
		case '1': once = 1; break;
		case 'f':
			if (mi_parse_uint(optarg, 1, MI_RECOVER_MAX_FETCHERS,
			    &v) == -1)
				mi_die(EX_USAGE, "bad fetcher count '%s'",
				    optarg);
			o.nfetch = (int)v;
			break;
		case 'h': mi_usage(usage, 0);
		case 'n':
			if (mi_parse_uint(optarg, 1, 1000000, &v) == -1)
				mi_die(EX_USAGE, "bad job count '%s'", optarg);
			o.max_jobs = (int)v;
			break;
		case 'q': quiet = 1; break;
		case 'v': mi_verbosity++; break;
		case 'V': mi_version();
		case 'w': watch = 1; break;
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mi-recover: unexpected argument '%s'\n",
		    argv[optind]);
		mi_usage(usage, EX_USAGE);
	}
	if (once && watch) {
		fprintf(stderr, "mi-recover: --once and --watch exclude each "
		    "other\n");
		mi_usage(usage, EX_USAGE);
	}
	o.once = !watch;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	fetch_program(prog, sizeof(prog));
	o.fetch_prog = prog;
	if ((db = mi_db_open(NULL, &err)) == NULL ||
	    (rc = mi_recover_new(db, &o, &err)) == NULL)
		mi_die_err(&err);
	mi_recover_run(rc);
	mi_recover_stats(rc, &st);
	if (!quiet)
		fprintf(stderr, "mi-recover: took %ld jobs over: %ld stored, "
		    "%ld failed, %ld timed out, %d left for later\n",
		    st.taken, st.stored, st.failed, st.timed_out, st.left);
	mi_recover_free(rc);
	mi_provider_free_all();
	mi_db_close(db);
	mi_close_stdout();
	if (stop && o.once)
		return EX_TEMPFAIL;
	return o.once && st.left > 0 ? EX_TEMPFAIL : 0;
}
