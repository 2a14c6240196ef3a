/*
 * http.c - libcurl behind http.h.  Every exchange, one-shot or not, runs
 * on a multi handle: mi_http_do is a private multi with one exchange.
 * Redirects are followed here rather than by libcurl, because libcurl
 * sends custom headers (x-goog-api-key, x-api-key, ...) to whatever host
 * a redirect names; here the auth headers go to the first origin only.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "http.h"
#include "banned.h"

#define MAX_REDIRS	10
#define ERR_BODY_MAX	(64 * 1024)
#define DEFAULT_MAX	(16 * 1024 * 1024)
#define MAX_HEADERS	64

/* Header lists, shared by the prepared requests that send the same
 * headers (every poll of a provider). */
struct hdrset {
	char *key;			/* the headers, one after another */
	size_t keylen, refs;
	struct curl_slist *plain;	/* headers for any origin */
	struct curl_slist *all;		/* plus auth headers: first origin */
	struct hdrset *next;
};

struct mi_http_prep {
	char *url;
	CURLU *uh;			/* url parsed; NULL if curl cannot */
	struct hdrset *h;
};

struct xfer {
	struct mi_http_multi *m;
	CURL *easy;
	struct curl_slist *plain;	/* headers for any origin */
	struct curl_slist *all;		/* plus auth headers: first origin */
	const struct mi_http_prep *prep;	/* the lists are its own */
	char *url;
	char *first;			/* the URL asked for */
	char *origin;			/* its origin, once a redirect needs it */
	char *method;
	char *body;
	size_t bodylen;
	long timeout_ms, connect_timeout_ms;
	int follow, redirs, too_big, nheaders, fresh;
	long low_speed_bytes, low_speed_s;
	size_t max_body;
	mi_http_sink sink;
	void *sink_arg;
	mi_http_done done;
	void *arg;
	struct mi_http_resp resp;
	char errbuf[CURL_ERROR_SIZE];
	struct xfer *next;		/* free list */
	struct xfer *live;		/* exchanges under way */
};

/*
 * The multi handle runs on curl's socket interface over an epoll set:
 * curl says which sockets to watch and when its next timeout is, and only
 * the transfers whose sockets are ready do any work.  (curl_multi_perform
 * walks every transfer on every call, which costs more than the exchanges
 * themselves with thousands of polls a second.)  The caller's fds sit in
 * the same epoll set, marked apart from curl's sockets.
 */
#define EXTRA_MARK (1ULL << 40)
#define MAX_EXTRA 8

struct mi_http_multi {
	CURLM *multi;
	int count;
	struct xfer *free;
	struct xfer *live;
	int epfd;
	long long timer_at;		/* mi_now_ms() of curl's timeout, -1 */
	int extra[MAX_EXTRA];		/* the caller's fds in the set */
	int nextra;
	unsigned char *fdst;		/* by fd: FD_* */
	int nfdst;
};

/*
 * What the epoll set holds of a socket.  A connection's socket (opened
 * and closed through the callbacks below) stays in the set while its
 * connection waits, kept alive, for the next exchange: curl asks to
 * watch it again for that one, as it was, and that costs no system
 * call.  If it becomes readable meanwhile (the server closed it), it
 * leaves the set then.
 */
#define FD_CONN	1	/* a connection's: we see it closed */
#define FD_REG	2	/* in the epoll set */
#define FD_IN	4	/* as registered */
#define FD_OUT	8
#define FD_WANT	16	/* curl watches it */

static unsigned char *
fd_state(struct mi_http_multi *m, int fd)
{
	static unsigned char none;

	if (fd < 0)
		return &none;
	if (fd >= m->nfdst) {
		int n = fd < 64 ? 128 : 2 * fd;
		unsigned char *t = realloc(m->fdst, (size_t)n);

		if (t == NULL)
			return &none;
		memset(t + m->nfdst, 0, (size_t)(n - m->nfdst));
		m->fdst = t;
		m->nfdst = n;
	}
	return &m->fdst[fd];
}

static curl_socket_t
on_open(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct mi_http_multi *m = arg;
	int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);

	if (fd == -1)
		return CURL_SOCKET_BAD;
	*fd_state(m, fd) = purpose == CURLSOCKTYPE_IPCXN ? FD_CONN : 0;
	return fd;
}

static int
on_close(void *arg, curl_socket_t fd)
{
	struct mi_http_multi *m = arg;

	/* Closing it takes it out of the epoll set. */
	if (fd >= 0 && fd < m->nfdst)
		m->fdst[fd] = 0;
	return close(fd);
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t hdrsets_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hdrset *hdrsets;
static int init_rc;
static int proxy_env;		/* a proxy is named in the environment */

static void
global_init(void)
{
	static const char *const vars[] = {
		"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
		"all_proxy", "ALL_PROXY"
	};
	size_t i;

	init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (getenv(vars[i]) && *getenv(vars[i]))
			proxy_env = 1;
}

void
mi_http_resp_init(struct mi_http_resp *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->retry_after_ms = -1;
	resp->content_length = -1;
	mi_buf_init(&resp->headers, 64 * 1024);
	mi_buf_init(&resp->body, 0);
}

void
mi_http_resp_release(struct mi_http_resp *resp)
{
	mi_buf_release(&resp->headers);
	mi_buf_release(&resp->body);
}

jv
mi_http_resp_headers(const struct mi_http_resp *resp)
{
	const char *p = resp->headers.buf, *nl, *colon;
	jv o = jv_object();

	for (; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		if ((colon = memchr(p, ':', (size_t)(nl - p))) == NULL)
			continue;
		o = jv_object_set(o, jv_string_sized(p, (int)(colon - p)),
		    jv_string_sized(colon + 2, (int)(nl - colon - 2)));
	}
	return o;
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
		mi_buf_reset(&r->headers);
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
	mi_buf_add(&r->headers, name, c);
	mi_buf_add(&r->headers, ": ", 2);
	mi_buf_add(&r->headers, value, n);
	mi_buf_add(&r->headers, "\n", 1);
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
slist_free(struct curl_slist *l)
{
	struct curl_slist *n;

	for (n = l; n; n = n->next)
		explicit_bzero(n->data, strlen(n->data));
	curl_slist_free_all(l);
}

/* The header lists of a request: "Expect:" (no 100-continue) first. */
static int
slists_of(const struct mi_http_req *req, struct curl_slist **plain,
    struct curl_slist **all)
{
	size_t i;
	int ok = 1;

	*plain = slist_add(NULL, "Expect:", &ok);
	*all = slist_add(NULL, "Expect:", &ok);
	for (i = 0; req->headers && req->headers[i]; i++) {
		*plain = slist_add(*plain, req->headers[i], &ok);
		*all = slist_add(*all, req->headers[i], &ok);
	}
	for (i = 0; req->auth_headers && req->auth_headers[i]; i++)
		*all = slist_add(*all, req->auth_headers[i], &ok);
	return ok ? 0 : -1;
}

static void
hdrset_put(struct hdrset *h)
{
	struct hdrset **hp;

	if (h == NULL)
		return;
	pthread_mutex_lock(&hdrsets_lock);
	if (--h->refs > 0) {
		pthread_mutex_unlock(&hdrsets_lock);
		return;
	}
	for (hp = &hdrsets; *hp && *hp != h; hp = &(*hp)->next)
		;
	if (*hp)
		*hp = h->next;
	pthread_mutex_unlock(&hdrsets_lock);
	explicit_bzero(h->key, h->keylen);
	free(h->key);
	slist_free(h->plain);
	slist_free(h->all);
	free(h);
}

/* The header lists of req, shared with the requests that have them. */
static struct hdrset *
hdrset_get(const struct mi_http_req *req)
{
	struct mi_buf k = MI_BUF_INIT;
	struct hdrset *h;
	size_t i;
	int ok = 1;

	for (i = 0; req->headers && req->headers[i]; i++)
		ok &= mi_buf_adds(&k, req->headers[i]) == 0 &&
		    mi_buf_add(&k, "\n", 1) == 0;
	ok &= mi_buf_add(&k, "\0", 1) == 0;
	for (i = 0; req->auth_headers && req->auth_headers[i]; i++)
		ok &= mi_buf_adds(&k, req->auth_headers[i]) == 0 &&
		    mi_buf_add(&k, "\n", 1) == 0;
	if (!ok) {
		explicit_bzero(k.buf, k.len);
		mi_buf_release(&k);
		return NULL;
	}
	pthread_mutex_lock(&hdrsets_lock);
	for (h = hdrsets; h; h = h->next)
		if (h->keylen == k.len && memcmp(h->key, k.buf, k.len) == 0)
			break;
	if (h)
		h->refs++;
	pthread_mutex_unlock(&hdrsets_lock);
	if (h) {
		explicit_bzero(k.buf, k.len);
		mi_buf_release(&k);
		return h;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		explicit_bzero(k.buf, k.len);
		mi_buf_release(&k);
		return NULL;
	}
	h->keylen = k.len;
	h->key = mi_buf_detach(&k, NULL);
	h->refs = 1;
	if (slists_of(req, &h->plain, &h->all) == -1) {
		hdrset_put(h);
		return NULL;
	}
	pthread_mutex_lock(&hdrsets_lock);
	h->next = hdrsets;
	hdrsets = h;
	pthread_mutex_unlock(&hdrsets_lock);
	return h;
}

struct mi_http_prep *
mi_http_prep_new(const struct mi_http_req *req)
{
	struct mi_http_prep *p;

	pthread_once(&init_once, global_init);
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	if ((p->url = strdup(req->url)) == NULL ||
	    (p->h = hdrset_get(req)) == NULL) {
		mi_http_prep_free(p);
		return NULL;
	}
	/* Parsed as libcurl parses a URL it is given; one it refuses is
	 * left to it, to fail the exchange with its own words. */
	if ((p->uh = curl_url()) != NULL && curl_url_set(p->uh,
	    CURLUPART_URL, p->url, CURLU_GUESS_SCHEME |
	    CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
		curl_url_cleanup(p->uh);
		p->uh = NULL;
	}
	return p;
}

void
mi_http_prep_free(struct mi_http_prep *p)
{
	if (p == NULL)
		return;
	free(p->url);
	curl_url_cleanup(p->uh);
	hdrset_put(p->h);
	free(p);
}

static void
xfer_clear(struct xfer *x)
{
	if (x->prep == NULL) {
		curl_slist_free_all(x->plain);
		curl_slist_free_all(x->all);
	}
	x->prep = NULL;
	free(x->url);
	free(x->first);
	free(x->origin);
	free(x->method);
	if (x->body)
		explicit_bzero(x->body, x->bodylen);
	free(x->body);
	x->plain = x->all = NULL;
	x->url = x->first = x->origin = x->method = x->body = NULL;
	mi_http_resp_release(&x->resp);
}

/* Sets the easy handle up for x->url; the auth headers go to the first
 * origin only. */
static int
xfer_setup(struct xfer *x)
{
	CURL *e = x->easy;
	int same = 1;

	/* The first hop is the request's own origin; only a redirect can
	 * lead elsewhere. */
	if (x->redirs > 0) {
		char *o = origin_of(x->url);

		if (x->origin == NULL)
			x->origin = origin_of(x->first);
		same = o && x->origin && strcmp(o, x->origin) == 0;
		free(o);
	}
	/* The handle keeps its fixed options (xfer_get): only what differs
	 * between exchanges is set, every time.  A prepared URL is not
	 * parsed again (the URL string, the same, is what curl reports). */
	curl_easy_setopt(e, CURLOPT_CURLU, x->prep && x->redirs == 0 ?
	    x->prep->uh : NULL);
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, same ? x->all : x->plain);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    x->connect_timeout_ms > 0 ? x->connect_timeout_ms : 10000L);
	if (x->timeout_ms >= 0) {
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
		    x->timeout_ms > 0 ? x->timeout_ms : 60000L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 0L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 0L);
	} else {
		/* No deadline for the whole download: give up on a stall. */
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT,
		    x->low_speed_bytes > 0 ? x->low_speed_bytes : 1L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
		    x->low_speed_s > 0 ? x->low_speed_s : 60L);
	}
	/* Set every time: the handle may have served a create before. */
	curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, (long)x->fresh);
	curl_easy_setopt(e, CURLOPT_FORBID_REUSE, (long)x->fresh);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
	if (strcmp(x->method, "GET") == 0)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(x->method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else {
		curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
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
	/* Nothing of a prepared request stays with an idle handle. */
	curl_easy_setopt(x->easy, CURLOPT_CURLU, NULL);
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, NULL);
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
	mi_buf_init(&x->resp.headers, 0);
	mi_buf_init(&x->resp.body, 0);
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "mi/" MI_VERSION);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	/* What libcurl would find in the environment on every exchange:
	 * no proxy is named, so none is used. */
	if (!proxy_env)
		curl_easy_setopt(x->easy, CURLOPT_PROXY, "");
	curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, on_open);
	curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETDATA, m);
	curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, on_close);
	curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, m);
	return x;
}

static int
on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct mi_http_multi *m = userp;
	unsigned char *st = fd_state(m, fd), ev;
	struct epoll_event ee;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		curl_multi_assign(m->multi, fd, NULL);
		*st &= (unsigned char)~FD_WANT;
		if ((*st & FD_CONN) && (*st & FD_REG))
			return 0;
		epoll_ctl(m->epfd, EPOLL_CTL_DEL, fd, NULL);
		*st &= (unsigned char)~(FD_REG | FD_IN | FD_OUT);
		return 0;
	}
	ev = (unsigned char)(((what & CURL_POLL_IN) ? FD_IN : 0) |
	    ((what & CURL_POLL_OUT) ? FD_OUT : 0));
	if (socketp == NULL)
		curl_multi_assign(m->multi, fd, m);
	if ((*st & FD_REG) && (*st & (FD_IN | FD_OUT)) == ev) {
		*st |= FD_WANT;
		return 0;
	}
	memset(&ee, 0, sizeof(ee));
	ee.data.u64 = (unsigned long long)fd;
	ee.events = ((ev & FD_IN) ? EPOLLIN : 0) | ((ev & FD_OUT) ? EPOLLOUT : 0);
	if (!(*st & FD_REG)) {
		if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ee) == -1 &&
		    errno == EEXIST)
			epoll_ctl(m->epfd, EPOLL_CTL_MOD, fd, &ee);
	} else
		epoll_ctl(m->epfd, EPOLL_CTL_MOD, fd, &ee);
	*st = (unsigned char)((*st & FD_CONN) | FD_REG | FD_WANT | ev);
	return 0;
}

static int
on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct mi_http_multi *m = userp;

	(void)multi;
	m->timer_at = timeout_ms < 0 ? -1 : mi_now_ms() + timeout_ms;
	return 0;
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
	if ((m->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		curl_multi_cleanup(m->multi);
		free(m);
		mi_err_set_errno(err, EX_OSERR, "epoll_create1");
		return NULL;
	}
	m->timer_at = -1;
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	    (long)(max_per_host > 0 ? max_per_host : 8));
	curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS,
	    (long)(max_per_host > 0 ? 4 * max_per_host : 32));
	return m;
}

void
mi_http_multi_stop(struct mi_http_multi *m)
{
	struct xfer *x;
	curl_off_t reqsize;

	if (m == NULL)
		return;
	while ((x = m->live) != NULL) {
		struct mi_http_resp *r = &x->resp;

		m->live = x->live;
		x->live = NULL;
		reqsize = 0;
		curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &reqsize);
		if (reqsize > 0)
			r->sent = 1;
		curl_multi_remove_handle(m->multi, x->easy);
		m->count--;
		r->net_error = 1;
		mi_err_set(&r->err, EX_TEMPFAIL, "stopped");
		if (x->done)
			x->done(x->arg, r);
		xfer_put(m, x);
	}
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
	/* Exchanges still running are abandoned (their done never runs). */
	while ((x = m->live) != NULL) {
		m->live = x->live;
		curl_multi_remove_handle(m->multi, x->easy);
		xfer_clear(x);
		curl_easy_cleanup(x->easy);
		free(x);
	}
	curl_multi_cleanup(m->multi);
	close(m->epfd);
	free(m->fdst);
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
	const char *url = req->prep ? req->prep->url : req->url;
	struct xfer *x;

	if ((x = xfer_get(m, err)) == NULL)
		return -1;
	x->url = strdup(url);
	x->first = strdup(url);
	x->method = strdup(req->method ? req->method : "GET");
	if (req->body && req->bodylen > 0) {
		if ((x->body = malloc(req->bodylen)) != NULL)
			memcpy(x->body, req->body, req->bodylen);
		x->bodylen = req->bodylen;
	} else
		x->bodylen = 0;
	if (x->url == NULL || x->first == NULL || x->method == NULL ||
	    (req->bodylen > 0 && req->body && x->body == NULL)) {
		xfer_put(m, x);
		return mi_err_set(err, EX_OSERR, "out of memory");
	}
	if (req->prep) {
		x->prep = req->prep;
		x->plain = req->prep->h->plain;
		x->all = req->prep->h->all;
	} else if (slists_of(req, &x->plain, &x->all) == -1) {
		xfer_put(m, x);
		return mi_err_set(err, EX_OSERR, "out of memory");
	}
	x->timeout_ms = req->timeout_ms;
	x->connect_timeout_ms = req->connect_timeout_ms;
	x->follow = req->follow;
	x->fresh = req->fresh != 0;
	x->low_speed_bytes = req->low_speed_bytes;
	x->low_speed_s = req->low_speed_s;
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
	x->live = m->live;
	m->live = x;
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
	struct xfer **lp;
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
	for (lp = &m->live; *lp && *lp != x; lp = &(*lp)->live)
		;
	if (*lp)
		*lp = x->live;
	x->live = NULL;
	if (x->done)
		x->done(x->arg, r);
	xfer_put(m, x);
}

/* Makes the caller's fds the extra members of the epoll set. */
static void
sync_extra(struct mi_http_multi *m, const int *fds, int nfds)
{
	struct epoll_event ev;
	int i, k, same = nfds == m->nextra;

	for (i = 0; same && i < nfds; i++)
		same = fds[i] == m->extra[i];
	if (same)
		return;
	for (i = 0; i < m->nextra; i++)
		epoll_ctl(m->epfd, EPOLL_CTL_DEL, m->extra[i], NULL);
	m->nextra = 0;
	for (i = 0; i < nfds && m->nextra < MAX_EXTRA; i++) {
		for (k = 0; k < m->nextra && m->extra[k] != fds[i]; k++)
			;
		if (k < m->nextra || fds[i] < 0)
			continue;
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.u64 = EXTRA_MARK | (unsigned)fds[i];
		if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fds[i], &ev) == 0 ||
		    errno == EEXIST)
			m->extra[m->nextra++] = fds[i];
	}
}

int
mi_http_multi_wait(struct mi_http_multi *m, const int *fds, int nfds,
    long timeout_ms, struct mi_err *err)
{
	struct epoll_event evs[64];
	CURLMsg *msg;
	int running, left, i, n, ready = 0;
	long long now = mi_now_ms();

	sync_extra(m, fds, nfds);
	if (timeout_ms < 0)
		timeout_ms = 0;
	if (m->timer_at >= 0 && m->timer_at - now < timeout_ms)
		timeout_ms = m->timer_at > now ? (long)(m->timer_at - now) : 0;
	n = epoll_wait(m->epfd, evs, 64, (int)timeout_ms);
	if (n == -1 && errno != EINTR)
		return mi_err_set_errno(err, EX_OSERR, "epoll_wait");
	for (i = 0; i < n; i++) {
		int flags = 0, fd;

		if (evs[i].data.u64 & EXTRA_MARK) {
			int k;

			fd = (int)(evs[i].data.u64 & 0xffffffffU);
			for (k = 0; k < nfds; k++)
				if (fds[k] == fd)
					ready |= 1 << k;
			continue;
		}
		fd = (int)evs[i].data.u64;
		if (fd < m->nfdst && (m->fdst[fd] & FD_REG) &&
		    !(m->fdst[fd] & FD_WANT)) {
			/* A kept-alive connection's, closed by the server or
			 * gone bad: curl finds out when it takes it again. */
			epoll_ctl(m->epfd, EPOLL_CTL_DEL, fd, NULL);
			m->fdst[fd] &= FD_CONN;
			continue;
		}
		if (evs[i].events & EPOLLIN)
			flags |= CURL_CSELECT_IN;
		if (evs[i].events & EPOLLOUT)
			flags |= CURL_CSELECT_OUT;
		if (evs[i].events & (EPOLLERR | EPOLLHUP))
			flags |= CURL_CSELECT_ERR;
		curl_multi_socket_action(m->multi,
		    (curl_socket_t)evs[i].data.u64, flags, &running);
	}
	if (m->timer_at >= 0 && mi_now_ms() >= m->timer_at) {
		m->timer_at = -1;
		curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0,
		    &running);
	}
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
	mi_buf_init(&resp->headers, 0);
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
	while (m->count > 0) {
		if (req->cancel && *req->cancel) {
			resp->net_error = 1;
			mi_err_set(&resp->err, EX_TEMPFAIL, "stopped");
			break;
		}
		if (req->tick)
			req->tick(req->sink_arg);
		if (mi_http_multi_wait(m, NULL, 0, req->tick || req->cancel ?
		    200 : 1000, &resp->err) == -1) {
			resp->net_error = 1;
			break;
		}
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
