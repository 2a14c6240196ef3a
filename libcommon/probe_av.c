/*
 * probe_av.c - the facts of an audio or video file from libavformat, the
 * library under ffprobe, written as the JSON ffprobe prints with
 * -show_streams -show_format (the fields mi reads of it).
 *
 * ffprobe as a program costs about 80 ms of CPU a file on Debian 12, all
 * of it the dynamic linker resolving a hundred libraries; the library
 * in the process costs about a millisecond.  The parsing of an untrusted
 * file still happens in a child process: probe.c forks, the child calls
 * mi_probe_av_write and exits, and the parent reads what it wrote with
 * the same time and size limits as for a program.  A crash, a leak or a
 * hang in a demuxer stays in the child.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>

#include "buf.h"
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

int
mi_probe_av_write(const char *path, int out, int errfd)
{
	AVFormatContext *fc = NULL;
	struct mi_buf b = MI_BUF_INIT;
	char msg[256];
	unsigned i;
	int rc;

	av_log_set_level(AV_LOG_QUIET);
	if ((rc = avformat_open_input(&fc, path, NULL, NULL)) < 0 ||
	    (rc = avformat_find_stream_info(fc, NULL)) < 0) {
		av_strerror(rc, msg, sizeof(msg));
		dprintf(errfd, "%s: %s\n", path, msg);
		avformat_close_input(&fc);
		return 1;
	}
	mi_buf_add(&b, "{\"streams\":[", 12);
	for (i = 0; i < fc->nb_streams; i++) {
		const AVStream *s = fc->streams[i];
		const AVCodecParameters *cp = s->codecpar;
		const char *type = av_get_media_type_string(cp->codec_type);

		mi_buf_add(&b, i ? ",{" : "{", i ? 2 : 1);
		add_str(&b, "codec_type", type ? type : "unknown", 0);
		add_str(&b, "codec_name", avcodec_get_name(cp->codec_id), 1);
		if (cp->codec_type == AVMEDIA_TYPE_VIDEO) {
			add_int(&b, "width", cp->width);
			add_int(&b, "height", cp->height);
			add_rate(&b, "avg_frame_rate", s->avg_frame_rate);
			add_rate(&b, "r_frame_rate", s->r_frame_rate);
		} else if (cp->codec_type == AVMEDIA_TYPE_AUDIO) {
			char sr[32];

			snprintf(sr, sizeof(sr), "%d", cp->sample_rate);
			add_str(&b, "sample_rate", sr, 1);
			add_int(&b, "channels", cp->ch_layout.nb_channels);
		}
		add_time(&b, "duration", s->duration, s->time_base, 1);
		mi_buf_add(&b, ",\"disposition\":{\"attached_pic\":", 31);
		mi_buf_add(&b,
		    s->disposition & AV_DISPOSITION_ATTACHED_PIC ? "1}}"
								 : "0}}",
		    3);
	}
	mi_buf_add(&b, "],\"format\":{", 12);
	add_str(&b, "format_name", fc->iformat->name, 0);
	add_time(&b, "duration", fc->duration, AV_TIME_BASE_Q, 1);
	mi_buf_add(&b, "}}\n", 3);
	avformat_close_input(&fc);
	rc = 0;
	{
		size_t off = 0;

		while (off < b.len) {
			ssize_t n = write(out, b.buf + off, b.len - off);

			if (n <= 0) {
				rc = 1;
				break;
			}
			off += (size_t)n;
		}
	}
	mi_buf_release(&b);
	return rc;
}
