/*
 * probe_av.h - audio and video facts from libavformat, for a child
 * process (see probe.c): the parent forks, the child calls
 * mi_probe_av_write and _exits with its result.
 */
#ifndef MI_PROBE_AV_H
#define MI_PROBE_AV_H

/*
 * Opens path with libavformat and writes to out the JSON ffprobe prints
 * with -show_streams -show_format, reduced to the fields mi reads
 * (codec_type, codec_name, width, height, avg_frame_rate, r_frame_rate,
 * sample_rate, channels, duration, disposition.attached_pic; format
 * duration).  A file it cannot read gives a line on errfd.  Returns the
 * exit status: 0, or 1.
 */
int mi_probe_av_write(const char *path, int out, int errfd);

#endif
