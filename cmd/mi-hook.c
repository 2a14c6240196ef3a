/*
 * mi-hook - the webhook receiver: POST /hooks/{provider_id} verified by
 * the scheme of the provider's definition and recorded for the job's
 * worker (webhook.h); GET /healthz, GET /metrics.  Runs in the
 * foreground until SIGTERM or SIGINT, logging to stderr.  Exits 0 after
 * a signal, 64, 69 (no database, cannot bind) or 78 (bad configuration).
 *
 * The HTTP workers only hand deliveries on and wait: one applier thread
 * (the only one to run provider definitions and to use h.db) takes all
 * that are waiting, verifies each, and records the verified ones in one
 * transaction, so that a burst costs a commit per batch, not per
 * delivery.  Nothing waits to make a batch: a delivery that comes alone
 * goes at once, and the ones that come while a batch commits make the
 * next one.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "db.h"
#include "err.h"
#include "hash.h"
#include "httpd.h"
#include "json.h"
#include "provider.h"
#include "webhook.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-hook [-av] [-b batch] [-l addr:port] [-m max-body] "
    "[-t threads]\n"
    "  -a, --access-log      one line per request on stderr\n"
    "  -b, --batch N         deliveries recorded per transaction at most "
    "(default 64)\n"
    "  -l, --listen ADDR     address and port (default 127.0.0.1:8081)\n"
    "  -m, --max-body BYTES  largest delivery taken (default 1048576)\n"
    "  -t, --threads N       HTTP workers (default 32)\n"
    "  -w, --wait MS         how long a batch may wait for more "
    "(default 0)\n"
    "  -v, --verbose         say more on stderr\n"
    "      --help            this text\n"
    "      --version         print the version";

/* Upper bounds of the webhook-to-stored histogram, in seconds. */
static const double buckets[] = { 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60 };
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

/* A delivery handed to the applier; lives on its worker's stack. */
struct pending {
	struct mi_webhook_in in;
	struct mi_webhook_out out;
	int done;
	struct pending *next;
};

struct hook {
	struct mi_httpd *httpd;
	struct mi_db *db;	/* the applier's */
	pthread_t applier;
	pthread_mutex_t lock;
	pthread_cond_t work, applied;
	struct pending *head, **tail;
	int stopping;
	size_t queued, max_batch;
	long linger_ms;		/* how long a batch may wait for more */
	const char *metrics_token;
	int access_log;
	atomic_llong received;
	atomic_llong results[MI_HOOK_NRESULT];
	atomic_llong db_errors;
	atomic_llong batches;	/* transactions of deliveries */
	atomic_llong batched;	/* deliveries in them */
	atomic_llong polls_saved;
	atomic_llong stored_count, stored_ms_sum;
	atomic_llong stored_le[NBUCKETS];
};

static void
answer(struct mi_http_resp *r, int status, const char *body)
{
	mi_http_resp_status(r, status);
	mi_http_resp_header(r, "Content-Type", "application/json");
	mi_http_resp_header(r, "Cache-Control", "no-store");
	mi_http_resp_body(r, body, strlen(body), NULL);
}

static struct mi_db *
db_of(struct hook *h)
{
	struct mi_err err = MI_ERR_INIT;

	if (h->db == NULL && (h->db = mi_db_open(NULL, &err)) == NULL)
		mi_warn("%s", err.msg);
	return h->db;
}

/* The applier: batches of waiting deliveries, each in a transaction. */
static void *
applier(void *arg)
{
	struct hook *h = arg;
	struct mi_webhook_in *in = calloc(h->max_batch, sizeof(*in));
	struct mi_webhook_out *out = calloc(h->max_batch, sizeof(*out));
	struct pending **batch = calloc(h->max_batch, sizeof(*batch));
	struct mi_err err = MI_ERR_INIT;
	struct mi_db *db;
	size_t i, n, ready;

	if (in == NULL || out == NULL || batch == NULL)
		mi_die(EX_OSERR, "out of memory");
	for (;;) {
		pthread_mutex_lock(&h->lock);
		while (h->head == NULL && !h->stopping)
			pthread_cond_wait(&h->work, &h->lock);
		if (h->head == NULL) {
			pthread_mutex_unlock(&h->lock);
			break;
		}
		if (h->linger_ms > 0) {
			struct timespec until;

			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += h->linger_ms / 1000;
			until.tv_nsec += (h->linger_ms % 1000) * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			while (h->queued < h->max_batch && !h->stopping &&
			    pthread_cond_timedwait(&h->work, &h->lock,
			    &until) == 0)
				;
		}
		for (n = 0; n < h->max_batch && h->head; n++) {
			batch[n] = h->head;
			h->head = h->head->next;
		}
		h->queued -= n;
		if (h->head == NULL)
			h->tail = &h->head;
		pthread_mutex_unlock(&h->lock);
		for (i = 0; i < n; i++)
			in[i] = batch[i]->in;
		if ((db = db_of(h)) == NULL) {
			for (i = 0; i < n; i++) {
				memset(&out[i], 0, sizeof(out[i]));
				out[i].unavailable = 1;
			}
		} else if (mi_webhook_handle_batch(db, in, out, n, &err) ==
		    -1) {
			mi_warn("unable to record %zu deliver%s: %s", n,
			    n == 1 ? "y" : "ies", err.msg);
			/* The connection may be gone: a new one next time. */
			mi_db_close(h->db);
			h->db = NULL;
		}
		for (i = 0, ready = 0; i < n; i++)
			ready += (size_t)(out[i].in_tx && !out[i].unavailable);
		if (ready > 0) {
			atomic_fetch_add(&h->batches, 1);
			atomic_fetch_add(&h->batched, (long long)ready);
		}
		pthread_mutex_lock(&h->lock);
		for (i = 0; i < n; i++) {
			batch[i]->out = out[i];
			batch[i]->done = 1;
		}
		pthread_cond_broadcast(&h->applied);
		pthread_mutex_unlock(&h->lock);
	}
	free(in);
	free(out);
	free(batch);
	/* The definitions this thread loaded are its own. */
	mi_provider_free_all();
	return NULL;
}

static void
delivery(struct hook *h, const struct mi_http_req *req,
    struct mi_http_resp *r)
{
	struct mi_webhook_header hd[MI_HTTP_MAX_HEADERS];
	struct pending pd;
	struct mi_webhook_out *out = &pd.out;
	size_t i;

	atomic_fetch_add(&h->received, 1);
	for (i = 0; i < req->nheaders; i++) {
		hd[i].name = req->headers[i].name;
		hd[i].value = req->headers[i].value;
	}
	memset(&pd, 0, sizeof(pd));
	pd.in.provider_id = req->path + strlen("/hooks/");
	pd.in.query = req->query;
	pd.in.headers = hd;
	pd.in.nheaders = req->nheaders;
	pd.in.body = req->body ? req->body : "";
	pd.in.body_len = req->body_len;
	pd.in.now_s = (long long)time(NULL);
	pthread_mutex_lock(&h->lock);
	*h->tail = &pd;
	h->tail = &pd.next;
	h->queued++;
	pthread_cond_signal(&h->work);
	while (!pd.done)
		pthread_cond_wait(&h->applied, &h->lock);
	pthread_mutex_unlock(&h->lock);
	if (out->unavailable) {
		atomic_fetch_add(&h->db_errors, 1);
		mi_http_resp_note(r, "db");
		answer(r, 503, "{\"error\":\"unavailable\"}\n");
		return;
	}
	atomic_fetch_add(&h->results[out->result], 1);
	mi_http_resp_note(r, mi_webhook_result_name(out->result));
	if (out->result == MI_HOOK_ACCEPTED || out->result == MI_HOOK_HINT ||
	    out->result == MI_HOOK_IGNORED || out->result == MI_HOOK_PROGRESS) {
		if (out->job_id[0])
			mi_verbose("%s: job %s: %s %s", pd.in.provider_id,
			    out->job_id, mi_webhook_result_name(out->result),
			    out->status);
		answer(r, 200, "{\"ok\":true}\n");
		return;
	}
	/* Every refusal looks the same from outside. */
	mi_verbose("%s: refused: %s", pd.in.provider_id,
	    mi_webhook_result_name(out->result));
	answer(r, 401, "{\"error\":\"refused\"}\n");
}

static void
metrics(struct hook *h, const struct mi_http_req *req, struct mi_http_resp *r)
{
	const char *auth = mi_http_header(req, "Authorization");
	struct mi_buf b = MI_BUF_INIT;
	size_t i, n;
	char *text;

	if (h->metrics_token != NULL ? auth == NULL ||
	    strncasecmp(auth, "Bearer ", 7) != 0 ||
	    !mi_str_ct_equal(auth + 7, h->metrics_token) :
	    !req->peer_loopback) {
		answer(r, 404, "{\"error\":\"not found\"}\n");
		return;
	}
	mi_buf_addf(&b, "# HELP mi_hook_webhooks_received_total Deliveries "
	    "received.\n# TYPE mi_hook_webhooks_received_total counter\n"
	    "mi_hook_webhooks_received_total %lld\n",
	    (long long)atomic_load(&h->received));
	mi_buf_adds(&b, "# HELP mi_hook_webhooks_total Deliveries by result: "
	    "accepted, hint, ignored and progress were taken, the rest refused.\n"
	    "# TYPE mi_hook_webhooks_total counter\n");
	for (i = 0; i < MI_HOOK_NRESULT; i++)
		mi_buf_addf(&b, "mi_hook_webhooks_total{result=\"%s\"} %lld\n",
		    mi_webhook_result_name((int)i),
		    (long long)atomic_load(&h->results[i]));
	mi_buf_addf(&b, "# HELP mi_hook_database_errors_total Deliveries "
	    "answered 503.\n# TYPE mi_hook_database_errors_total counter\n"
	    "mi_hook_database_errors_total %lld\n",
	    (long long)atomic_load(&h->db_errors));
	mi_buf_addf(&b, "# HELP mi_hook_transactions_total Transactions "
	    "that recorded deliveries (a burst shares one).\n"
	    "# TYPE mi_hook_transactions_total counter\n"
	    "mi_hook_transactions_total %lld\n"
	    "# HELP mi_hook_transaction_deliveries_total Deliveries those "
	    "transactions looked up.\n"
	    "# TYPE mi_hook_transaction_deliveries_total counter\n"
	    "mi_hook_transaction_deliveries_total %lld\n",
	    (long long)atomic_load(&h->batches),
	    (long long)atomic_load(&h->batched));
	mi_buf_addf(&b, "# HELP mi_hook_polls_saved_total Polls a job would "
	    "have had at its interval up to its completing delivery, less the "
	    "polls it had.\n# TYPE mi_hook_polls_saved_total counter\n"
	    "mi_hook_polls_saved_total %lld\n",
	    (long long)atomic_load(&h->polls_saved));
	mi_buf_adds(&b, "# HELP mi_hook_webhook_to_stored_seconds From a "
	    "completing delivery to the job's stored artifact.\n"
	    "# TYPE mi_hook_webhook_to_stored_seconds histogram\n");
	for (i = 0; i < NBUCKETS; i++)
		mi_buf_addf(&b, "mi_hook_webhook_to_stored_seconds_bucket"
		    "{le=\"%g\"} %lld\n", buckets[i],
		    (long long)atomic_load(&h->stored_le[i]));
	mi_buf_addf(&b, "mi_hook_webhook_to_stored_seconds_bucket{le=\"+Inf\"} "
	    "%lld\nmi_hook_webhook_to_stored_seconds_sum %.3f\n"
	    "mi_hook_webhook_to_stored_seconds_count %lld\n",
	    (long long)atomic_load(&h->stored_count),
	    (double)atomic_load(&h->stored_ms_sum) / 1000,
	    (long long)atomic_load(&h->stored_count));
	text = mi_buf_detach(&b, &n);
	mi_http_resp_status(r, 200);
	mi_http_resp_header(r, "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	mi_http_resp_header(r, "Cache-Control", "no-store");
	mi_http_resp_body(r, text, n, free);
}

static void
handle(void *arg, const struct mi_http_req *req, struct mi_http_resp *r)
{
	struct hook *h = arg;
	int hook = strncmp(req->path, "/hooks/", 7) == 0;

	if (req->error) {
		if (req->error == 413 && hook) {
			atomic_fetch_add(&h->received, 1);
			atomic_fetch_add(&h->results[MI_HOOK_TOO_LARGE], 1);
		}
		answer(r, req->error, req->error == 413 ?
		    "{\"error\":\"too large\"}\n" : "{\"error\":\"bad request\"}\n");
		return;
	}
	if (hook && req->method_name && strcmp(req->method_name, "POST") == 0)
		delivery(h, req, r);
	else if (hook)
		answer(r, 405, "{\"error\":\"method not allowed\"}\n");
	else if (strcmp(req->path, "/metrics") == 0 &&
	    req->method == MI_HTTP_GET)
		metrics(h, req, r);
	else if (strcmp(req->path, "/healthz") == 0 &&
	    req->method == MI_HTTP_GET)
		answer(r, 200, "{\"ok\":true}\n");
	else
		answer(r, 404, "{\"error\":\"not found\"}\n");
}

/* The access log: never the query. */
static void
log_request(void *arg, const struct mi_http_req *req, int status,
    long long sent, const char *note, long long usec)
{
	struct hook *h = arg;
	char when[32];
	struct tm tm;
	time_t t;

	if (!h->access_log)
		return;
	t = time(NULL);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s %s \"%s %s\" %d %lld %lldus %s\n", when,
	    req->peer ? req->peer : "-", req->method_name[0] ?
	    req->method_name : "-", req->path[0] ? req->path : "-", status,
	    sent, usec, note[0] ? note : "-");
}

/* Latency to the stored artifact, polls saved, old delivery ids. */
static void
maintain(struct hook *h, struct mi_db **db, long long *next_prune)
{
	struct mi_err err = MI_ERR_INIT;
	jv rows;
	int i, n;
	size_t k;

	if (*db == NULL && (*db = mi_db_open(NULL, &err)) == NULL)
		return;
	rows = mi_webhook_stored(*db, &err);
	if (!jv_is_valid(rows)) {
		mi_warn("%s", err.msg);
		mi_db_close(*db);
		*db = NULL;
		return;
	}
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);
		double ms = 0, saved = 0;

		mi_json_num(row, "stored_ms", &ms, 0, NULL);
		mi_json_num(row, "polls_saved", &saved, 0, NULL);
		atomic_fetch_add(&h->stored_count, 1);
		atomic_fetch_add(&h->stored_ms_sum, (long long)ms);
		atomic_fetch_add(&h->polls_saved, (long long)saved);
		for (k = 0; k < NBUCKETS; k++)
			if (ms <= buckets[k] * 1000)
				atomic_fetch_add(&h->stored_le[k], 1);
		jv_free(row);
	}
	jv_free(rows);
	if (mi_now_ms() >= *next_prune) {
		/* Replays are refused by id for two days (longer than any
		 * provider retries), and by timestamp after that. */
		if (mi_webhook_prune(*db, 2 * 86400, &err) == -1)
			mi_warn("%s", err.msg);
		*next_prune = mi_now_ms() + 3600 * 1000;
	}
}

static int
run(const char *listen, size_t max_body, int access_log, int threads,
    size_t max_batch, long linger_ms)
{
	static struct hook h;
	struct mi_err err = MI_ERR_INIT;
	struct mi_httpd_opts o;
	struct mi_db *mdb;
	struct timespec tick = { 0, 200 * 1000 * 1000 };
	long long next_prune = 0;
	sigset_t set;
	int sig;

	h.access_log = access_log;
	h.max_batch = max_batch;
	h.linger_ms = linger_ms;
	h.tail = &h.head;
	pthread_mutex_init(&h.lock, NULL);
	pthread_cond_init(&h.work, NULL);
	pthread_cond_init(&h.applied, NULL);
	if ((h.metrics_token = getenv("MI_METRICS_TOKEN")) != NULL &&
	    *h.metrics_token == '\0')
		h.metrics_token = NULL;
	if ((h.db = mi_db_open(NULL, &err)) == NULL ||
	    (mdb = mi_db_open(NULL, &err)) == NULL)
		mi_die_err(&err);
	/* Workers inherit a mask without these: only sigtimedwait sees
	 * them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Provider definitions and h.db belong to the applier alone. */
	if (pthread_create(&h.applier, NULL, applier, &h) != 0)
		mi_die(EX_OSERR, "unable to start a thread");
	memset(&o, 0, sizeof(o));
	o.listen = listen;
	o.threads = threads;
	o.max_body = max_body;
	o.header_timeout_ms = 15000;
	o.handler = handle;
	o.done = log_request;
	o.arg = &h;
	if ((h.httpd = mi_httpd_start(&o, &err)) == NULL)
		mi_die_err(&err);
	mi_verbose("listening on %s (port %d)", listen,
	    mi_httpd_port(h.httpd));
	for (;;) {
		sig = sigtimedwait(&set, NULL, &tick);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		maintain(&h, &mdb, &next_prune);
	}
	mi_verbose("stopping on signal %d", sig);
	/* In-flight deliveries are answered before the applier stops. */
	mi_httpd_stop(h.httpd);
	pthread_mutex_lock(&h.lock);
	h.stopping = 1;
	pthread_cond_signal(&h.work);
	pthread_mutex_unlock(&h.lock);
	pthread_join(h.applier, NULL);
	mi_db_close(h.db);
	mi_db_close(mdb);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "access-log", no_argument, NULL, 'a' },
		{ "batch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ "listen", required_argument, NULL, 'l' },
		{ "max-body", required_argument, NULL, 'm' },
		{ "threads", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 }
	};
	const char *listen = "127.0.0.1:8081";
	unsigned long long max_body = 1024 * 1024, batch = 64, threads = 32;
	unsigned long long linger = 0;
	int c, access_log = 0;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "ab:l:m:t:vw:", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			access_log = 1;
			break;
		case 'b':
			if (mi_parse_uint(optarg, 1, 4096, &batch) == -1)
				mi_die(EX_USAGE, "bad --batch '%s'", optarg);
			break;
		case 'h':
			mi_usage(usage, 0);
		case 'l':
			listen = optarg;
			break;
		case 'm':
			if (mi_parse_uint(optarg, 1, 64 * 1024 * 1024,
			    &max_body) == -1)
				mi_die(EX_USAGE, "bad --max-body '%s'", optarg);
			break;
		case 't':
			if (mi_parse_uint(optarg, 1, 256, &threads) == -1)
				mi_die(EX_USAGE, "bad --threads '%s'", optarg);
			break;
		case 'v':
			mi_verbosity++;
			break;
		case 'V':
			mi_version();
		case 'w':
			if (mi_parse_uint(optarg, 0, 10000, &linger) == -1)
				mi_die(EX_USAGE, "bad --wait '%s'", optarg);
			break;
		default:
			mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind != argc)
		mi_usage(usage, EX_USAGE);
	return run(listen, (size_t)max_body, access_log, (int)threads,
	    (size_t)batch, (long)linger);
}
