/*
 * probe_av.c - the facts of an audio or video file from libavformat, the
 * library under ffprobe, written as the JSON ffprobe prints with
 * -show_streams -show_format (the fields mi reads of it).
 *
 * ffprobe as a program costs about 80 ms of CPU a file on Debian 12, all
 * of it the dynamic linker resolving a hundred libraries; the library
 * in the process costs about a millisecond.  The parsing of an untrusted
 * file still happens in another process: a worker, forked at the first
 * probe, reads paths from a socket and answers with the JSON or an error
 * line.  The parent bounds each answer's time and size as for a program
 * and kills the worker when it is late or says too much.  A crash or a
 * hang in a demuxer stays in the worker, which the next probe replaces;
 * a leak lasts at most AVW_MAX_SERVED files, after which the worker is
 * replaced anyway.  A fork per file cost more than the probe itself
 * (copying the page tables of a process with libcurl, libpq and
 * libavformat mapped): about 4 ms of system time a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>

#include "buf.h"
#include "err.h"
#include "probe_av.h"
#include "banned.h"

static void
add_str(struct mi_buf *b, const char *key, const char *v, int comma)
{
	char tmp[64];
	const char *p;

	mi_buf_add(b, comma ? ",\"" : "\"", comma ? 2 : 1);
	mi_buf_add(b, key, strlen(key));
	mi_buf_add(b, "\":\"", 3);
	/* Codec names and numbers only: anything else is left out. */
	for (p = v; *p && p - v < (long)sizeof(tmp) - 1; p++)
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' ||
		    *p == '/' || *p == '-')
			mi_buf_add(b, p, 1);
	mi_buf_add(b, "\"", 1);
}

static void
add_int(struct mi_buf *b, const char *key, long long v)
{
	char tmp[96];
	int n = snprintf(tmp, sizeof(tmp), ",\"%s\":%lld", key, v);

	mi_buf_add(b, tmp, (size_t)n);
}

static void
add_time(struct mi_buf *b, const char *key, int64_t ts, AVRational tb,
    int comma)
{
	char tmp[64];

	if (ts == AV_NOPTS_VALUE || tb.den == 0)
		return;
	snprintf(tmp, sizeof(tmp), "%.6f", (double)ts * tb.num / tb.den);
	add_str(b, key, tmp, comma);
}

static void
add_rate(struct mi_buf *b, const char *key, AVRational r)
{
	char tmp[64];

	snprintf(tmp, sizeof(tmp), "%d/%d", r.num, r.den);
	add_str(b, key, tmp, 1);
}

/* path opened with the demuxer fmt (NULL: the one libavformat's probe
 * finds) and its streams read; rc < 0 when it failed. */
static int
open_av(AVFormatContext **fc, const char *path, const AVInputFormat *fmt)
{
	int rc;

	*fc = NULL;
	if ((rc = avformat_open_input(fc, path, fmt, NULL)) < 0 ||
	    (rc = avformat_find_stream_info(*fc, NULL)) < 0)
		avformat_close_input(fc);
	return rc;
}

int
mi_probe_av_json(const char *path, const char *format, struct mi_buf *b,
    char *msg, size_t msgsz)
{
	AVFormatContext *fc = NULL;
	const AVInputFormat *fmt;
	unsigned i;
	int rc = -1;

	av_log_set_level(AV_LOG_QUIET);
	/* The probe asks each of some 300 demuxers what it makes of the
	 * file's first bytes, which costs more than reading the file: the
	 * demuxer of the format found by its signature goes first. */
	fmt = format && *format ? av_find_input_format(format) : NULL;
	if ((fmt == NULL || (rc = open_av(&fc, path, fmt)) < 0) &&
	    (rc = open_av(&fc, path, NULL)) < 0) {
		char e[200];

		av_strerror(rc, e, sizeof(e));
		snprintf(msg, msgsz, "%s: %s", path, e);
		avformat_close_input(&fc);
		return 1;
	}
	mi_buf_add(b, "{\"streams\":[", 12);
	for (i = 0; i < fc->nb_streams; i++) {
		const AVStream *s = fc->streams[i];
		const AVCodecParameters *cp = s->codecpar;
		const char *type = av_get_media_type_string(cp->codec_type);

		mi_buf_add(b, i ? ",{" : "{", i ? 2 : 1);
		add_str(b, "codec_type", type ? type : "unknown", 0);
		add_str(b, "codec_name", avcodec_get_name(cp->codec_id), 1);
		if (cp->codec_type == AVMEDIA_TYPE_VIDEO) {
			add_int(b, "width", cp->width);
			add_int(b, "height", cp->height);
			add_rate(b, "avg_frame_rate", s->avg_frame_rate);
			add_rate(b, "r_frame_rate", s->r_frame_rate);
		} else if (cp->codec_type == AVMEDIA_TYPE_AUDIO) {
			char sr[32];

			snprintf(sr, sizeof(sr), "%d", cp->sample_rate);
			add_str(b, "sample_rate", sr, 1);
			add_int(b, "channels", cp->ch_layout.nb_channels);
		}
		add_time(b, "duration", s->duration, s->time_base, 1);
		mi_buf_add(b, ",\"disposition\":{\"attached_pic\":", 31);
		mi_buf_add(b,
		    s->disposition & AV_DISPOSITION_ATTACHED_PIC ? "1}}"
								 : "0}}",
		    3);
	}
	mi_buf_add(b, "],\"format\":{", 12);
	add_str(b, "format_name", fc->iformat->name, 0);
	add_time(b, "duration", fc->duration, AV_TIME_BASE_Q, 1);
	mi_buf_add(b, "}}\n", 3);
	avformat_close_input(&fc);
	return 0;
}

/* The worker: one per process that probes (see the top of the file). */
#define AVW_MAX_SERVED 256

static pthread_mutex_t avw_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	pid_t pid, owner; /* the worker, and the process it belongs to */
	int fd;		  /* the parent's end of the socket */
	unsigned served;
} avw = { -1, -1, -1, 0 };
static int avw_died;	/* the last probe's worker ended without an answer */

/* Waits for fd to be readable until the deadline: 1, 0 late, or -1. */
static int
wait_readable(int fd, long long until)
{
	for (;;) {
		struct timespec ts;
		struct pollfd p = { fd, POLLIN, 0 };
		long long now, left;
		int r;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		if ((left = until - now) <= 0)
			return 0;
		r = poll(&p, 1, left > 1000 ? 1000 : (int)left);
		if (r == -1 && errno == EINTR)
			continue;
		if (r != 0)
			return r > 0 ? 1 : -1;
	}
}

/*
 * Sends (out) or reads all n bytes; a read with a deadline (until, on
 * the monotonic clock in ms; 0: none) gives -2 when it is late.  0, or
 * -1 when the other end went or failed.
 */
static int
io_full(int fd, void *p, size_t n, int out, long long until)
{
	char *c = p;

	while (n > 0) {
		ssize_t k;

		if (!out && until > 0) {
			int w = wait_readable(fd, until);

			if (w <= 0)
				return w == 0 ? -2 : -1;
		}
		k = out ? send(fd, c, n, MSG_NOSIGNAL) : read(fd, c, n);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

static void __attribute__((noreturn))
avw_main(int fd)
{
	char req[PATH_MAX + 32], *path, *format;
	uint32_t len;

	for (;;) {
		struct mi_buf b = MI_BUF_INIT;
		char msg[400] = "";
		uint32_t hdr[2];
		int rc;

		if (io_full(fd, &len, sizeof(len), 0, 0) == -1)
			_exit(0);
		/* The format, a NUL, the path. */
		if (len == 0 || len >= sizeof(req) ||
		    io_full(fd, req, len, 0, 0) == -1)
			_exit(2);
		req[len] = '\0';
		format = req;
		if ((path = memchr(req, '\0', len)) == NULL || path[1] == '\0')
			_exit(2);
		path++;
		rc = mi_probe_av_json(path, format, &b, msg, sizeof(msg));
		hdr[0] = (uint32_t)rc;
		hdr[1] = rc ? (uint32_t)strlen(msg) : (uint32_t)b.len;
		if (io_full(fd, hdr, sizeof(hdr), 1, 0) == -1 ||
		    io_full(fd, rc ? msg : b.buf, hdr[1], 1, 0) == -1)
			_exit(0);
		mi_buf_release(&b);
	}
}

/* Ends the worker: killed at once, or told by EOF between files. */
static void
avw_stop(int kill_it, int *status)
{
	int st = 0;

	if (avw.pid > 0 && avw.owner == getpid()) {
		if (kill_it)
			kill(avw.pid, SIGKILL);
		close(avw.fd);
		while (waitpid(avw.pid, &st, 0) == -1 && errno == EINTR)
			;
	} else if (avw.fd >= 0)
		close(avw.fd); /* a copy inherited by a forked child */
	if (status)
		*status = st;
	avw.pid = -1;
	avw.fd = -1;
	avw.served = 0;
}

static int
avw_start(struct mi_err *err)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return mi_err_set_errno(err, EX_OSERR, "socketpair");
	/*
	 * No fflush before the fork: another thread may hold a stream's lock
	 * (a reader blocked on stdin), and the worker leaves by _exit, which
	 * writes none of the buffers it inherits.
	 */
	if ((pid = fork()) == -1) {
		close(sv[0]);
		close(sv[1]);
		return mi_err_set_errno(err, EX_OSERR, "fork");
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
		}
		/* Only the socket and stderr stay open. */
		if (dup2(sv[1], 3) == -1)
			_exit(2);
		close_range(4, ~0U, 0);
		avw_main(3);
	}
	close(sv[1]);
	avw.pid = pid;
	avw.owner = getpid();
	avw.fd = sv[0];
	avw.served = 0;
	return 0;
}

static jv
avw_probe(const char *path, const char *format, size_t max_out,
    long timeout_ms, struct mi_err *err)
{
	struct timespec ts;
	char req[PATH_MAX + 32];
	uint32_t len, hdr[2];
	long long until;
	char *body;
	int r, status;
	jv res;

	if (format == NULL || strlen(format) > 16)
		format = "";
	if (*path == '\0' || strlen(path) >= PATH_MAX) {
		mi_err_set(err, EX_SOFTWARE, "libavformat: path too long");
		return jv_invalid();
	}
	len = (uint32_t)(strlen(format) + 1 + strlen(path));
	memcpy(req, format, strlen(format) + 1);
	memcpy(req + strlen(format) + 1, path, strlen(path));
	if (avw.pid > 0 &&
	    (avw.owner != getpid() || avw.served >= AVW_MAX_SERVED))
		avw_stop(0, NULL);
	/* A worker that died since its last file (killed) is replaced. */
	if (avw.pid > 0 && waitpid(avw.pid, &status, WNOHANG) == avw.pid) {
		close(avw.fd);
		avw.pid = -1;
		avw.fd = -1;
	}
	if (avw.pid <= 0 && avw_start(err) == -1)
		return jv_invalid();
	avw.served++;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	until = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
	    timeout_ms;
	if (io_full(avw.fd, &len, sizeof(len), 1, 0) == -1 ||
	    io_full(avw.fd, req, len, 1, 0) == -1)
		r = -1;
	else
		r = io_full(avw.fd, hdr, sizeof(hdr), 0, until);
	if (r == 0 && hdr[1] > max_out) {
		avw_stop(1, NULL);
		mi_err_set(err, EX_SOFTWARE, "libavformat said more than %zu "
		    "bytes", max_out);
		return jv_invalid();
	}
	if (r == 0 && (body = malloc((size_t)hdr[1] + 1)) != NULL) {
		r = io_full(avw.fd, body, hdr[1], 0, until);
		if (r == 0) {
			body[hdr[1]] = '\0';
			if (hdr[0] == 0)
				res = jv_string_sized(body, (int)hdr[1]);
			else {
				mi_err_set(err, EX_SOFTWARE, "libavformat "
				    "failed (1): %s", body);
				res = jv_invalid();
			}
			free(body);
			return res;
		}
		free(body);
	} else if (r == 0)
		r = -1;
	if (r == -2) {
		avw_stop(1, NULL);
		mi_err_set(err, EX_SOFTWARE, "libavformat took longer than "
		    "%ld ms", timeout_ms);
		return jv_invalid();
	}
	/* The worker died on this file (or could not be reached). */
	avw_stop(1, &status);
	mi_err_set(err, EX_SOFTWARE, "libavformat failed (%d): the worker "
	    "ended", WIFEXITED(status) ? WEXITSTATUS(status) :
	    WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1);
	avw_died = 1;	/* see mi_probe_av */
	return jv_invalid();
}

jv
mi_probe_av(const char *path, const char *format, size_t max_out,
    long timeout_ms, struct mi_err *err)
{
	jv res;

	pthread_mutex_lock(&avw_lock);
	avw_died = 0;
	res = avw_probe(path, format, max_out, timeout_ms, err);
	/*
	 * A worker that ended without an answer may have been dying already
	 * (killed) when the file was sent: a new one reads it once more.  A
	 * file that kills that one too is the file's fault.
	 */
	if (!jv_is_valid(res) && avw_died) {
		jv_free(res);
		res = avw_probe(path, format, max_out, timeout_ms, err);
	}
	pthread_mutex_unlock(&avw_lock);
	return res;
}
