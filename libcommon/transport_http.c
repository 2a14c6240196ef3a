/*
 * transport_http.c - the asynchronous HTTP transport: the definition's jq
 * builds each request and reads each answer; this file only moves them.
 * Also the HTTP request objects every transport shares, and the fetch of
 * a result (a URL, or a spool file).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "json.h"
#include "transport.h"
#include "banned.h"

#define MAX_HEADERS	32
#define TEXT_BODY_MAX	2000

/* A request object from a definition, made into a struct mi_http_req. */
struct mi_built {
	struct mi_http_req req;
	struct mi_buf url;
	struct mi_buf body;
	struct mi_buf auth;
	char *hdr[MAX_HEADERS + 2];
	const char *authv[2];
	char method[16];	/* the request's own: r may be freed */
	int nhdr;
	struct mi_http_prep *prep;	/* a poll's, sent many times */
};

static void
built_release(struct mi_built *b)
{
	int i;

	mi_buf_release(&b->url);
	mi_buf_release(&b->body);
	if (b->auth.len)
		explicit_bzero(b->auth.buf, b->auth.len);
	mi_buf_release(&b->auth);
	for (i = 0; i < b->nhdr; i++)
		free(b->hdr[i]);
	b->nhdr = 0;
	mi_http_prep_free(b->prep);
	b->prep = NULL;
	b->req.prep = NULL;
}

static int
add_header(struct mi_built *b, const char *name, const char *value,
    struct mi_err *err)
{
	struct mi_buf h = MI_BUF_INIT;

	if (b->nhdr >= MAX_HEADERS)
		return mi_err_set(err, EX_CONFIG, "too many headers");
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return mi_err_set(err, EX_CONFIG, "bad header '%.40s'", name);
	if (mi_buf_addf(&h, "%s: %s", name, value) == -1)
		return mi_err_set(err, EX_OSERR, "out of memory");
	b->hdr[b->nhdr++] = mi_buf_detach(&h, NULL);
	b->hdr[b->nhdr] = NULL;
	return 0;
}

static int
has_header(const struct mi_built *b, const char *name)
{
	size_t n = strlen(name);
	int i;

	for (i = 0; i < b->nhdr; i++)
		if (strncasecmp(b->hdr[i], name, n) == 0 &&
		    b->hdr[i][n] == ':')
			return 1;
	return 0;
}

/* Scalars as query or header values. */
static int
scalar_text(jv v, struct mi_buf *out)
{
	switch (jv_get_kind(v)) {
	case JV_KIND_STRING:
		return mi_buf_adds(out, jv_string_value(v));
	case JV_KIND_NUMBER: {
		jv s = jv_dump_string(jv_copy(v), 0);
		int r = mi_buf_adds(out, jv_string_value(s));

		jv_free(s);
		return r;
	}
	case JV_KIND_TRUE:
		return mi_buf_adds(out, "true");
	case JV_KIND_FALSE:
		return mi_buf_adds(out, "false");
	default:
		return -1;
	}
}

/*
 * Builds b from the request object r (borrowed).  dflt_auth: whether the
 * key goes along when r says nothing.
 */
static int
build(struct mi_provider *p, jv r, int dflt_auth, struct mi_built *b,
    struct mi_err *err)
{
	const char *method = NULL, *url = NULL, *path = NULL, *base = NULL;
	const char *ctype = NULL, *text = NULL;
	jv meta, q, h, js;
	int auth = dflt_auth, first = 1, k;
	double tmo = 0;

	memset(b, 0, sizeof(*b));
	mi_buf_init(&b->url, 8192);
	mi_buf_init(&b->body, 0);
	mi_buf_init(&b->auth, 4096);
	if (jv_get_kind(r) != JV_KIND_OBJECT)
		return mi_err_set(err, EX_CONFIG, "provider '%s': a request "
		    "is not an object", mi_provider_id(p));
	if (mi_json_str(r, "method", &method, 0, err) == -1 ||
	    mi_json_str(r, "url", &url, 0, err) == -1 ||
	    mi_json_str(r, "path", &path, 0, err) == -1 ||
	    mi_json_str(r, "body", &text, 0, err) == -1 ||
	    mi_json_str(r, "content_type", &ctype, 0, err) == -1 ||
	    mi_json_bool(r, "auth", &auth, 0, err) == -1 ||
	    mi_json_num(r, "timeout_ms", &tmo, 0, err) == -1)
		return mi_err_prefix(err, "provider '%s': request",
		    mi_provider_id(p));
	meta = mi_provider_meta(p);
	mi_json_str(meta, "base_url", &base, 0, NULL);
	if (url)
		k = mi_buf_adds(&b->url, url);
	else if (path && base)
		k = mi_buf_addf(&b->url, "%s%s%s", base,
		    path[0] == '/' ? "" : "/", path);
	else
		k = mi_err_set(err, EX_CONFIG, "provider '%s': a request "
		    "has neither url nor path", mi_provider_id(p));
	jv_free(meta);
	if (k == -1)
		return err && err->code ? -1 :
		    mi_err_set(err, EX_CONFIG, "URL too long");
	q = jv_object_get(jv_copy(r), jv_string("query"));
	if (jv_get_kind(q) == JV_KIND_OBJECT) {
		first = strchr(b->url.buf, '?') == NULL;
		jv_object_foreach(q, key, val) {
			struct mi_buf v = MI_BUF_INIT;

			if (jv_get_kind(val) != JV_KIND_NULL &&
			    scalar_text(val, &v) == 0) {
				mi_buf_adds(&b->url, first ? "?" : "&");
				mi_http_escape(&b->url, jv_string_value(key));
				mi_buf_adds(&b->url, "=");
				mi_http_escape(&b->url, v.buf);
				first = 0;
			}
			mi_buf_release(&v);
			jv_free(key);
			jv_free(val);
		}
	}
	jv_free(q);
	h = jv_object_get(jv_copy(r), jv_string("headers"));
	if (jv_get_kind(h) == JV_KIND_OBJECT) {
		jv_object_foreach(h, key, val) {
			struct mi_buf v = MI_BUF_INIT;

			k = scalar_text(val, &v) == 0 ? add_header(b,
			    jv_string_value(key), v.buf, err) : 0;
			mi_buf_release(&v);
			jv_free(key);
			jv_free(val);
			if (k == -1) {
				jv_free(h);
				return -1;
			}
		}
	}
	jv_free(h);
	js = jv_object_get(jv_copy(r), jv_string("json"));
	if (jv_is_valid(js) && jv_get_kind(js) != JV_KIND_NULL) {
		jv d = jv_dump_string(js, 0);

		k = mi_buf_adds(&b->body, jv_string_value(d));
		jv_free(d);
		if (k == -1)
			return mi_err_set(err, EX_OSERR, "out of memory");
		if (!has_header(b, "content-type") &&
		    add_header(b, "Content-Type", "application/json", err))
			return -1;
	} else {
		jv_free(js);
		if (text && mi_buf_adds(&b->body, text) == -1)
			return mi_err_set(err, EX_OSERR, "out of memory");
		if (ctype && add_header(b, "Content-Type", ctype, err))
			return -1;
	}
	if (!has_header(b, "accept") &&
	    add_header(b, "Accept", "application/json, */*", err) == -1)
		return -1;
	if (auth) {
		if ((k = mi_provider_auth(p, &b->auth, err)) == -1)
			return -1;
		if (k == 1) {
			b->authv[0] = b->auth.buf;
			b->authv[1] = NULL;
			b->req.auth_headers = b->authv;
		}
	}
	if (method && strlen(method) >= sizeof(b->method))
		return mi_err_set(err, EX_CONFIG, "provider '%s': request "
		    "method '%.20s' is too long", mi_provider_id(p), method);
	snprintf(b->method, sizeof(b->method), "%s", method ? method :
	    b->body.len > 0 || text ? "POST" : "GET");
	b->req.method = b->method;
	b->req.url = b->url.buf;
	b->req.headers = (const char *const *)b->hdr;
	b->req.body = b->body.buf;
	b->req.bodylen = b->body.len;
	/* An exchange takes seconds, and never longer than a job. */
	b->req.timeout_ms = tmo > 0 ? (long)tmo :
	    mi_provider_timeout_ms(p, NULL) < 30000 ?
	    mi_provider_timeout_ms(p, NULL) : 30000;
	b->req.follow = 1;
	return 0;
}

/* The answer as the definitions see it. */
static jv
response_json(struct mi_http_resp *r)
{
	jv o = jv_object(), body = jv_null();
	const char *b = r->body.buf;
	size_t i = 0;

	o = jv_object_set(o, jv_string("status"), jv_number(r->status));
	o = jv_object_set(o, jv_string("headers"), mi_http_resp_headers(r));
	if (r->retry_after_ms >= 0)
		o = jv_object_set(o, jv_string("retry_after_ms"),
		    jv_number((double)r->retry_after_ms));
	while (i < r->body.len && (b[i] == ' ' || b[i] == '\n' ||
	    b[i] == '\r' || b[i] == '\t'))
		i++;
	if (i < r->body.len && (b[i] == '{' || b[i] == '[' ||
	    strstr(r->content_type, "json") != NULL)) {
		body = jv_parse_sized(b, (int)r->body.len);
		if (!jv_is_valid(body)) {
			jv_free(body);
			body = jv_null();
		}
	}
	if (jv_get_kind(body) == JV_KIND_NULL && r->body.len > 0)
		body = jv_string_sized(b, r->body.len > TEXT_BODY_MAX ?
		    TEXT_BODY_MAX : (int)r->body.len);
	o = jv_object_set(o, jv_string("body"), body);
	o = jv_object_set(o, jv_string("content_type"),
	    jv_string(r->content_type));
	return o;
}

static int
known_status(const char *s)
{
	return strcmp(s, "processing") == 0 || strcmp(s, "completed") == 0 ||
	    strcmp(s, "failed") == 0 || strcmp(s, "retry") == 0 ||
	    strcmp(s, "unknown") == 0;
}

/*
 * The outcome of an answer the definition could not read (msg says why):
 * the HTTP status decides first.  A 429 or 5xx is worth another try
 * whatever its body (an HTML page of a proxy, another service's JSON); a
 * 2xx to a create means the provider took it, so sending it again could
 * pay twice: its outcome is unknown.
 */
static jv
unread(long status, int create, const char *msg)
{
	if (status == 429 || status >= 500)
		return mi_outcome_error("retry", "PROVIDER_UNAVAILABLE", msg, 1);
	if (create && status >= 200 && status < 300)
		return mi_outcome_error("unknown", "PROVIDER_ERROR", msg, 1);
	if (status >= 200 && status < 300)
		return mi_outcome_error("retry", "PROVIDER_ERROR", msg, 1);
	return mi_outcome_error("failed", "PROVIDER_ERROR", msg, 0);
}

static int
unreadable_flag(jv out)
{
	int u = 0;

	mi_json_bool(out, "unreadable", &u, 0, NULL);
	return u;
}

/* Runs fn on input and checks the outcome's shape; status and create
 * say what answer it reads. */
static jv
outcome_of(struct mi_provider *p, const char *fn, jv input, long status,
    int create)
{
	struct mi_err err = MI_ERR_INIT;
	const char *st = NULL;
	jv out = mi_provider_call(p, fn, input, &err);
	char msg[400];

	if (!jv_is_valid(out)) {
		jv_free(out);
		snprintf(msg, sizeof(msg), "HTTP %ld: %s", status, err.msg);
		return unread(status, create, msg);
	}
	if (jv_get_kind(out) != JV_KIND_OBJECT ||
	    mi_json_str(out, "status", &st, 1, NULL) != 1 ||
	    !known_status(st)) {
		snprintf(msg, sizeof(msg), "HTTP %ld: provider '%s': %s gave "
		    "no known status", status, mi_provider_id(p), fn);
		jv_free(out);
		return unread(status, create, msg);
	}
	/* An accepted create whose answer could not be read is never
	 * simply tried again (a definition's explicit retry of a 2xx, such
	 * as Suno's error codes inside an HTTP 200, stands). */
	if (create && status >= 200 && status < 300 &&
	    strcmp(st, "retry") == 0 && unreadable_flag(out)) {
		jv e = jv_object_get(jv_copy(out), jv_string("error"));
		const char *m = "unreadable answer";

		if (jv_get_kind(e) == JV_KIND_OBJECT)
			mi_json_str(e, "message", &m, 0, NULL);
		snprintf(msg, sizeof(msg), "%s (the create was answered HTTP "
		    "%ld: it may have been accepted)", m, status);
		jv_free(e);
		jv_free(out);
		return mi_outcome_error("unknown", "PROVIDER_ERROR", msg, 1);
	}
	return out;
}

struct pending {
	struct mi_provider *p;
	jv input;
	char after[16];
	int create;
	struct mi_poll_memo *memo;
	mi_outcome_cb cb;
	void *arg;
	char *spool;		/* a 2xx body goes to this file */
	int fd;
};

static int
spool_sink(void *arg, const struct mi_http_resp *r, const void *data,
    size_t len, struct mi_err *err)
{
	struct pending *x = arg;
	const char *p = data;

	(void)r;
	/* A new file, never the old one's bytes: a spool file that mi-fetch
	 * adopted is the stored file (store.h). */
	if (x->fd == -1 && (unlink(x->spool) == -1 && errno != ENOENT ? -1 :
	    (x->fd = open(x->spool, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    0600))) == -1)
		return mi_err_set_errno(err, EX_IOERR, "unable to create '%s'",
		    x->spool);
	while (len > 0) {
		ssize_t n = write(x->fd, p, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return mi_err_set_errno(err, EX_IOERR,
			    "unable to write '%s'", x->spool);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A spooled 2xx answer: JSON is read back for the definition (capped);
 * anything else stays in the file, named in the response. */
static void
spooled_body(struct pending *x, struct mi_http_resp *r)
{
	char head[1];
	ssize_t n = 0;
	int fd;

	if (x->fd != -1) {
		close(x->fd);
		x->fd = -1;
	}
	if ((fd = open(x->spool, O_RDONLY | O_CLOEXEC)) == -1)
		return;
	if (strstr(r->content_type, "json") != NULL ||
	    ((n = read(fd, head, 1)) == 1 && (head[0] == '{' ||
	    head[0] == '['))) {
		char buf[65536];

		lseek(fd, 0, SEEK_SET);
		mi_buf_init(&r->body, 256 * 1024 * 1024);
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			if (mi_buf_add(&r->body, buf, (size_t)n) == -1)
				break;
		close(fd);
		unlink(x->spool);
		return;
	}
	close(fd);
	x->input = jv_object_set(x->input, jv_string("file"),
	    jv_string(x->spool));
}

void
mi_poll_memo_clear(struct mi_poll_memo *m)
{
	if (m->req) {
		built_release(m->req);
		free(m->req);
	}
	m->req = NULL;
	m->answer = 0;
	m->progress = -1;
}

#define FNV(h, c) (((h) ^ (unsigned char)(c)) * 1099511628211ULL)

/* Whether a JSON string starting at s (after its quote) is a URL. */
static int
url_string(const char *s, size_t n)
{
	static const char *const pre[] = {
		"http://", "https://", "http:\\/\\/", "https:\\/\\/"
	};
	size_t i, k;

	for (i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
		k = strlen(pre[i]);
		if (n >= k && memcmp(s, pre[i], k) == 0)
			return 1;
	}
	return 0;
}

/*
 * FNV-1a of the status and body; never 0.  urls_aside: a string that is
 * a URL counts as one mark, whatever it says (signatures and expiry
 * times change from one answer to the next, the state does not).
 */
static unsigned long long
fingerprint(const struct mi_http_resp *r, int urls_aside)
{
	unsigned long long h = 14695981039346656037ULL;
	const char *b = r->body.buf;
	size_t i, n = r->body.len;
	int in = 0;		/* inside a JSON string */

	h = FNV(h, r->status & 0xff);
	h = FNV(h, r->status >> 8);
	if (!urls_aside) {
		for (i = 0; i < n; i++)
			h = FNV(h, b[i]);
		return h ? h : 1;
	}
	for (i = 0; i < n; i++) {
		h = FNV(h, b[i]);
		if (in && b[i] == '\\' && i + 1 < n) {
			i++;
			h = FNV(h, b[i]);
		} else if (b[i] == '"' && in)
			in = 0;
		else if (b[i] == '"' && !url_string(b + i + 1, n - i - 1))
			in = 1;
		else if (b[i] == '"') {
			/* To the closing quote, which is hashed as usual. */
			for (i++; i < n && b[i] != '"'; i++)
				if (b[i] == '\\')
					i++;
			h = FNV(h, 'U');
			i--;
			in = 1;
		}
	}
	return h ? h : 1;
}

/* Remembers an answer that meant "processing" and nothing else. */
static void
remember(struct mi_poll_memo *m, const struct mi_http_resp *r, jv out)
{
	const char *st = NULL;
	double d = -1;
	int n = 0;

	m->answer = 0;
	if (mi_json_str(out, "status", &st, 0, NULL) != 1 ||
	    strcmp(st, "processing") != 0)
		return;
	jv_object_foreach(out, k, v) {
		if (strcmp(jv_string_value(k), "status") != 0 &&
		    strcmp(jv_string_value(k), "progress") != 0)
			n++;
		jv_free(k);
		jv_free(v);
	}
	if (n > 0 || mi_json_num(out, "progress", &d, 0, NULL) == -1)
		return;
	m->progress = d >= 0 ? (int)d : -1;
	m->answer = fingerprint(r, m->urls_aside);
}

static void
sent(void *arg, struct mi_http_resp *r)
{
	struct pending *x = arg;
	jv out;

	if (x->spool && x->fd != -1 && r->net_error) {
		close(x->fd);
		x->fd = -1;
		unlink(x->spool);
	}
	if (x->spool && !r->net_error && r->status >= 200 && r->status < 300)
		spooled_body(x, r);
	if (r->net_error) {
		char msg[300];

		snprintf(msg, sizeof(msg), "%s: %s", mi_provider_id(x->p),
		    r->err.msg);
		/*
		 * A create that went out and got no whole answer may have
		 * been accepted: it must not be sent again blindly.  (A
		 * synchronous create whose answer broke off surely reached
		 * the provider: only a new create can bring the result, but
		 * that is the definition's lost_create policy to decide.)
		 */
		if (x->create && r->sent)
			out = mi_outcome_error("unknown", "TIMEOUT", msg, 1);
		else
			out = mi_outcome_error("retry", r->timed_out ?
			    "TIMEOUT" : "PROVIDER_UNAVAILABLE", msg, 1);
		jv_free(x->input);
	} else if (x->create && (r->status == 502 || r->status == 504)) {
		char msg[300];

		/*
		 * A gateway in front of the provider lost its answer (or
		 * gave up waiting for it): the provider behind may have
		 * accepted the create, just as after a reset.
		 */
		snprintf(msg, sizeof(msg), "%s: HTTP %ld from a gateway: the "
		    "create may have been accepted", mi_provider_id(x->p),
		    r->status);
		out = mi_outcome_error("unknown", "TIMEOUT", msg, 1);
		jv_free(x->input);
	} else if (x->memo && x->memo->answer &&
	    x->memo->answer == fingerprint(r, x->memo->urls_aside)) {
		/* The same answer as last time: the same outcome. */
		jv_free(x->input);
		out = jv_object_set(jv_object(), jv_string("status"),
		    jv_string("processing"));
		if (x->memo->progress >= 0)
			out = jv_object_set(out, jv_string("progress"),
			    jv_number(x->memo->progress));
	} else {
		const char *st = NULL;
		jv resp = response_json(r);
		jv file;

		if (x->memo && x->memo->read)
			(*x->memo->read)++;
		if (!jv_is_valid(x->input) && x->memo && x->memo->input) {
			jv_free(x->input);
			x->input = x->memo->input(x->memo->input_arg);
		}
		file = jv_object_get(jv_copy(x->input), jv_string("file"));

		if (jv_get_kind(file) == JV_KIND_STRING)
			resp = jv_object_set(resp, jv_string("file"), file);
		else
			jv_free(file);
		x->input = jv_object_set(x->input, jv_string("response"),
		    resp);
		out = outcome_of(x->p, x->after, x->input, r->status,
		    x->create);
		if (mi_json_str(out, "status", &st, 0, NULL) == 1 &&
		    strcmp(st, "retry") == 0 && r->retry_after_ms >= 0) {
			jv ra = jv_object_get(jv_copy(out),
			    jv_string("retry_after_ms"));

			if (jv_get_kind(ra) != JV_KIND_NUMBER)
				out = jv_object_set(out,
				    jv_string("retry_after_ms"),
				    jv_number((double)r->retry_after_ms));
			jv_free(ra);
		}
		if (x->memo)
			remember(x->memo, r, out);
	}
	x->cb(x->arg, out);
	free(x->spool);
	free(x);
}

/* Starts the exchange of a built request (copied: b stays the caller's). */
static int
send_built(struct mi_loop *l, struct mi_provider *p, struct mi_built *b,
    jv input, const char *after, int create, const char *spool,
    struct mi_poll_memo *memo, mi_outcome_cb cb, void *arg,
    struct mi_err *err)
{
	struct mi_http_req req = b->req;
	struct pending *x;
	int r;

	if ((x = calloc(1, sizeof(*x))) == NULL) {
		jv_free(input);
		return mi_err_set(err, EX_OSERR, "out of memory");
	}
	x->p = p;
	x->input = input;
	snprintf(x->after, sizeof(x->after), "%s", after);
	x->create = create;
	x->memo = memo;
	x->cb = cb;
	x->arg = arg;
	x->fd = -1;
	/* A create is never re-sent by libcurl on a reused connection. */
	req.fresh = create;
	if (spool) {
		if ((x->spool = strdup(spool)) == NULL) {
			jv_free(x->input);
			free(x);
			return mi_err_set(err, EX_OSERR, "out of memory");
		}
		req.sink = spool_sink;
		req.sink_arg = x;
		req.max_body = 256 * 1024 * 1024;
	}
	r = mi_http_multi_add(mi_loop_http(l), &req, sent, x, err);
	if (r == -1) {
		jv_free(x->input);
		free(x->spool);
		free(x);
	}
	return r;
}

int
mi_transport_send(struct mi_loop *l, struct mi_provider *p, jv httpreq,
    jv input, const char *after, int create, const char *spool,
    struct mi_poll_memo *memo, mi_outcome_cb cb, void *arg,
    struct mi_err *err)
{
	struct mi_built b;
	int r;

	if (build(p, httpreq, 1, &b, err) == -1) {
		built_release(&b);
		jv_free(httpreq);
		jv_free(input);
		return -1;
	}
	jv_free(httpreq);
	r = send_built(l, p, &b, input, after, create, spool, memo, cb, arg,
	    err);
	built_release(&b);
	return r;
}

int
mi_transport_call_send(struct mi_loop *l, struct mi_provider *p, jv input,
    const char *fn, const char *after, int create, const char *spool,
    struct mi_poll_memo *memo, mi_outcome_cb cb, void *arg,
    struct mi_err *err)
{
	jv req, rot;

	/* A poll the definition built before goes out as it was. */
	if (memo && memo->req)
		return send_built(l, p, memo->req, input, after, create,
		    spool, memo, cb, arg, err);
	if (!jv_is_valid(input) && memo && memo->input) {
		jv_free(input);
		input = memo->input(memo->input_arg);
	}
	req = mi_provider_call(p, fn, jv_copy(input), err);
	if (!jv_is_valid(req)) {
		jv_free(req);
		jv_free(input);
		return -1;
	}
	if (jv_get_kind(req) == JV_KIND_OBJECT) {
		jv t = jv_object_get(jv_copy(req), jv_string("timeout_ms"));

		/* A synchronous create may take as long as the job. */
		if (jv_get_kind(t) != JV_KIND_NUMBER && spool)
			req = jv_object_set(req, jv_string("timeout_ms"),
			    jv_number((double)mi_provider_timeout_ms(p,
			    NULL)));
		jv_free(t);
	}
	if (memo) {
		struct mi_built *b = calloc(1, sizeof(*b));

		if (b == NULL) {
			jv_free(req);
			jv_free(input);
			return mi_err_set(err, EX_OSERR, "out of memory");
		}
		if (build(p, req, 1, b, err) == -1) {
			built_release(b);
			free(b);
			jv_free(req);
			jv_free(input);
			return -1;
		}
		jv_free(req);
		/* Prepared once for all the job's polls (without, it goes
		 * out all the same). */
		b->prep = mi_http_prep_new(&b->req);
		b->req.prep = b->prep;
		memo->req = b;
		rot = jv_object_get(mi_provider_meta(p),
		    jv_string("rotating_urls"));
		memo->urls_aside = jv_get_kind(rot) == JV_KIND_TRUE;
		jv_free(rot);
		return send_built(l, p, b, input, after, create, spool, memo,
		    cb, arg, err);
	}
	return mi_transport_send(l, p, req, input, after, create, spool, memo,
	    cb, arg, err);
}

static int
http_submit(struct mi_loop *l, struct mi_provider *p, jv input,
    const char *spool, mi_outcome_cb cb, void *arg, struct mi_err *err)
{
	(void)spool;
	return mi_transport_call_send(l, p, input, "submit", "submitted", 1,
	    NULL, NULL, cb, arg, err);
}

static int
http_poll(struct mi_loop *l, struct mi_provider *p, jv input,
    struct mi_poll_memo *memo, mi_outcome_cb cb, void *arg,
    struct mi_err *err)
{
	return mi_transport_call_send(l, p, input, "poll", "polled", 0, NULL,
	    memo, cb, arg, err);
}

const struct mi_transport mi_transport_http = {
	"http", 1, http_submit, http_poll
};

/* Reads a spool file into sink; the path must lie in the spool. */
static int
fetch_file(const char *path, mi_http_sink sink, void *arg,
    struct mi_http_resp *resp, struct mi_err *err)
{
	char dir[PATH_MAX], real[PATH_MAX], rdir[PATH_MAX], buf[65536];
	size_t n;
	ssize_t got;
	int fd;

	if (mi_spool_dir(dir, sizeof(dir), err) == -1)
		return -1;
	if (realpath(dir, rdir) == NULL || realpath(path, real) == NULL) {
		if (errno == ENOENT)
			return mi_err_set(err, EX_NOINPUT,
			    "the result file is gone");
		return mi_err_set_errno(err, EX_IOERR, "unable to open '%s'",
		    path);
	}
	n = strlen(rdir);
	if (strncmp(real, rdir, n) != 0 || real[n] != '/')
		return mi_err_set(err, EX_DATAERR,
		    "result file outside the spool directory");
	if ((fd = open(real, O_RDONLY | O_CLOEXEC)) == -1)
		return mi_err_set_errno(err, errno == ENOENT ? EX_NOINPUT :
		    EX_IOERR, "unable to open '%s'", real);
	resp->status = 200;
	while ((got = read(fd, buf, sizeof(buf))) != 0) {
		if (got == -1) {
			if (errno == EINTR)
				continue;
			close(fd);
			return mi_err_set_errno(err, EX_IOERR,
			    "unable to read '%s'", real);
		}
		if (sink(arg, resp, buf, (size_t)got, err) == -1) {
			close(fd);
			return -1;
		}
		resp->received += got;
	}
	close(fd);
	return 0;
}

int
mi_transport_fetch(struct mi_provider *p, jv input, const char *uri,
    mi_http_sink sink, void *arg, struct mi_http_resp *resp,
    struct mi_err *err)
{
	return mi_transport_fetch_ex(p, input, uri, sink, arg, NULL, NULL,
	    resp, err);
}

/* The request of the definition's `download` for uri into b. */
static int
fetch_build(struct mi_provider *p, jv input, const char *uri,
    mi_http_sink sink, void *arg, struct mi_built *b, struct mi_err *err)
{
	const char *s = getenv("MI_FETCH_STALL_S");
	unsigned long long stall = 20;
	jv req;

	req = mi_provider_call(p, "download", input, err);
	if (!jv_is_valid(req)) {
		jv_free(req);
		memset(b, 0, sizeof(*b));
		return -1;
	}
	if (jv_get_kind(req) == JV_KIND_OBJECT) {
		jv u = jv_object_get(jv_copy(req), jv_string("url"));

		if (jv_get_kind(u) != JV_KIND_STRING)
			req = jv_object_set(req, jv_string("url"),
			    jv_string(uri));
		jv_free(u);
	}
	if (build(p, req, 0, b, err) == -1) {
		built_release(b);
		jv_free(req);
		return -1;
	}
	jv_free(req);
	b->req.timeout_ms = -1;
	b->req.sink = sink;
	b->req.sink_arg = arg;
	if (s)
		mi_parse_uint(s, 1, 3600, &stall);
	b->req.low_speed_bytes = 1;
	b->req.low_speed_s = (long)stall;
	return 0;
}

/* What a download's answer means: 0, or -1 with err. */
static int
fetch_outcome(struct mi_http_resp *resp, struct mi_err *err)
{
	if (resp->net_error) {
		if (err) {
			*err = resp->err;
			if (!resp->sink_failed && resp->err.code != EX_PROTOCOL)
				err->code = EX_TEMPFAIL;
		}
		return -1;
	}
	if (resp->status >= 200 && resp->status < 300)
		return 0;
	if (resp->status == 403 || resp->status == 404 ||
	    resp->status == 410)
		return mi_err_set(err, EX_NOINPUT,
		    "the result URL answered HTTP %ld (expired?)",
		    resp->status);
	if (resp->status == 429 || resp->status >= 500)
		return mi_err_set(err, EX_TEMPFAIL,
		    "the result URL answered HTTP %ld", resp->status);
	return mi_err_set(err, EX_PROTOCOL, "the result URL answered HTTP %ld",
	    resp->status);
}

int
mi_transport_fetch_ex(struct mi_provider *p, jv input, const char *uri,
    mi_http_sink sink, void *arg, void (*tick)(void *arg),
    volatile sig_atomic_t *cancel, struct mi_http_resp *resp,
    struct mi_err *err)
{
	struct mi_built b;

	if (strncmp(uri, "file://", 7) == 0) {
		jv_free(input);
		return fetch_file(uri + 7, sink, arg, resp, err);
	}
	if (fetch_build(p, input, uri, sink, arg, &b, err) == -1)
		return -1;
	b.req.tick = tick;
	b.req.cancel = cancel;
	mi_http_do(&b.req, resp);
	built_release(&b);
	return fetch_outcome(resp, err);
}

static void
fetch_ended(void *arg, struct mi_http_resp *resp)
{
	struct mi_fetch *f = arg;
	struct mi_err err = MI_ERR_INIT;
	int r = fetch_outcome(resp, &err);

	f->done(f->arg, r, resp, &err);
}

int
mi_transport_fetch_start(struct mi_http_multi *m, struct mi_fetch *f,
    struct mi_provider *p, jv input, const char *uri, mi_http_sink sink,
    void *arg, mi_fetch_done done, struct mi_err *err)
{
	struct mi_built b;
	int r;

	if (strncmp(uri, "file://", 7) == 0) {
		struct mi_http_resp resp;
		struct mi_err ferr = MI_ERR_INIT;

		jv_free(input);
		mi_http_resp_init(&resp);
		r = fetch_file(uri + 7, sink, arg, &resp, &ferr);
		done(arg, r, &resp, &ferr);
		mi_http_resp_release(&resp);
		return 0;
	}
	f->done = done;
	f->arg = arg;
	if (fetch_build(p, input, uri, sink, arg, &b, err) == -1)
		return -1;
	r = mi_http_multi_add(m, &b.req, fetch_ended, f, err);
	built_release(&b);
	return r;
}
