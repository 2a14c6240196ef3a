/*
 * mi-serve - the asset host: GET/HEAD /api/assets/{tenant}/{run}/{type}/
 * {sha256}.{ext} from the store, for a Bearer JWT of that tenant or a
 * signed URL; OPTIONS preflight, /healthz, /metrics.  Runs in the
 * foreground until SIGTERM or SIGINT, then exits 0 after in-flight answers
 * end.  With --sign it prints a signed URL and exits.  Exits 64 on bad
 * usage, 69 when it cannot listen, 78 on bad configuration.
 * The routes and their answers are libcommon/serve/ (routes.h).
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "httpd.h"
#include "names.h"
#include "serve/routes.h"
#include "sign.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-serve [-v] [--access-log] [--listen ADDR:PORT] [--root DIR]\n"
    "                [--threads N] [--max-connections N] [--max-per-client N]\n"
    "       mi-serve --sign URI [--ttl SECONDS]\n"
    "  -a, --access-log      one line per request on stderr\n"
    "  -l, --listen ADDR:PORT  where to listen (default 127.0.0.1:8080)\n"
    "  -m, --max-connections N  at once (default 8192, below the fd limit)\n"
    "  -M, --max-per-client N  from one address (default max/8, >= 16)\n"
    "  -r, --root DIR        the store (default $ASSET_STORAGE_DIR)\n"
    "  -s, --sign URI        print URI signed with $MI_URL_SIGNING_KEY\n"
    "  -t, --ttl SECONDS     lifetime of a signed URL (default 86400)\n"
    "  -T, --threads N       worker threads (default 2)\n"
    "  -v, --verbose         say more on stderr\n"
    "      --help            this text\n"
    "      --version         print the version";

static int access_log;

static void
log_request(void *arg, const struct mi_http_req *req, int status,
    long long sent, const char *note, long long usec)
{
	char line[MI_SERVE_LOG_LINE];

	(void)arg;
	if (!access_log)
		return;
	fprintf(stderr, "%s\n", mi_serve_access_line(req, status, sent, note,
	    usec, line, sizeof(line)));
}

/*
 * SIGHUP: the key files are read again; tokens verified with the old keys
 * are verified again.  Connections stay; on an error the old keys stay.
 */
static void
reload_keys(struct mi_serve *s)
{
	struct mi_err err = MI_ERR_INIT;
	size_t n = 0;

	switch (mi_serve_reload_keys(s, &n, &err)) {
	case -1:
		mi_warn("keys not reloaded: %s", err.msg);
		break;
	case 0:
		mi_verbose("keys reloaded: %zu public key%s", n,
		    n == 1 ? "" : "s");
		break;
	}
}

static int
serve(const char *listen, const char *root, int threads, int max_conns,
    int max_per_client)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_httpd_opts o;
	struct mi_httpd_stats st;
	struct mi_httpd *h;
	struct mi_serve *s;
	sigset_t set;
	int sig;

	if ((s = mi_serve_new(root, &err)) == NULL)
		mi_die_err(&err);
	/* Workers inherit a mask without these: only sigwait sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	memset(&o, 0, sizeof(o));
	o.listen = listen;
	o.threads = threads;
	o.max_conns = max_conns;
	o.max_per_client = max_per_client;
	o.handler = mi_serve_handle;
	o.done = log_request;
	o.arg = s;
	if ((h = mi_httpd_start(&o, &err)) == NULL)
		mi_die_err(&err);
	mi_serve_set_httpd(s, h);
	mi_httpd_stats(h, &st);
	mi_verbose("listening on %s (port %d), serving '%s', at most %lld "
	    "connections, %lld per client", listen, mi_httpd_port(h),
	    mi_serve_root(s), st.max_conns, st.max_per_client);
	do {
		if (sigwait(&set, &sig) != 0)
			sig = SIGTERM;
		if (sig == SIGHUP)
			reload_keys(s);
	} while (sig != SIGTERM && sig != SIGINT);
	mi_verbose("stopping on signal %d", sig);
	mi_httpd_stop(h);
	mi_serve_free(s);
	return 0;
}

/* --sign: the path of URI (which may be a full URL) with exp and sig. */
static int
sign(const char *uri, long long ttl)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_asset_path p;
	const char *key, *path = uri, *pub = "";
	char out[2400];
	int plen = 0;

	if ((key = mi_sign_key()) == NULL)
		mi_die(EX_CONFIG, "MI_URL_SIGNING_KEY is not set");
	if (strncmp(uri, "http://", 7) == 0 ||
	    strncmp(uri, "https://", 8) == 0) {
		path = strchr(uri + (uri[4] == 's' ? 8 : 7), '/');
		if (path == NULL)
			path = "";
		pub = uri;
		plen = (int)(path - uri);
	} else if (getenv("MI_PUBLIC_URL") != NULL) {
		pub = getenv("MI_PUBLIC_URL");
		plen = (int)strlen(pub);
		while (plen > 0 && pub[plen - 1] == '/')
			plen--;
	}
	if (mi_asset_path_parse(path, &p, &err) == -1)
		mi_die(EX_DATAERR, "'%s' is not an asset URI: %s", uri,
		    err.msg);
	if (mi_sign_url(key, path, (long long)time(NULL) + ttl, out,
	    sizeof(out), &err) == -1)
		mi_die_err(&err);
	printf("%.*s%s\n", plen, pub, out);
	mi_close_stdout();
	return 0;
}

static long long
default_ttl(void)
{
	struct mi_err err = MI_ERR_INIT;
	long long t = mi_sign_ttl(&err);

	if (t == -1)
		mi_die_err(&err);
	return t;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "access-log", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ "listen", required_argument, NULL, 'l' },
		{ "max-connections", required_argument, NULL, 'm' },
		{ "max-per-client", required_argument, NULL, 'M' },
		{ "root", required_argument, NULL, 'r' },
		{ "sign", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 'T' },
		{ "ttl", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *listen = "127.0.0.1:8080", *root = NULL, *uri = NULL;
	unsigned long long v, threads = 2, max_conns = 0, per_client = 0;
	long long ttl = -1;
	int c;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "al:M:m:r:s:T:t:v", opts,
	    NULL)) != -1) {
		switch (c) {
		case 'a':
			access_log = 1;
			break;
		case 'h':
			mi_usage(usage, 0);
		case 'l':
			listen = optarg;
			break;
		case 'M':
			if (mi_parse_uint(optarg, 1, 1 << 20, &per_client) == -1)
				mi_die(EX_USAGE, "bad --max-per-client '%s'",
				    optarg);
			break;
		case 'm':
			if (mi_parse_uint(optarg, 1, 1 << 20, &max_conns) == -1)
				mi_die(EX_USAGE, "bad --max-connections '%s'",
				    optarg);
			break;
		case 'r':
			root = optarg;
			break;
		case 's':
			uri = optarg;
			break;
		case 'T':
			if (mi_parse_uint(optarg, 1, 64, &threads) == -1)
				mi_die(EX_USAGE, "bad --threads '%s'", optarg);
			break;
		case 't':
			if (mi_parse_uint(optarg, 1, MI_SIGN_TTL_MAX, &v) == -1)
				mi_die(EX_USAGE, "bad --ttl '%s'", optarg);
			ttl = (long long)v;
			break;
		case 'v':
			mi_verbosity++;
			break;
		case 'V':
			mi_version();
		default:
			mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind != argc || (ttl != -1 && uri == NULL))
		mi_usage(usage, EX_USAGE);
	if (uri != NULL)
		return sign(uri, ttl != -1 ? ttl : default_ttl());
	return serve(listen, root, (int)threads, (int)max_conns,
	    (int)per_client);
}
