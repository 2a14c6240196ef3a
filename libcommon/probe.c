/*
 * probe.c - facts of a stored file by its type, and the bounded runner
 * of helper programs (ffprobe, gltfpack).
 *
 * Audio and video go to ffmpeg's libavformat (probe_av.c), which knows
 * every container and codec a provider may send, in a worker process: it
 * answers with ffprobe's JSON, with a 20 s limit and at most 1 MiB of
 * output, and only that JSON is read.  $MI_FFPROBE names a program that prints
 * the same JSON (ffprobe itself) to run instead, without a shell.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"
#include "probe.h"
#include "probe_av.h"
#include "banned.h"

extern char **environ;

static jv collect(pid_t pid, int outfd, int errfd, const char *name,
    size_t max_out, long timeout_ms, struct mi_err *err);

/* The pipes of a child's stdout and stderr: 0, or -1 with err. */
static int
out_pipes(int pfd[2], int efd[2], struct mi_err *err)
{
	if (pipe2(pfd, O_CLOEXEC) == -1)
		return mi_err_set_errno(err, EX_OSERR, "pipe");
	if (pipe2(efd, O_CLOEXEC) == -1) {
		close(pfd[0]);
		close(pfd[1]);
		return mi_err_set_errno(err, EX_OSERR, "pipe");
	}
	return 0;
}

jv
mi_probe_run(const char *const *argv, size_t max_out, long timeout_ms,
    struct mi_err *err)
{
	posix_spawn_file_actions_t fa;
	int pfd[2], efd[2], rc;
	pid_t pid;

	if (out_pipes(pfd, efd, err) == -1)
		return jv_invalid();
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, efd[1], 2);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv,
	    environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	close(efd[1]);
	if (rc != 0) {
		close(pfd[0]);
		close(efd[0]);
		errno = rc;
		mi_err_set_errno(err, EX_UNAVAILABLE, "unable to run '%s'",
		    argv[0]);
		return jv_invalid();
	}
	return collect(pid, pfd[0], efd[0], argv[0], max_out, timeout_ms,
	    err);
}

static jv
collect(pid_t pid, int outfd, int errfd, const char *name, size_t max_out,
    long timeout_ms, struct mi_err *err)
{
	struct mi_buf out = MI_BUF_INIT;
	char buf[65536], errtail[200] = "";
	int pfd[1], efd[1], status, open_fds = 2, over = 0, killed = 0;
	long long until = mi_now_ms() + timeout_ms;
	jv res;

	pfd[0] = outfd;
	efd[0] = errfd;
	mi_buf_init(&out, max_out + 1);
	while (open_fds > 0) {
		struct pollfd p[2] = { { pfd[0], POLLIN, 0 },
			{ efd[0], POLLIN, 0 } };
		long long left = until - mi_now_ms();
		ssize_t n;
		int i;

		if (left <= 0) {
			kill(pid, SIGKILL);
			killed = 1;
			break;
		}
		if (poll(p, 2, (int)(left > 1000 ? 1000 : left)) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < 2; i++) {
			if (p[i].fd < 0 ||
			    !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0) {
				if (n == -1 && errno == EINTR)
					continue;
				close(p[i].fd);
				if (i == 0)
					pfd[0] = -1;
				else
					efd[0] = -1;
				open_fds--;
				continue;
			}
			if (i == 0) {
				if (out.len + (size_t)n > max_out) {
					over = 1;
					kill(pid, SIGKILL);
				} else
					mi_buf_add(&out, buf, (size_t)n);
			} else {
				/* The last line of stderr, for messages. */
				size_t k = (size_t)n;
				char *nl;

				while (k > 0 &&
				    (buf[k - 1] == '\n' || buf[k - 1] == '\r'))
					k--;
				buf[k] = '\0';
				nl = strrchr(buf, '\n');
				if (k > 0) {
					const char *t = nl ? nl + 1 : buf;
					size_t tl = strlen(t);

					if (tl >= sizeof(errtail))
						tl = sizeof(errtail) - 1;
					memcpy(errtail, t, tl);
					errtail[tl] = '\0';
				}
			}
		}
		if (over)
			break;
	}
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (efd[0] >= 0)
		close(efd[0]);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			break;
	if (killed || over) {
		mi_buf_release(&out);
		if (killed)
			mi_err_set(err, EX_SOFTWARE,
			    "%s took longer than "
			    "%ld ms",
			    name, timeout_ms);
		else
			mi_err_set(err, EX_SOFTWARE,
			    "%s said more than %zu "
			    "bytes",
			    name, max_out);
		return jv_invalid();
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		mi_buf_release(&out);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
			mi_err_set(err, EX_UNAVAILABLE, "unable to run '%s'",
			    name);
		else
			mi_err_set(err, EX_SOFTWARE, "%s failed (%d): %s",
			    name,
			    WIFEXITED(status) ? WEXITSTATUS(status)
					      : 128 + WTERMSIG(status),
			    errtail);
		return jv_invalid();
	}
	res = jv_string_sized(out.buf ? out.buf : "", (int)out.len);
	mi_buf_release(&out);
	return res;
}

static double
strnum(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));
	double d = -1;

	if (jv_get_kind(v) == JV_KIND_NUMBER)
		d = jv_number_value(v);
	else if (jv_get_kind(v) == JV_KIND_STRING) {
		const char *s = jv_string_value(v), *slash = strchr(s, '/');

		if (slash) { /* "30000/1001" */
			double a = strtod(s, NULL), b = strtod(slash + 1, NULL);

			d = b > 0 ? a / b : -1;
		} else if (*s)
			d = strtod(s, NULL);
	}
	jv_free(v);
	return d;
}

static jv
set_num(jv o, const char *key, double d, double scale)
{
	if (d < 0)
		return o;
	if (scale > 0)
		d = (double)(long long)(d * scale + 0.5) / scale;
	return jv_object_set(o, jv_string(key), jv_number(d));
}

/* Audio and video: ffprobe's streams and format, reduced to the facts. */
static jv
av(const char *path, const char *kind, const char *ext)
{
	const char *ffprobe = getenv("MI_FFPROBE");
	const char *argv[] = { NULL, "-v", "error", "-print_format", "json",
		"-show_streams", "-show_format", "--", path, NULL };
	struct mi_err err = MI_ERR_INIT;
	jv out = jv_object(), text, doc, streams, fmt;
	double dur;
	int i, n, have_v = 0, have_a = 0;

	argv[0] = ffprobe;
	out = jv_object_set(out, jv_string("kind"), jv_string(kind));
	out = jv_object_set(out, jv_string("format"), jv_string(ext));
	/* $MI_FFPROBE names a program to run instead of the library. */
	text = ffprobe && *ffprobe ? mi_probe_run(argv, 1 << 20, 20000, &err)
				   : mi_probe_av(path, ext, 1 << 20, 20000, &err);
	if (!jv_is_valid(text)) {
		jv_free(text);
		return jv_object_set(out, jv_string("error"),
		    jv_string(err.msg));
	}
	doc = jv_parse(jv_string_value(text));
	jv_free(text);
	if (jv_get_kind(doc) != JV_KIND_OBJECT) {
		jv_free(doc);
		return jv_object_set(out, jv_string("error"),
		    jv_string(ffprobe && *ffprobe ? "ffprobe gave no JSON"
						  : "libavformat gave no JSON"));
	}
	fmt = jv_object_get(jv_copy(doc), jv_string("format"));
	dur = jv_get_kind(fmt) == JV_KIND_OBJECT ? strnum(fmt, "duration") : -1;
	jv_free(fmt);
	streams = jv_object_get(doc, jv_string("streams"));
	n = jv_get_kind(streams) == JV_KIND_ARRAY
	    ? jv_array_length(jv_copy(streams))
	    : 0;
	for (i = 0; i < n; i++) {
		jv s = jv_array_get(jv_copy(streams), i), t, codec;

		if (jv_get_kind(s) != JV_KIND_OBJECT) {
			jv_free(s);
			continue;
		}
		t = jv_object_get(jv_copy(s), jv_string("codec_type"));
		codec = jv_object_get(jv_copy(s), jv_string("codec_name"));
		if (jv_get_kind(codec) != JV_KIND_STRING) {
			jv_free(codec);
			codec = jv_null();
		}
		if (jv_get_kind(t) == JV_KIND_STRING &&
		    strcmp(jv_string_value(t), "video") == 0 && !have_v) {
			/* Cover art in an MP3 is a still "video" stream. */
			jv disp =
			    jv_object_get(jv_copy(s), jv_string("disposition"));
			int still = jv_get_kind(disp) == JV_KIND_OBJECT &&
			    strnum(disp, "attached_pic") == 1;

			jv_free(disp);
			if (!still && strcmp(kind, "video") == 0) {
				have_v = 1;
				out = set_num(out, "width", strnum(s, "width"),
				    0);
				out = set_num(out, "height",
				    strnum(s, "height"), 0);
				out = set_num(out, "fps",
				    strnum(s, "avg_frame_rate") > 0
					? strnum(s, "avg_frame_rate")
					: strnum(s, "r_frame_rate"),
				    1000);
				out = jv_object_set(out,
				    jv_string("video_codec"), jv_copy(codec));
				if (dur < 0)
					dur = strnum(s, "duration");
			}
		} else if (jv_get_kind(t) == JV_KIND_STRING &&
		    strcmp(jv_string_value(t), "audio") == 0 && !have_a) {
			have_a = 1;
			out = jv_object_set(out,
			    jv_string(strcmp(kind, "video") == 0 ? "audio_codec"
								 : "codec"),
			    jv_copy(codec));
			if (strcmp(kind, "audio") == 0) {
				out = set_num(out, "sample_rate",
				    strnum(s, "sample_rate"), 0);
				out = set_num(out, "channels",
				    strnum(s, "channels"), 0);
			}
			if (dur < 0)
				dur = strnum(s, "duration");
		}
		jv_free(codec);
		jv_free(t);
		jv_free(s);
	}
	jv_free(streams);
	out = set_num(out, "duration_sec", dur, 1000);
	if (strcmp(kind, "video") == 0) {
		if (!have_a)
			out = jv_object_set(out, jv_string("audio_codec"),
			    jv_null());
		out = jv_object_set(out, jv_string("has_audio"),
		    have_a ? jv_true() : jv_false());
	}
	if ((strcmp(kind, "video") == 0 && !have_v) ||
	    (strcmp(kind, "audio") == 0 && !have_a))
		out = jv_object_set(out, jv_string("error"),
		    jv_string(strcmp(kind, "video") == 0 ? "no video stream"
							 : "no audio stream"));
	return out;
}

jv
mi_probe_file(const char *path, const struct mi_mime *mime)
{
	struct stat sb;
	const char *ext = mime ? mime->ext : "";
	const char *cls = mime ? mime->class : "";
	jv out;
	int fd;

	if (strcmp(cls, "audio") == 0 || strcmp(cls, "video") == 0)
		return av(path, cls, ext);
	if (strcmp(ext, "glb") != 0 && strcmp(ext, "gltf") != 0 &&
	    strcmp(cls, "image") != 0 && strcmp(cls, "hdr") != 0)
		return jv_object_set(jv_object(), jv_string("kind"),
		    jv_string("other"));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &sb) == -1) {
		char msg[300];

		snprintf(msg, sizeof(msg), "unable to open: %s",
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		return jv_object_set(jv_object(), jv_string("error"),
		    jv_string(msg));
	}
	if (strcmp(ext, "glb") == 0 || strcmp(ext, "gltf") == 0)
		out = mi_probe_gltf_fd(fd, (long long)sb.st_size,
		    strcmp(ext, "glb") == 0);
	else {
		out = mi_probe_image_fd(fd, 0, (long long)sb.st_size, ext);
		if (strcmp(ext, "hdr") == 0 || strcmp(ext, "exr") == 0)
			out = jv_object_set(out, jv_string("kind"),
			    jv_string("environment_map"));
	}
	close(fd);
	return out;
}
