/*
 * httpd_parse.c - the HTTP/1.x request-head parser (RFC 9112), strict:
 * one SP between the parts of the request line, a visible-ASCII
 * origin-form target, tokens for methods and header names, no obs-fold,
 * no control characters in values, one Host, no Content-Length together
 * with Transfer-Encoding (request smuggling).  Bare LF line ends are
 * accepted as RFC 9112 section 2.2 allows.
 *
 * It depends on nothing but libc so that test/fuzz can build it alone.
 */
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "httpd.h"
#include "banned.h"

static int
is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field content: HTAB, SP, VCHAR, obs-text. */
static int
is_fchar(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Offset just past the empty line ending the head, or 0. */
static size_t
head_end(const char *buf, size_t from, size_t len)
{
	const char *p = buf + from, *end = buf + len;

	while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (p + 1 < end && p[1] == '\n')
			return (size_t)(p + 2 - buf);
		if (p + 2 < end && p[1] == '\r' && p[2] == '\n')
			return (size_t)(p + 3 - buf);
		p++;
	}
	return 0;
}

/* Whether the comma list v holds token t (case-insensitive). */
static int
has_token(const char *v, const char *t)
{
	size_t n = strlen(t), k;

	while (*v) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		k = strcspn(v, ",");
		while (k > 0 && (v[k - 1] == ' ' || v[k - 1] == '\t'))
			k--;
		if (k == n && strncasecmp(v, t, n) == 0)
			return 1;
		v += strcspn(v, ",");
	}
	return 0;
}

/* Content-Length: 1*DIGIT, at most 18 digits; -1 when malformed. */
static long long
content_length(const char *v)
{
	long long n = 0;
	size_t i;

	if (*v == '\0')
		return -1;
	for (i = 0; v[i]; i++) {
		if (v[i] < '0' || v[i] > '9' || i >= 18)
			return -1;
		n = n * 10 + (v[i] - '0');
	}
	return n;
}

static int
method_of(const char *m)
{
	if (strcmp(m, "GET") == 0)
		return MI_HTTP_GET;
	if (strcmp(m, "HEAD") == 0)
		return MI_HTTP_HEAD;
	if (strcmp(m, "OPTIONS") == 0)
		return MI_HTTP_OPTIONS;
	return MI_HTTP_OTHER;
}

/*
 * The request line in [s, e) (line end excluded).  Terminates the method,
 * the path and the query in place.
 */
static int
request_line(char *s, char *e, struct mi_http_req *req)
{
	char *p = s, *t, *q;

	while (p < e && is_tchar((unsigned char)*p))
		p++;
	if (p == s || p == e || *p != ' ' || p - s > 32)
		return -400;
	*p++ = '\0';
	req->method_name = s;
	req->method = method_of(s);
	t = p;
	while (p < e && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
		p++;
	if (p == t || p == e || *p != ' ')
		return -400;
	if (p - t > MI_HTTP_MAX_TARGET)
		return -414;
	*p++ = '\0';
	if (*t != '/' && !(t[0] == '*' && t[1] == '\0' &&
	    req->method == MI_HTTP_OPTIONS))
		return -400;
	req->path = t;
	req->query = "";
	if ((q = strchr(t, '?')) != NULL) {
		*q = '\0';
		req->query = q + 1;
	}
	if (e - p != 8 || memcmp(p, "HTTP/", 5) != 0 ||
	    p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' ||
	    p[7] > '9')
		return -400;
	if (p[5] != '1')
		return -505;
	req->version = p[7] == '0' ? 10 : 11;
	return 0;
}

/* One header line in [s, e); terminates name and value in place. */
static int
header_line(char *s, char *e, struct mi_http_req *req)
{
	char *p = s, *v;
	struct mi_http_header *h;

	if (p < e && (*p == ' ' || *p == '\t'))
		return -400;	/* obs-fold */
	while (p < e && is_tchar((unsigned char)*p))
		p++;
	if (p == s || p == e || *p != ':')
		return -400;
	*p++ = '\0';
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	v = p;
	for (; p < e; p++)
		if (!is_fchar((unsigned char)*p))
			return -400;
	while (p > v && (p[-1] == ' ' || p[-1] == '\t'))
		p--;
	*p = '\0';
	if (req->nheaders >= MI_HTTP_MAX_HEADERS)
		return -431;
	h = &req->headers[req->nheaders++];
	h->name = s;
	h->value = v;
	return 0;
}

/* Checks the headers that frame the message and decide keep-alive. */
static int
semantics(struct mi_http_req *req)
{
	long long cl = -1, n;
	int hosts = 0, te = 0, close = 0, keep = 0;
	size_t i;

	for (i = 0; i < req->nheaders; i++) {
		const char *name = req->headers[i].name;
		const char *v = req->headers[i].value;

		if (strcasecmp(name, "Host") == 0)
			hosts++;
		else if (strcasecmp(name, "Content-Length") == 0) {
			if ((n = content_length(v)) == -1 ||
			    (cl != -1 && cl != n))
				return -400;
			cl = n;
		} else if (strcasecmp(name, "Transfer-Encoding") == 0)
			te = 1;
		else if (strcasecmp(name, "Connection") == 0) {
			close |= has_token(v, "close");
			keep |= has_token(v, "keep-alive");
		}
	}
	if (hosts > 1 || (hosts == 0 && req->version == 11))
		return -400;
	if (te && cl != -1)
		return -400;
	req->has_body = te || cl > 0;
	req->chunked = te;
	req->content_length = cl;
	req->keep_alive = !close && (req->version == 11 || keep);
	return 0;
}

int
mi_http_parse(char *buf, size_t len, struct mi_http_req *req)
{
	size_t start = 0, end;
	char *s, *e, *le;
	int r, first = 1;

	/* Empty lines before a request line are ignored (RFC 9112 2.2). */
	while (start < len && (buf[start] == '\r' || buf[start] == '\n'))
		start++;
	if ((end = head_end(buf, start, len)) == 0) {
		if (memchr(buf + start, '\n', len - start) == NULL &&
		    len - start > MI_HTTP_MAX_TARGET + 64)
			return -414;
		return 0;
	}
	memset(req, 0, sizeof(*req));
	req->path = "";
	req->query = "";
	req->method_name = "";
	for (s = buf + start; s < buf + end; s = le + 1) {
		le = memchr(s, '\n', (size_t)(buf + end - s));
		e = le > s && le[-1] == '\r' ? le - 1 : le;
		if (e == s)
			break;	/* the empty line */
		r = first ? request_line(s, e, req) : header_line(s, e, req);
		if (r != 0)
			return r;
		first = 0;
	}
	if ((r = semantics(req)) != 0)
		return r;
	return (int)end;
}

const char *
mi_http_header(const struct mi_http_req *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

/* Whether If-None-Match lists the entity tag (weak comparison). */
int
mi_http_none_match(const char *v, const char *etag)
{
	size_t n = strlen(etag), k;

	while (*v) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		if (*v == '*')
			return 1;
		if (strncmp(v, "W/", 2) == 0)
			v += 2;
		k = strcspn(v, ",");
		while (k > 0 && (v[k - 1] == ' ' || v[k - 1] == '\t'))
			k--;
		if (k == n && strncmp(v, etag, n) == 0)
			return 1;
		v += strcspn(v, ",");
	}
	return 0;
}

static int
digits(const char **p, long long *out)
{
	const char *s = *p;
	long long n = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (LLONG_MAX - 9) / 10)
			return -1;
		n = n * 10 + (*s - '0');
	}
	*p = s;
	*out = n;
	return 0;
}

/*
 * One "bytes=" range against size.  Returns 1 with [*from, *to] for a
 * satisfiable range, 0 when the header is to be ignored (malformed, or
 * several ranges: the whole file is sent), -1 when unsatisfiable.
 */
int
mi_http_range(const char *v, long long size, long long *from, long long *to)
{
	long long a, b;

	if (strncasecmp(v, "bytes", 5) != 0)
		return 0;
	v += 5;
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v++ != '=')
		return 0;
	while (*v == ' ' || *v == '\t')
		v++;
	if (strchr(v, ',') != NULL)
		return 0;
	if (*v == '-') {
		v++;
		if (digits(&v, &b) == -1 || *v != '\0')
			return 0;
		if (b == 0 || size == 0)
			return -1;
		*from = b >= size ? 0 : size - b;
		*to = size - 1;
		return 1;
	}
	if (digits(&v, &a) == -1 || *v++ != '-')
		return 0;
	if (*v == '\0')
		b = LLONG_MAX;
	else if (digits(&v, &b) == -1 || *v != '\0' || b < a)
		return 0;
	if (a >= size)
		return -1;
	*from = a;
	*to = b >= size ? size - 1 : b;
	return 1;
}
