/*
 * probe_av.h - audio and video facts from libavformat, read in a worker
 * process (probe_av.c) so that a hostile file's crash, leak or hang stays
 * out of the caller.
 */
#ifndef MI_PROBE_AV_H
#define MI_PROBE_AV_H

#include <stddef.h>

#include <jv.h>

#include "buf.h"
#include "err.h"

/*
 * The JSON ffprobe prints with -show_streams -show_format for path,
 * reduced to the fields mi reads (codec_type, codec_name, width, height,
 * avg_frame_rate, r_frame_rate, sample_rate, channels, duration,
 * disposition.attached_pic; format duration), as a string; read by the
 * worker within timeout_ms and max_out bytes.  Else invalid, err filled.
 * format (may be NULL): the container the file's bytes were found to be
 * (an extension: "mp3", "wav", "mp4"): its demuxer is tried first, and
 * libavformat's probe of every demuxer only when that one fails.
 * Thread-safe (one worker per process, one file at a time).
 */
jv mi_probe_av(const char *path, const char *format, size_t max_out,
    long timeout_ms, struct mi_err *err);

/*
 * In this process: appends that JSON to out and returns 0, or writes a
 * line to msg and returns 1.  Only the worker calls it.
 */
int mi_probe_av_json(const char *path, const char *format, struct mi_buf *out,
    char *msg, size_t msgsz);

#endif
