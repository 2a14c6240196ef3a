/*
 * http.c - libcurl behind http.h.  Every exchange, one-shot or not, runs
 * on a multi handle: mi_http_do is a private multi with one exchange.
 * Redirects are followed here rather than by libcurl, because libcurl
 * sends custom headers (x-goog-api-key, x-api-key, ...) to whatever host
 * a redirect names; here the auth headers go to the first origin only.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "http.h"
#include "banned.h"

#define MAX_REDIRS	10
#define ERR_BODY_MAX	(64 * 1024)
#define DEFAULT_MAX	(16 * 1024 * 1024)
#define MAX_HEADERS	64

struct xfer {
	struct mi_http_multi *m;
	CURL *easy;
	struct curl_slist *plain;	/* headers for any origin */
	struct curl_slist *all;		/* plus auth headers: first origin */
	char *url;
	char *origin;
	char *method;
	char *body;
	size_t bodylen;
	long timeout_ms, connect_timeout_ms;
	int follow, redirs, too_big, nheaders;
	size_t max_body;
	mi_http_sink sink;
	void *sink_arg;
	mi_http_done done;
	void *arg;
	struct mi_http_resp resp;
	char errbuf[CURL_ERROR_SIZE];
	struct xfer *next;		/* free list */
};

struct mi_http_multi {
	CURLM *multi;
	int count;
	struct xfer *free;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

static void
global_init(void)
{
	init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void
mi_http_resp_init(struct mi_http_resp *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->retry_after_ms = -1;
	resp->content_length = -1;
	resp->headers = jv_object();
	mi_buf_init(&resp->body, 0);
}

void
mi_http_resp_release(struct mi_http_resp *resp)
{
	jv_free(resp->headers);
	resp->headers = jv_null();
	mi_buf_release(&resp->body);
}

/* "scheme://host:port" of url, lower-cased; NULL when unparseable. */
static char *
origin_of(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
	size_t n, i;

	if (u == NULL)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
	    CURLUE_OK)
		goto out;
	n = strlen(scheme) + strlen(host) + strlen(port) + 5;
	if ((out = malloc(n)) == NULL)
		goto out;
	snprintf(out, n, "%s://%s:%s", scheme, host, port);
	for (i = 0; out[i]; i++)
		out[i] = (char)tolower((unsigned char)out[i]);
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return out;
}

static long long
parse_retry_after(const char *v)
{
	const char *p;
	long long ms;
	time_t t;

	for (p = v; *p >= '0' && *p <= '9'; p++)
		;
	if (p != v && *p == '\0') {
		ms = strtoll(v, NULL, 10);
		if (ms > 86400)
			ms = 86400;
		return ms * 1000;
	}
	if ((t = curl_getdate(v, NULL)) == -1)
		return -1;
	ms = ((long long)t - (long long)time(NULL)) * 1000;
	return ms < 0 ? 0 : ms;
}

static size_t
on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	struct mi_http_resp *r = &x->resp;
	size_t len = size * nmemb, n = len, i, c;
	char name[64], value[1024];

	while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n'))
		n--;
	if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		/* A new answer (after a 100 or a redirect) starts afresh. */
		const char *sp = memchr(p, ' ', n);

		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		jv_free(r->headers);
		r->headers = jv_object();
		x->nheaders = 0;
		r->content_type[0] = '\0';
		r->content_length = -1;
		r->retry_after_ms = -1;
		return len;
	}
	for (c = 0; c < n && p[c] != ':'; c++)
		;
	if (c == 0 || c == n || c >= sizeof(name) ||
	    x->nheaders >= MAX_HEADERS)
		return len;
	for (i = 0; i < c; i++)
		name[i] = (char)tolower((unsigned char)p[i]);
	name[c] = '\0';
	for (i = c + 1; i < n && (p[i] == ' ' || p[i] == '\t'); i++)
		;
	n -= i;
	if (n >= sizeof(value))
		n = sizeof(value) - 1;
	memcpy(value, p + i, n);
	value[n] = '\0';
	r->headers = jv_object_set(r->headers, jv_string(name),
	    jv_string(value));
	x->nheaders++;
	if (strcmp(name, "content-type") == 0)
		snprintf(r->content_type, sizeof(r->content_type), "%.*s",
		    (int)sizeof(r->content_type) - 1, value);
	else if (strcmp(name, "content-length") == 0)
		r->content_length = strtoll(value, NULL, 10);
	else if (strcmp(name, "retry-after") == 0)
		r->retry_after_ms = parse_retry_after(value);
	return len;
}

static int
is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 ||
	    status == 307 || status == 308;
}

static size_t
on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	struct mi_http_resp *r = &x->resp;
	size_t len = size * nmemb, cap;

	if (x->follow && is_redirect(r->status))
		return len;
	if (x->sink && r->status >= 200 && r->status < 300) {
		if (x->sink(x->sink_arg, r, p, len, &r->err) == -1) {
			r->sink_failed = 1;
			return 0;
		}
		r->received += (long long)len;
		return len;
	}
	cap = x->sink ? ERR_BODY_MAX : x->max_body;
	if (r->body.len + len > cap || mi_buf_add(&r->body, p, len) == -1) {
		mi_err_set(&r->err, EX_PROTOCOL,
		    "answer larger than %zu bytes", cap);
		x->too_big = 1;
		return 0;
	}
	r->received += (long long)len;
	return len;
}

static struct curl_slist *
slist_add(struct curl_slist *l, const char *s, int *ok)
{
	struct curl_slist *n = curl_slist_append(l, s);

	if (n == NULL) {
		*ok = 0;
		return l;
	}
	return n;
}

static void
xfer_clear(struct xfer *x)
{
	curl_slist_free_all(x->plain);
	curl_slist_free_all(x->all);
	free(x->url);
	free(x->origin);
	free(x->method);
	if (x->body)
		explicit_bzero(x->body, x->bodylen);
	free(x->body);
	x->plain = x->all = NULL;
	x->url = x->origin = x->method = x->body = NULL;
	mi_http_resp_release(&x->resp);
}

/* Sets the easy handle up for x->url; the auth headers go to the first
 * origin only. */
static int
xfer_setup(struct xfer *x)
{
	CURL *e = x->easy;
	char *o = origin_of(x->url);
	int same = o && x->origin && strcmp(o, x->origin) == 0;

	free(o);
	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "mi/" MI_VERSION);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, same ? x->all : x->plain);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    x->connect_timeout_ms > 0 ? x->connect_timeout_ms : 10000L);
	if (x->timeout_ms >= 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
		    x->timeout_ms > 0 ? x->timeout_ms : 60000L);
	else {
		/* No deadline for the whole download: give up on a stall. */
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
	}
	if (strcmp(x->method, "GET") == 0)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(x->method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else {
		if (strcmp(x->method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)x->bodylen);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS,
		    x->body ? x->body : "");
	}
	x->errbuf[0] = '\0';
	x->too_big = 0;
	mi_http_resp_release(&x->resp);
	mi_http_resp_init(&x->resp);
	return 0;
}

static void
xfer_put(struct mi_http_multi *m, struct xfer *x)
{
	xfer_clear(x);
	x->next = m->free;
	m->free = x;
}

static struct xfer *
xfer_get(struct mi_http_multi *m, struct mi_err *err)
{
	struct xfer *x = m->free;

	if (x) {
		m->free = x->next;
		return x;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	if ((x->easy = curl_easy_init()) == NULL) {
		free(x);
		mi_err_set(err, EX_OSERR, "unable to start an HTTP exchange");
		return NULL;
	}
	x->m = m;
	x->resp.headers = jv_null();
	mi_buf_init(&x->resp.body, 0);
	return x;
}

struct mi_http_multi *
mi_http_multi_new(int max_per_host, struct mi_err *err)
{
	struct mi_http_multi *m;

	pthread_once(&init_once, global_init);
	if (init_rc == -1) {
		mi_err_set(err, EX_SOFTWARE, "unable to initialise libcurl");
		return NULL;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->multi = curl_multi_init()) == NULL) {
		free(m);
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	    (long)(max_per_host > 0 ? max_per_host : 8));
	curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS,
	    (long)(max_per_host > 0 ? 4 * max_per_host : 32));
	return m;
}

void
mi_http_multi_free(struct mi_http_multi *m)
{
	struct xfer *x;

	if (m == NULL)
		return;
	while ((x = m->free) != NULL) {
		m->free = x->next;
		curl_easy_cleanup(x->easy);
		free(x);
	}
	/* Exchanges still running are abandoned with their handles. */
	curl_multi_cleanup(m->multi);
	free(m);
}

int
mi_http_multi_count(const struct mi_http_multi *m)
{
	return m->count;
}

int
mi_http_multi_add(struct mi_http_multi *m, const struct mi_http_req *req,
    mi_http_done done, void *arg, struct mi_err *err)
{
	struct xfer *x;
	size_t i;
	int ok = 1;

	if ((x = xfer_get(m, err)) == NULL)
		return -1;
	x->url = strdup(req->url);
	x->origin = origin_of(req->url);
	x->method = strdup(req->method ? req->method : "GET");
	if (req->body && req->bodylen > 0) {
		if ((x->body = malloc(req->bodylen)) != NULL)
			memcpy(x->body, req->body, req->bodylen);
		x->bodylen = req->bodylen;
	} else
		x->bodylen = 0;
	if (x->url == NULL || x->method == NULL ||
	    (req->bodylen > 0 && req->body && x->body == NULL)) {
		xfer_put(m, x);
		return mi_err_set(err, EX_OSERR, "out of memory");
	}
	if (x->origin == NULL) {
		xfer_put(m, x);
		return mi_err_set(err, EX_DATAERR, "bad URL");
	}
	x->plain = slist_add(NULL, "Expect:", &ok);
	x->all = slist_add(NULL, "Expect:", &ok);
	for (i = 0; req->headers && req->headers[i]; i++) {
		x->plain = slist_add(x->plain, req->headers[i], &ok);
		x->all = slist_add(x->all, req->headers[i], &ok);
	}
	for (i = 0; req->auth_headers && req->auth_headers[i]; i++)
		x->all = slist_add(x->all, req->auth_headers[i], &ok);
	if (!ok) {
		xfer_put(m, x);
		return mi_err_set(err, EX_OSERR, "out of memory");
	}
	x->timeout_ms = req->timeout_ms;
	x->connect_timeout_ms = req->connect_timeout_ms;
	x->follow = req->follow;
	x->redirs = 0;
	x->max_body = req->max_body ? req->max_body : DEFAULT_MAX;
	x->sink = req->sink;
	x->sink_arg = req->sink_arg;
	x->done = done;
	x->arg = arg;
	xfer_setup(x);
	if (curl_multi_add_handle(m->multi, x->easy) != CURLM_OK) {
		xfer_put(m, x);
		return mi_err_set(err, EX_SOFTWARE,
		    "unable to start an HTTP exchange");
	}
	m->count++;
	return 0;
}

/* Restarts x at the redirect target; 0, or -1 when it cannot. */
static int
redirect(struct mi_http_multi *m, struct xfer *x)
{
	char *target = NULL, *copy;

	curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &target);
	if (target == NULL || (copy = strdup(target)) == NULL)
		return -1;
	curl_multi_remove_handle(m->multi, x->easy);
	free(x->url);
	x->url = copy;
	if (x->resp.status == 303 || ((x->resp.status == 301 ||
	    x->resp.status == 302) && strcmp(x->method, "POST") == 0)) {
		free(x->method);
		x->method = strdup("GET");
		if (x->method == NULL)
			return -1;
	}
	x->redirs++;
	xfer_setup(x);
	if (curl_multi_add_handle(m->multi, x->easy) != CURLM_OK)
		return -1;
	return 0;
}

static void
finish(struct mi_http_multi *m, struct xfer *x, CURLcode rc)
{
	struct mi_http_resp *r = &x->resp;
	curl_off_t reqsize = 0;

	curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &reqsize);
	if (reqsize > 0)
		r->sent = 1;
	if (rc == CURLE_OK && x->follow && is_redirect(r->status)) {
		if (x->redirs >= MAX_REDIRS) {
			r->net_error = 1;
			mi_err_set(&r->err, EX_PROTOCOL,
			    "more than %d redirects", MAX_REDIRS);
		} else if (redirect(m, x) == 0)
			return;
		else {
			r->net_error = 1;
			mi_err_set(&r->err, EX_PROTOCOL, "bad redirect");
		}
	} else if (rc != CURLE_OK) {
		r->net_error = 1;
		if (!r->sink_failed && !x->too_big) {
			r->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
			mi_err_set(&r->err, rc == CURLE_PARTIAL_FILE ?
			    EX_PROTOCOL : EX_TEMPFAIL, "%s%s",
			    rc == CURLE_PARTIAL_FILE ? "truncated answer: " : "",
			    x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
		}
	}
	curl_multi_remove_handle(m->multi, x->easy);
	m->count--;
	if (x->done)
		x->done(x->arg, r);
	xfer_put(m, x);
}

int
mi_http_multi_wait(struct mi_http_multi *m, const int *fds, int nfds,
    long timeout_ms, struct mi_err *err)
{
	struct curl_waitfd w[8];
	CURLMsg *msg;
	int running, left, i, ready = 0, numfds = 0;

	if (nfds > 8)
		nfds = 8;
	for (i = 0; i < nfds; i++) {
		w[i].fd = fds[i];
		w[i].events = CURL_WAIT_POLLIN;
		w[i].revents = 0;
	}
	if (timeout_ms < 0)
		timeout_ms = 0;
	if (curl_multi_poll(m->multi, nfds ? w : NULL, (unsigned)nfds,
	    (int)timeout_ms, &numfds) != CURLM_OK)
		return mi_err_set(err, EX_SOFTWARE, "curl_multi_poll failed");
	for (i = 0; i < nfds; i++)
		if (w[i].revents)
			ready++;
	if (curl_multi_perform(m->multi, &running) != CURLM_OK)
		return mi_err_set(err, EX_SOFTWARE,
		    "curl_multi_perform failed");
	while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
		struct xfer *x = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
		    (char **)&x);
		if (x)
			finish(m, x, msg->data.result);
	}
	return ready;
}

static void
do_done(void *arg, struct mi_http_resp *resp)
{
	struct mi_http_resp *out = arg;

	mi_http_resp_release(out);
	*out = *resp;
	resp->headers = jv_null();
	mi_buf_init(&resp->body, 0);
}

int
mi_http_do(const struct mi_http_req *req, struct mi_http_resp *resp)
{
	struct mi_http_multi *m;

	if ((m = mi_http_multi_new(1, &resp->err)) == NULL) {
		resp->net_error = 1;
		return -1;
	}
	if (mi_http_multi_add(m, req, do_done, resp, &resp->err) == -1) {
		mi_http_multi_free(m);
		resp->net_error = 1;
		return -1;
	}
	while (m->count > 0)
		if (mi_http_multi_wait(m, NULL, 0, 1000, &resp->err) == -1) {
			resp->net_error = 1;
			break;
		}
	mi_http_multi_free(m);
	return resp->net_error ? -1 : 0;
}

int
mi_http_escape(struct mi_buf *buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char e[3];

		if (isalnum(c) || c == '-' || c == '.' || c == '_' ||
		    c == '~') {
			if (mi_buf_add(buf, s, 1) == -1)
				return -1;
			continue;
		}
		e[0] = '%';
		e[1] = hex[c >> 4];
		e[2] = hex[c & 15];
		if (mi_buf_add(buf, e, 3) == -1)
			return -1;
	}
	return 0;
}
