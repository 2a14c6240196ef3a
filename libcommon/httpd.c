/*
 * httpd.c - the worker loops of httpd.h.
 *
 * A connection is a small state machine driven by edge-triggered epoll
 * events: READ until a whole request head is buffered, WRITE the
 * answer (the head, then the body from memory or with sendfile), then
 * READ again; LINGER drains what a client still sends after an answer
 * that closes the connection, so that closing does not reset it before
 * the answer is read.  A short read or write means the socket is drained
 * or full (epoll(7)), which saves the extra EAGAIN system call.
 *
 * Output readiness is asked for only while an answer waits for room in
 * the socket: registered for good, every ACK that frees send buffer space
 * wakes the worker, which measured here cost as much CPU as the sendfile
 * of a 256 KiB answer itself.
 *
 * Closed connections are freed only after the current batch of events,
 * since a later event of the same batch may still point at them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"
#include "banned.h"

#define HDR_MAX 4096		/* handler headers */
#define INLINE_MAX 65536	/* file bodies read and sent with the head */
#define SCRATCH_SIZE (INLINE_MAX + HDR_MAX + 512)
#define CHUNK (2 << 20)	/* per sendfile call: one connection does not hog */
#define LINGER_MS 2000
#define MAX_EVENTS 256
#define PAUSE_MS 100		/* listener unwatched after EMFILE, at most */
#define FD_RESERVE 16		/* descriptors kept for anything but clients */
#define ADDR_SLOTS 4096		/* per-client counts, by address hash */

enum { C_READ, C_BODY, C_WRITE, C_LINGER };
enum { IO_DONE, IO_AGAIN, IO_ERR };

struct mi_http_resp {
	int status;
	int overflow;
	size_t hdr_len;
	int fd;
	off_t off;
	long long len;
	const void *mem;
	size_t mem_len;
	void (*mem_free)(void *);
	atomic_llong *tally;
	char note[48];
	char hdr[HDR_MAX];
};

struct conn {
	struct conn *prev, *next;
	int fd;
	int state;
	int readable;
	int close_after;
	int loopback;
	unsigned addr_slot;	/* in mi_httpd.per_addr */
	int want_out;		/* EPOLLOUT registered */
	long long t_start;	/* first byte of the current head; 0: idle */
	long long t_last;	/* last progress */
	long long t_req;	/* head complete (µs, for the log) */
	size_t len, head;
	struct mi_http_req req;
	/* the answer in flight */
	int status;
	char *out;		/* head (and inline body) not yet sent */
	size_t out_len, out_off, out_body;	/* out_body: body bytes in out */
	int out_owned;
	const char *mem;
	size_t mem_len, mem_off;
	void (*mem_free)(void *);
	int body_fd;
	off_t body_off;
	long long body_left;
	long long body_sent;
	atomic_llong *tally;
	char note[48];
	char peer[INET6_ADDRSTRLEN];
	char *body;		/* the request's body (max_body) */
	size_t body_want, body_got;
	char buf[MI_HTTP_BUF_SIZE];
};

struct worker {
	struct mi_httpd *h;
	pthread_t tid;
	int ep, lfd, evfd;
	int stopping;
	long long stop_at;
	struct conn live;	/* list head */
	struct conn *dead;
	int nconns;
	int paused;		/* listener unwatched: out of descriptors */
	long long paused_at;
	char *scratch;
	struct mi_http_resp resp;
	time_t date_t;
	char date[40];
	atomic_llong open, accepted, bytes, rejected, evicted;
	atomic_llong requests[600];
};

struct mi_httpd {
	struct mi_httpd_opts o;
	int port;
	atomic_int nconns;
	atomic_int per_addr[ADDR_SLOTS];
	int nworkers;
	struct worker *w;
};

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *
reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 416: return "Range Not Satisfiable";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

void
mi_http_resp_status(struct mi_http_resp *r, int status)
{
	r->status = status;
}

int
mi_http_resp_header(struct mi_http_resp *r, const char *name,
    const char *value)
{
	size_t n = strlen(name), v = strlen(value);

	if (r->hdr_len + n + v + 4 > sizeof(r->hdr)) {
		r->overflow = 1;
		return -1;
	}
	memcpy(r->hdr + r->hdr_len, name, n);
	memcpy(r->hdr + r->hdr_len + n, ": ", 2);
	memcpy(r->hdr + r->hdr_len + n + 2, value, v);
	memcpy(r->hdr + r->hdr_len + n + 2 + v, "\r\n", 2);
	r->hdr_len += n + v + 4;
	return 0;
}

void
mi_http_resp_body(struct mi_http_resp *r, const void *data, size_t len,
    void (*free_fn)(void *))
{
	r->mem = data;
	r->mem_len = len;
	r->mem_free = free_fn;
}

void
mi_http_resp_file(struct mi_http_resp *r, int fd, off_t off, long long len)
{
	r->fd = fd;
	r->off = off;
	r->len = len;
}

void
mi_http_resp_tally(struct mi_http_resp *r, atomic_llong *tally)
{
	r->tally = tally;
}

void
mi_http_resp_note(struct mi_http_resp *r, const char *note)
{
	snprintf(r->note, sizeof(r->note), "%s", note);
}

static const char *
http_date(struct worker *w)
{
	time_t t = time(NULL);
	struct tm tm;

	if (t != w->date_t) {
		gmtime_r(&t, &tm);
		strftime(w->date, sizeof(w->date),
		    "%a, %d %b %Y %H:%M:%S GMT", &tm);
		w->date_t = t;
	}
	return w->date;
}

static void
body_release(struct conn *c)
{
	if (c->body_fd != -1)
		close(c->body_fd);
	c->body_fd = -1;
	c->body_left = 0;
	if (c->mem_free != NULL)
		c->mem_free((void *)c->mem);
	c->mem_free = NULL;
	c->mem = NULL;
	c->mem_len = c->mem_off = 0;
	if (c->out_owned)
		free(c->out);
	c->out = NULL;
	c->out_owned = 0;
	c->out_len = c->out_off = c->out_body = 0;
}

/*
 * Out of descriptors (EMFILE, ENFILE): the listener, which is level
 * triggered, would wake the worker again at once, so it is unwatched until
 * a connection closes, or PAUSE_MS, whichever comes first.
 */
static void
listen_pause(struct worker *w)
{
	if (w->paused || w->lfd == -1)
		return;
	epoll_ctl(w->ep, EPOLL_CTL_DEL, w->lfd, NULL);
	w->paused = 1;
	w->paused_at = now_ms();
}

static void
listen_resume(struct worker *w)
{
	struct epoll_event ev;

	w->paused = 0;
	if (w->lfd == -1)
		return;
	ev.events = EPOLLIN;
	ev.data.ptr = &w->lfd;
	epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev);
}

static void
conn_close(struct worker *w, struct conn *c)
{
	if (c->fd == -1)
		return;
	body_release(c);
	free(c->body);
	c->body = NULL;
	close(c->fd);
	c->fd = -1;
	c->prev->next = c->next;
	c->next->prev = c->prev;
	c->next = w->dead;
	w->dead = c;
	w->nconns--;
	atomic_fetch_sub_explicit(&w->open, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&w->h->nconns, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&w->h->per_addr[c->addr_slot], 1,
	    memory_order_relaxed);
	if (w->paused)
		listen_resume(w);
}

/* The answer has been sent, or abandoned: count it and log it. */
static void
conn_end_response(struct worker *w, struct conn *c)
{
	struct mi_httpd *h = w->h;

	if (c->tally != NULL)
		atomic_fetch_add_explicit(c->tally, c->body_sent,
		    memory_order_relaxed);
	atomic_fetch_add_explicit(&w->bytes, c->body_sent,
	    memory_order_relaxed);
	if (c->status >= 100 && c->status < 600)
		atomic_fetch_add_explicit(&w->requests[c->status], 1,
		    memory_order_relaxed);
	if (h->o.done != NULL)
		h->o.done(h->o.arg, &c->req, c->status, c->body_sent, c->note,
		    now_us() - c->t_req);
	body_release(c);
	free(c->body);
	c->body = NULL;
	c->tally = NULL;
	c->status = 0;
	/* Pipelined bytes after this head move to the front. */
	if (c->head > 0 && c->head <= c->len) {
		memmove(c->buf, c->buf + c->head, c->len - c->head);
		c->len -= c->head;
	}
	c->head = 0;
}

static int
bodyless(int status)
{
	return status < 200 || status == 204 || status == 304;
}

/*
 * Runs the handler and lays out the answer: the head in scratch, followed
 * by the body when it is small, so that most answers take one send.
 */
static void
respond(struct worker *w, struct conn *c)
{
	struct mi_http_resp *r = &w->resp;
	struct mi_httpd *h = w->h;
	long long blen;
	int head_only, n;
	size_t pos;
	char *s = w->scratch;

	r->status = 0;
	r->overflow = 0;
	r->hdr_len = 0;
	r->fd = -1;
	r->off = 0;
	r->len = 0;
	r->mem = NULL;
	r->mem_len = 0;
	r->mem_free = NULL;
	r->tally = NULL;
	r->note[0] = '\0';
	c->req.peer = c->peer;
	c->req.peer_loopback = c->loopback;
	c->t_req = now_us();
	h->o.handler(h->o.arg, &c->req, r);
	if (r->status < 100 || r->status > 599 || r->overflow) {
		if (r->fd != -1)
			close(r->fd);
		if (r->mem_free != NULL)
			r->mem_free((void *)r->mem);
		r->fd = -1;
		r->mem = NULL;
		r->mem_len = 0;
		r->mem_free = NULL;
		r->hdr_len = 0;
		r->status = 500;
	}
	c->status = r->status;
	c->tally = r->tally;
	memcpy(c->note, r->note, sizeof(c->note));
	c->body_fd = r->fd;
	c->body_off = r->off;
	c->body_left = r->fd != -1 ? r->len : 0;
	c->mem = r->mem;
	c->mem_len = r->mem_len;
	c->mem_off = 0;
	c->mem_free = r->mem_free;
	c->body_sent = 0;
	blen = r->fd != -1 ? r->len : (long long)r->mem_len;
	head_only = c->req.method == MI_HTTP_HEAD || bodyless(r->status);
	c->close_after = c->close_after || !c->req.keep_alive ||
	    c->req.has_body || c->req.error || w->stopping;

	n = snprintf(s, SCRATCH_SIZE, "HTTP/1.1 %d %s\r\nDate: %s\r\n",
	    r->status, reason(r->status), http_date(w));
	pos = (size_t)n;
	memcpy(s + pos, r->hdr, r->hdr_len);
	pos += r->hdr_len;
	if (!bodyless(r->status))
		pos += (size_t)snprintf(s + pos, SCRATCH_SIZE - pos,
		    "Content-Length: %lld\r\n", blen);
	if (c->close_after)
		pos += (size_t)snprintf(s + pos, SCRATCH_SIZE - pos,
		    "Connection: close\r\n");
	else if (c->req.version == 10)
		pos += (size_t)snprintf(s + pos, SCRATCH_SIZE - pos,
		    "Connection: keep-alive\r\n");
	memcpy(s + pos, "\r\n", 2);
	pos += 2;
	c->out = s;
	c->out_owned = 0;
	c->out_off = 0;
	c->out_body = 0;

	if (head_only) {
		if (c->body_fd != -1)
			close(c->body_fd);
		c->body_fd = -1;
		c->body_left = 0;
		if (c->mem_free != NULL)
			c->mem_free((void *)c->mem);
		c->mem = NULL;
		c->mem_free = NULL;
		c->mem_len = 0;
	} else if (c->mem != NULL && c->mem_len <= INLINE_MAX) {
		memcpy(s + pos, c->mem, c->mem_len);
		pos += c->mem_len;
		c->out_body = c->mem_len;
		if (c->mem_free != NULL)
			c->mem_free((void *)c->mem);
		c->mem = NULL;
		c->mem_free = NULL;
		c->mem_len = 0;
	} else if (c->body_fd != -1 && c->body_left <= INLINE_MAX) {
		ssize_t got = 0, k;

		while (got < c->body_left) {
			k = pread(c->body_fd, s + pos + got,
			    (size_t)(c->body_left - got), c->body_off + got);
			if (k <= 0)
				break;
			got += k;
		}
		/* A file that shrank cannot honour Content-Length. */
		if (got < c->body_left)
			c->close_after = 1;
		pos += (size_t)got;
		c->out_body = (size_t)got;
		close(c->body_fd);
		c->body_fd = -1;
		c->body_left = 0;
	}
	c->out_len = pos;
	c->state = C_WRITE;
}

/* Sends what is left of the answer. */
static int
conn_write(struct conn *c)
{
	ssize_t n;
	size_t want, from;

	/*
	 * No MSG_MORE before sendfile: measured here, corking the head made
	 * each sendfile of 256 KiB cost twice the CPU (the pages are then
	 * appended to a partly built segment instead of going out as is).
	 */
	while (c->out_off < c->out_len) {
		want = c->out_len - c->out_off;
		n = send(c->fd, c->out + c->out_off, want, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				goto again;
			return IO_ERR;
		}
		/* Body bytes among those just sent, for the tallies. */
		from = c->out_len - c->out_body;
		if (c->out_off > from)
			from = c->out_off;
		c->out_off += (size_t)n;
		if (c->out_off > from)
			c->body_sent += (long long)(c->out_off - from);
		if ((size_t)n < want)
			goto again;
	}
	while (c->mem_off < c->mem_len) {
		want = c->mem_len - c->mem_off;
		n = send(c->fd, c->mem + c->mem_off, want, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				goto again;
			return IO_ERR;
		}
		c->mem_off += (size_t)n;
		c->body_sent += n;
		if ((size_t)n < want)
			goto again;
	}
	while (c->body_left > 0) {
		want = c->body_left > CHUNK ? CHUNK :
		    (size_t)c->body_left;
		n = sendfile(c->fd, c->body_fd, &c->body_off, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				goto again;
			return IO_ERR;
		}
		if (n == 0)
			return IO_ERR;	/* the file shrank */
		c->body_left -= n;
		c->body_sent += n;
		if ((size_t)n < want)
			goto again;
	}
	return IO_DONE;
again:
	/* The head was laid out in the worker's scratch: keep a copy. */
	if (!c->out_owned && c->out_off < c->out_len) {
		char *p = malloc(c->out_len - c->out_off);

		if (p == NULL)
			return IO_ERR;
		memcpy(p, c->out + c->out_off, c->out_len - c->out_off);
		c->out = p;
		c->out_len -= c->out_off;
		c->out_body = c->out_body > c->out_len ? c->out_len :
		    c->out_body;
		c->out_off = 0;
		c->out_owned = 1;
	} else if (!c->out_owned) {
		c->out = NULL;
		c->out_len = c->out_off = c->out_body = 0;
	}
	return IO_AGAIN;
}

/* Reads what the socket has; IO_DONE when something arrived. */
static int
conn_read(struct conn *c)
{
	size_t room = sizeof(c->buf) - c->len;
	ssize_t n;

	for (;;) {
		n = recv(c->fd, c->buf + c->len, room, 0);
		if (n > 0) {
			c->len += (size_t)n;
			if ((size_t)n < room)
				c->readable = 0;
			return IO_DONE;
		}
		if (n == 0)
			return IO_ERR;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			c->readable = 0;
			return IO_AGAIN;
		}
		return IO_ERR;
	}
}

/*
 * With max_body: takes the body of the request just parsed, from what
 * follows its head in buf and then from the socket (C_BODY).  Returns 1
 * while more of it is to come, 0 when the request is ready to answer
 * (whole, or refused with req.error).
 */
static int
body_start(struct worker *w, struct conn *c)
{
	size_t have, take;

	if (c->req.chunked) {
		c->req.error = 411;
		return 0;
	}
	if (c->req.content_length < 0 ||
	    (unsigned long long)c->req.content_length > w->h->o.max_body) {
		c->req.error = 413;
		return 0;
	}
	c->body_want = (size_t)c->req.content_length;
	if ((c->body = malloc(c->body_want + 1)) == NULL) {
		c->req.error = 503;
		return 0;
	}
	have = c->len - c->head;
	take = have < c->body_want ? have : c->body_want;
	memcpy(c->body, c->buf + c->head, take);
	c->head += take;
	c->body_got = take;
	if (c->body_got < c->body_want) {
		c->state = C_BODY;
		return 1;
	}
	c->body[c->body_want] = '\0';
	c->req.body = c->body;
	c->req.body_len = c->body_want;
	return 0;
}

/* Reads more of the body; IO_DONE when it is whole. */
static int
body_read(struct conn *c)
{
	ssize_t n;

	while (c->body_got < c->body_want) {
		size_t room = c->body_want - c->body_got;

		n = recv(c->fd, c->body + c->body_got, room, 0);
		if (n == 0)
			return IO_ERR;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				c->readable = 0;
				return IO_AGAIN;
			}
			return IO_ERR;
		}
		c->body_got += (size_t)n;
		if ((size_t)n < room) {
			c->readable = 0;
			if (c->body_got < c->body_want)
				return IO_AGAIN;
		}
	}
	c->body[c->body_want] = '\0';
	c->req.body = c->body;
	c->req.body_len = c->body_want;
	return IO_DONE;
}

/* Half-close, then drain until the client closes (or LINGER_MS). */
static void
conn_linger(struct worker *w, struct conn *c)
{
	char sink[4096];
	ssize_t n;

	if (c->state != C_LINGER) {
		c->state = C_LINGER;
		c->t_last = now_ms();
		if (shutdown(c->fd, SHUT_WR) == -1) {
			conn_close(w, c);
			return;
		}
	}
	for (;;) {
		n = recv(c->fd, sink, sizeof(sink), 0);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		conn_close(w, c);
		return;
	}
}

static int
watch_out(struct worker *w, struct conn *c, int on)
{
	struct epoll_event ev;

	ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (on ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		return -1;
	c->want_out = on;
	return 0;
}

static void
conn_run(struct worker *w, struct conn *c)
{
	int r;

	while (c->fd != -1) {
		if (c->state == C_LINGER) {
			conn_linger(w, c);
			return;
		}
		if (c->state == C_BODY) {
			if (!c->readable)
				return;
			r = body_read(c);
			if (r == IO_ERR) {
				conn_close(w, c);
				return;
			}
			if (r == IO_AGAIN)
				return;
			c->t_last = now_ms();
			respond(w, c);
			continue;
		}
		if (c->state == C_WRITE) {
			r = conn_write(c);
			if (r == IO_AGAIN) {
				c->t_last = now_ms();
				if (!c->want_out && watch_out(w, c, 1) == -1)
					break;
				return;
			}
			if (r == IO_ERR)
				break;
			if (c->want_out && watch_out(w, c, 0) == -1)
				break;
			conn_end_response(w, c);
			c->t_last = now_ms();
			if (c->close_after) {
				conn_linger(w, c);
				return;
			}
			c->state = C_READ;
			c->t_start = c->len > 0 ? c->t_last : 0;
		}
		if (c->len > 0) {
			r = mi_http_parse(c->buf, c->len, &c->req);
			if (r == 0 && c->len == sizeof(c->buf))
				r = -431;
			if (r > 0) {
				c->head = (size_t)r;
				if (c->req.has_body && w->h->o.max_body > 0 &&
				    body_start(w, c) == 1)
					continue;
				respond(w, c);
				continue;
			}
			if (r < 0) {
				memset(&c->req, 0, sizeof(c->req));
				c->req.error = -r;
				c->req.path = c->req.query = "";
				c->req.method_name = "";
				c->req.version = 11;
				c->head = c->len;
				respond(w, c);
				continue;
			}
		}
		if (w->stopping && c->len == 0) {
			conn_close(w, c);
			return;
		}
		if (!c->readable)
			return;
		r = conn_read(c);
		if (r == IO_ERR) {
			conn_close(w, c);
			return;
		}
		if (r == IO_AGAIN)
			return;
		c->t_last = now_ms();
		if (c->t_start == 0)
			c->t_start = c->t_last;
	}
	/* An answer that cannot be sent: count it, then drop the peer. */
	if (c->fd != -1) {
		conn_end_response(w, c);
		conn_close(w, c);
	}
}

/*
 * The client's slot for counting its connections: the IPv4 address, or
 * the /64 of an IPv6 one (what one client usually has).
 */
static unsigned
addr_slot(const unsigned char *b, size_t n)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h % ADDR_SLOTS;
}

static void
peer_name(struct conn *c, const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;

		inet_ntop(AF_INET, &a->sin_addr, c->peer, sizeof(c->peer));
		c->loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
		c->addr_slot = addr_slot((const void *)&a->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		int v4 = IN6_IS_ADDR_V4MAPPED(&a->sin6_addr);

		inet_ntop(AF_INET6, &a->sin6_addr, c->peer, sizeof(c->peer));
		c->loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
		    (v4 && a->sin6_addr.s6_addr[12] == 127);
		c->addr_slot = addr_slot(a->sin6_addr.s6_addr + (v4 ? 12 : 0),
		    v4 ? 4 : 8);
	} else
		snprintf(c->peer, sizeof(c->peer), "-");
}

/*
 * Makes room for one connection by closing this worker's longest-waiting
 * connection that has no answer in flight (idle between requests, or
 * still sending its head): of the client in slot when slot >= 0, of
 * anyone otherwise.  0 when one was closed, -1 when none could be.
 */
static int
evict(struct worker *w, long slot)
{
	struct conn *c, *old = NULL;

	for (c = w->live.next; c != &w->live; c = c->next)
		if (c->state == C_READ && (slot < 0 ||
		    c->addr_slot == (unsigned)slot) &&
		    (old == NULL || c->t_last < old->t_last))
			old = c;
	if (old == NULL)
		return -1;
	atomic_fetch_add_explicit(&w->evicted, 1, memory_order_relaxed);
	conn_close(w, old);
	return 0;
}

static void
accept_all(struct worker *w)
{
	struct mi_httpd *h = w->h;
	struct sockaddr_storage ss;
	struct epoll_event ev;
	socklen_t sl;
	struct conn *c;
	int fd, one = 1;

	while (w->lfd != -1) {
		sl = sizeof(ss);
		fd = accept4(w->lfd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* Free one for the next try, then wait. */
				(void)evict(w, -1);
				listen_pause(w);
			}
			return;	/* EAGAIN */
		}
		if ((c = malloc(sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		memset(c, 0, offsetof(struct conn, buf));
		peer_name(c, &ss);
		/* At a limit, a waiting connection makes room, or this one goes. */
		if ((atomic_load_explicit(&h->per_addr[c->addr_slot],
		    memory_order_relaxed) >= h->o.max_per_client &&
		    evict(w, (long)c->addr_slot) == -1) ||
		    (atomic_load_explicit(&h->nconns, memory_order_relaxed) >=
		    h->o.max_conns && evict(w, -1) == -1)) {
			atomic_fetch_add_explicit(&w->rejected, 1,
			    memory_order_relaxed);
			close(fd);
			free(c);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->body_fd = -1;
		c->state = C_READ;
		c->t_start = c->t_last = now_ms();
		c->req.path = c->req.query = c->req.method_name = "";
		c->readable = 1;
		ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
		ev.data.ptr = c;
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
			close(fd);
			free(c);
			continue;
		}
		c->next = &w->live;
		c->prev = w->live.prev;
		w->live.prev->next = c;
		w->live.prev = c;
		w->nconns++;
		atomic_fetch_add_explicit(&w->open, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&w->accepted, 1,
		    memory_order_relaxed);
		atomic_fetch_add_explicit(&h->nconns, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&h->per_addr[c->addr_slot], 1,
		    memory_order_relaxed);
		conn_run(w, c);
	}
}

/* Closes connections that waited too long in their state. */
static void
sweep(struct worker *w)
{
	const struct mi_httpd_opts *o = &w->h->o;
	long long now = now_ms();
	struct conn *c, *next;

	for (c = w->live.next; c != &w->live; c = next) {
		next = c->next;
		switch (c->state) {
		case C_BODY:
			if (now - c->t_start > o->header_timeout_ms)
				conn_close(w, c);
			break;
		case C_READ:
			if (c->t_start != 0 ?
			    now - c->t_start > o->header_timeout_ms :
			    now - c->t_last > o->idle_timeout_ms)
				conn_close(w, c);
			break;
		case C_WRITE:
			if (now - c->t_last > o->send_timeout_ms) {
				conn_end_response(w, c);
				conn_close(w, c);
			}
			break;
		default:
			if (now - c->t_last > LINGER_MS)
				conn_close(w, c);
			break;
		}
	}
}

/* Stop: take what is queued, close the listener and the idle. */
static void
begin_stop(struct worker *w)
{
	struct conn *c, *next;

	w->stopping = 1;
	w->stop_at = now_ms();
	accept_all(w);
	if (w->lfd != -1)
		close(w->lfd);
	w->lfd = -1;
	for (c = w->live.next; c != &w->live; c = next) {
		next = c->next;
		if (c->state == C_READ && c->len == 0)
			conn_close(w, c);
		else
			c->close_after = 1;
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event ev[MAX_EVENTS];
	long long last_sweep = now_ms();
	uint64_t v;
	int i, n;

	for (;;) {
		if (w->stopping && (w->nconns == 0 ||
		    now_ms() - w->stop_at > w->h->o.grace_ms))
			break;
		if (w->paused && now_ms() - w->paused_at >= PAUSE_MS)
			listen_resume(w);
		n = epoll_wait(w->ep, ev, MAX_EVENTS, w->paused ? PAUSE_MS :
		    1000);
		for (i = 0; i < n; i++) {
			void *p = ev[i].data.ptr;
			struct conn *c = p;

			if (p == &w->lfd) {
				accept_all(w);
				continue;
			}
			if (p == &w->evfd) {
				if (read(w->evfd, &v, sizeof(v)) < 0)
					v = 0;
				if (!w->stopping)
					begin_stop(w);
				continue;
			}
			if (c->fd == -1)
				continue;
			if (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP |
			    EPOLLERR))
				c->readable = 1;
			conn_run(w, c);
		}
		while (w->dead != NULL) {
			struct conn *c = w->dead;

			w->dead = c->next;
			free(c);
		}
		if (now_ms() - last_sweep >= 1000) {
			sweep(w);
			last_sweep = now_ms();
		}
	}
	while (w->live.next != &w->live) {
		struct conn *c = w->live.next;

		if (c->state == C_WRITE)
			conn_end_response(w, c);
		conn_close(w, c);
	}
	while (w->dead != NULL) {
		struct conn *c = w->dead;

		w->dead = c->next;
		free(c);
	}
	return NULL;
}

/* Splits "host:port", "[v6]:port" or ":port". */
static int
split_listen(const char *s, char *host, size_t hostsz, char *port,
    size_t portsz)
{
	const char *colon;
	size_t n;

	if (*s == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return -1;
		n = (size_t)(rb - s - 1);
		colon = rb + 1;
		s++;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return -1;
		n = (size_t)(colon - s);
	}
	if (n >= hostsz || strlen(colon + 1) >= portsz || colon[1] == '\0')
		return -1;
	memcpy(host, s, n);
	host[n] = '\0';
	snprintf(port, portsz, "%s", colon + 1);
	return 0;
}

static int
bind_one(const struct addrinfo *ai, int reuseport, int port,
    struct mi_err *err)
{
	struct sockaddr_storage ss;
	int fd, one = 1;

	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port =
		    htons((uint16_t)port);
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		return mi_err_set_errno(err, EX_OSERR, "socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) == -1) {
		mi_err_set_errno(err, EX_UNAVAILABLE, "unable to bind");
		close(fd);
		return -1;
	}
	return fd;
}

static int
bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/*
 * One listening socket per worker (SO_REUSEPORT: the kernel spreads the
 * connections).  A plain socket bound first proves the port is free, since
 * SO_REUSEPORT alone would share it with another server of the same user.
 */
static int
open_listeners(struct mi_httpd *h, struct mi_err *err)
{
	struct addrinfo hints, *ai = NULL;
	char host[256], port[16];
	int probe, i, e;

	if (split_listen(h->o.listen, host, sizeof(host), port,
	    sizeof(port)) == -1)
		return mi_err_set(err, EX_CONFIG, "bad listen address '%s'",
		    h->o.listen);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((e = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai)) != 0)
		return mi_err_set(err, EX_CONFIG, "bad listen address '%s': %s",
		    h->o.listen, gai_strerror(e));
	if ((probe = bind_one(ai, 0, ntohs(ai->ai_family == AF_INET ?
	    ((struct sockaddr_in *)ai->ai_addr)->sin_port :
	    ((struct sockaddr_in6 *)ai->ai_addr)->sin6_port), err)) == -1) {
		freeaddrinfo(ai);
		return mi_err_prefix(err, "%s", h->o.listen);
	}
	h->port = bound_port(probe);
	close(probe);
	for (i = 0; i < h->nworkers; i++) {
		struct worker *w = &h->w[i];

		if ((w->lfd = bind_one(ai, 1, h->port, err)) == -1 ||
		    listen(w->lfd, 4096) == -1) {
			freeaddrinfo(ai);
			return w->lfd == -1 ? mi_err_prefix(err, "%s",
			    h->o.listen) : mi_err_set_errno(err,
			    EX_UNAVAILABLE, "listen");
		}
	}
	freeaddrinfo(ai);
	return 0;
}

static void
free_workers(struct mi_httpd *h)
{
	int i;

	for (i = 0; i < h->nworkers; i++) {
		struct worker *w = &h->w[i];

		if (w->lfd != -1)
			close(w->lfd);
		if (w->ep != -1)
			close(w->ep);
		if (w->evfd != -1)
			close(w->evfd);
		free(w->scratch);
	}
	free(h->w);
	free(h);
}

/*
 * Raises the descriptor limit to the hard one and keeps the connections
 * below it: each may hold a socket and a file, and FD_RESERVE plus a few
 * per worker stay for the rest, so accept(2) and open(2) do not meet
 * EMFILE in normal operation.
 */
static void
fd_budget(struct mi_httpd_opts *o)
{
	struct rlimit rl;
	long long room = 1 << 20;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			(void)setrlimit(RLIMIT_NOFILE, &rl);
			(void)getrlimit(RLIMIT_NOFILE, &rl);
		}
		if (rl.rlim_cur != RLIM_INFINITY)
			room = ((long long)rl.rlim_cur - FD_RESERVE -
			    4LL * o->threads) / 2;
	}
	if (room < 1)
		room = 1;
	if (o->max_conns <= 0)
		o->max_conns = 8192;
	if (o->max_conns > room)
		o->max_conns = (int)room;
	if (o->max_per_client <= 0)
		o->max_per_client = o->max_conns / 8 > 16 ? o->max_conns / 8 :
		    16;
	if (o->max_per_client > o->max_conns)
		o->max_per_client = o->max_conns;
}

struct mi_httpd *
mi_httpd_start(const struct mi_httpd_opts *o, struct mi_err *err)
{
	struct mi_httpd *h;
	struct epoll_event ev;
	int i;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	h->o = *o;
	if (h->o.threads <= 0)
		h->o.threads = 2;
	fd_budget(&h->o);
	if (h->o.header_timeout_ms <= 0)
		h->o.header_timeout_ms = 30000;
	if (h->o.idle_timeout_ms <= 0)
		h->o.idle_timeout_ms = 75000;
	if (h->o.send_timeout_ms <= 0)
		h->o.send_timeout_ms = 60000;
	if (h->o.grace_ms <= 0)
		h->o.grace_ms = 30000;
	h->nworkers = h->o.threads;
	if ((h->w = calloc((size_t)h->nworkers, sizeof(*h->w))) == NULL) {
		free(h);
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	for (i = 0; i < h->nworkers; i++) {
		struct worker *w = &h->w[i];

		w->h = h;
		w->lfd = w->ep = w->evfd = -1;
		w->live.next = w->live.prev = &w->live;
	}
	if (open_listeners(h, err) == -1) {
		free_workers(h);
		return NULL;
	}
	for (i = 0; i < h->nworkers; i++) {
		struct worker *w = &h->w[i];

		w->scratch = malloc(SCRATCH_SIZE);
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->scratch == NULL || w->ep == -1 || w->evfd == -1) {
			mi_err_set_errno(err, EX_OSERR, "worker setup");
			goto fail;
		}
		ev.events = EPOLLIN;
		ev.data.ptr = &w->lfd;
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev) == -1)
			goto fail_errno;
		ev.data.ptr = &w->evfd;
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->evfd, &ev) == -1)
			goto fail_errno;
	}
	for (i = 0; i < h->nworkers; i++)
		if ((errno = pthread_create(&h->w[i].tid, NULL, worker_main,
		    &h->w[i])) != 0) {
			int j;

			mi_err_set_errno(err, EX_OSERR, "pthread_create");
			/* Workers already running are stopped and joined. */
			for (j = i; j < h->nworkers; j++) {
				close(h->w[j].lfd);
				close(h->w[j].ep);
				close(h->w[j].evfd);
				free(h->w[j].scratch);
			}
			h->nworkers = i;
			mi_httpd_stop(h);
			return NULL;
		}
	return h;
fail_errno:
	mi_err_set_errno(err, EX_OSERR, "epoll_ctl");
fail:
	free_workers(h);
	return NULL;
}

int
mi_httpd_port(const struct mi_httpd *h)
{
	return h->port;
}

void
mi_httpd_stop(struct mi_httpd *h)
{
	uint64_t one = 1;
	int i;

	for (i = 0; i < h->nworkers; i++)
		if (write(h->w[i].evfd, &one, sizeof(one)) < 0)
			continue;
	for (i = 0; i < h->nworkers; i++)
		pthread_join(h->w[i].tid, NULL);
	free_workers(h);
}

void
mi_httpd_stats(struct mi_httpd *h, struct mi_httpd_stats *st)
{
	int i, s;

	memset(st, 0, sizeof(*st));
	st->max_conns = h->o.max_conns;
	st->max_per_client = h->o.max_per_client;
	for (i = 0; i < h->nworkers; i++) {
		struct worker *w = &h->w[i];

		st->rejected += atomic_load_explicit(&w->rejected,
		    memory_order_relaxed);
		st->evicted += atomic_load_explicit(&w->evicted,
		    memory_order_relaxed);

		st->open_conns += atomic_load_explicit(&w->open,
		    memory_order_relaxed);
		st->accepted += atomic_load_explicit(&w->accepted,
		    memory_order_relaxed);
		st->bytes_sent += atomic_load_explicit(&w->bytes,
		    memory_order_relaxed);
		for (s = 100; s < 600; s++)
			st->requests[s] += atomic_load_explicit(
			    &w->requests[s], memory_order_relaxed);
	}
}
