/*
 * localgen_video.c - video: an H.264 MP4 made by ffmpeg from one still (a
 * reference image, or a picture generated for the prompt) with a slow zoom
 * and pan.  A looping video moves along a closed path, so its last frame
 * leads straight back into its first.
 *
 * ffmpeg runs through posix_spawnp (never a shell), $MI_FFMPEG or "ffmpeg"
 * on PATH; its "-progress pipe:1" lines feed the caller's progress
 * callback and its stderr goes to a scratch file quoted on failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "localgen.h"
#include "banned.h"

#define FPS 30

extern char **environ;

/* The last line of ffmpeg's stderr, for the error message. */
static void
log_tail(const char *logpath, char *dst, size_t n)
{
	char buf[512];
	ssize_t len;
	int fd = open(logpath, O_RDONLY | O_CLOEXEC);
	off_t end;
	char *p;

	dst[0] = '\0';
	if (fd == -1)
		return;
	end = lseek(fd, 0, SEEK_END);
	if (end > (off_t)sizeof(buf) - 1)
		lseek(fd, end - (off_t)sizeof(buf) + 1, SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return;
	buf[len] = '\0';
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	p = strrchr(buf, '\n');
	if ((size_t)snprintf(dst, n, "%s", p ? p + 1 : buf) >= n)
		dst[n - 1] = '\0';	/* a truncated quote is fine */
}

/* Runs ffmpeg with args; frames is the total for progress fractions. */
static int
run_ffmpeg(const char **args, const char *logpath, unsigned frames,
    const struct mi_gen_progress *prog, struct mi_err *err)
{
	posix_spawn_file_actions_t fa;
	const char *ffmpeg = getenv("MI_FFMPEG");
	char line[256], tail[200];
	int pfd[2], status, rc;
	pid_t pid;
	FILE *fp;

	if (ffmpeg == NULL || *ffmpeg == '\0')
		ffmpeg = "ffmpeg";
	args[0] = ffmpeg;
	if (pipe2(pfd, O_CLOEXEC) == -1)
		return mi_err_set_errno(err, EX_SOFTWARE, "pipe");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, logpath,
	    O_WRONLY | O_CREAT | O_TRUNC, 0600);
	rc = posix_spawnp(&pid, ffmpeg, &fa, NULL, (char *const *)args,
	    environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (rc != 0) {
		close(pfd[0]);
		errno = rc;
		return mi_err_set_errno(err, EX_UNAVAILABLE,
		    "unable to run '%s'", ffmpeg);
	}
	fp = fdopen(pfd[0], "r");
	if (fp == NULL)
		close(pfd[0]);
	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
		unsigned long f;

		if (prog == NULL || prog->fn == NULL)
			continue;
		if (sscanf(line, "frame=%lu", &f) == 1 && frames > 0)
			prog->fn(prog->arg, f >= frames ? 1.0 :
			    (double)f / frames);
		else if (strncmp(line, "progress=end", 12) == 0)
			prog->fn(prog->arg, 1.0);
	}
	if (fp != NULL)
		fclose(fp);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return mi_err_set_errno(err, EX_SOFTWARE, "waitpid");
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	log_tail(logpath, tail, sizeof(tail));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return mi_err_set(err, EX_UNAVAILABLE, "unable to run '%s'",
		    ffmpeg);
	if (WIFEXITED(status))
		return mi_err_set(err, EX_SOFTWARE, "ffmpeg exited with %d: %s",
		    WEXITSTATUS(status), tail);
	return mi_err_set(err, EX_SOFTWARE, "ffmpeg killed by signal %d: %s",
	    WTERMSIG(status), tail);
}

/* Writes the generated still for the prompt at w x h into path. */
static int
write_still(const char *prompt, unsigned w, unsigned h, const char *path,
    struct mi_err *err)
{
	struct mi_buf png = MI_BUF_INIT;
	uint8_t *px = malloc((size_t)w * h * 3);
	int rc;

	if (px == NULL)
		return mi_err_set(err, EX_SOFTWARE, "out of memory");
	rc = mi_gen_picture(prompt, w, h, 0, px, err);
	if (rc == 0)
		rc = mi_gen_png_encode(px, w, h, 3, 1, &png, err);
	free(px);
	if (rc == 0)
		rc = mi_gen_write_file(path, png.buf, png.len, err);
	mi_buf_release(&png);
	return rc;
}

int
mi_gen_video(const char *prompt, const char *ref_image, double seconds,
    unsigned w, unsigned h, int loop, const struct mi_gen_progress *prog,
    const char *path, struct mi_err *err)
{
	char dir[4096], still[4200], logpath[4200], vf[1024], frames_s[16];
	char input[4200];
	const char *args[48], *tmp = getenv("TMPDIR");
	struct mi_gen_rng r;
	unsigned frames, sw, sh, n = 0;
	double px, py;
	int rc;

	if (!(seconds >= 4 - 1e-9 && seconds <= 15 + 1e-9))
		return mi_err_set(err, EX_DATAERR,
		    "video duration %g s out of range 4..15", seconds);
	if (w < 64 || h < 64 || w > 4096 || h > 4096 || w % 2 || h % 2)
		return mi_err_set(err, EX_DATAERR,
		    "video size %ux%u not even numbers in 64..4096", w, h);
	frames = (unsigned)lround(seconds * FPS);
	/* The still is a quarter larger than the frame: room to pan. */
	sw = (w * 5 / 4 + 1) & ~1u;
	sh = (h * 5 / 4 + 1) & ~1u;
	mi_gen_rng_seed(&r, prompt, "video");
	px = mi_gen_rng_range(&r, 0.25, 0.45) * (mi_gen_rng_unit(&r) < 0.5 ?
	    -1 : 1);
	py = mi_gen_rng_range(&r, 0.15, 0.35) * (mi_gen_rng_unit(&r) < 0.5 ?
	    -1 : 1);

	if (tmp == NULL || *tmp == '\0')
		tmp = "/tmp";
	if ((size_t)snprintf(dir, sizeof(dir), "%s/mi-video.XXXXXX", tmp) >=
	    sizeof(dir))
		return mi_err_set(err, EX_IOERR, "TMPDIR too long");
	if (mkdtemp(dir) == NULL)
		return mi_err_set_errno(err, EX_IOERR,
		    "unable to create a scratch directory");
	snprintf(still, sizeof(still), "%s/still.png", dir);
	snprintf(logpath, sizeof(logpath), "%s/ffmpeg.log", dir);
	if (ref_image == NULL) {
		if (write_still(prompt, sw, sh, still, err) == -1) {
			rc = -1;
			goto out;
		}
		ref_image = still;
	}

	/*
	 * zoompan draws every frame from the one still (d = frames).  A loop
	 * zooms in and out along a raised cosine and pans along a closed
	 * figure, both periodic in the video length; otherwise the camera
	 * eases in and drifts to one side.
	 */
	if (loop)
		rc = snprintf(vf, sizeof(vf),
		    "scale=%u:%u:force_original_aspect_ratio=increase,"
		    "crop=%u:%u,setsar=1,"
		    "zoompan=z='1+0.12*(1-cos(2*PI*on/%u))/2'"
		    ":x='(iw-iw/zoom)*(0.5+%.3f*sin(2*PI*on/%u))'"
		    ":y='(ih-ih/zoom)*(0.5+%.3f*sin(4*PI*on/%u))'"
		    ":d=%u:s=%ux%u:fps=%d,format=yuv420p",
		    sw, sh, sw, sh, frames, px, frames, py, frames, frames, w, h,
		    FPS);
	else
		rc = snprintf(vf, sizeof(vf),
		    "scale=%u:%u:force_original_aspect_ratio=increase,"
		    "crop=%u:%u,setsar=1,"
		    "zoompan=z='1+0.2*(3-2*on/%u)*(on/%u)*(on/%u)'"
		    ":x='(iw-iw/zoom)*(0.5+%.3f*on/%u)'"
		    ":y='(ih-ih/zoom)*(0.5+%.3f*on/%u)'"
		    ":d=%u:s=%ux%u:fps=%d,format=yuv420p",
		    sw, sh, sw, sh, frames, frames, frames, px, frames, py,
		    frames, frames, w, h, FPS);
	if (rc < 0 || (size_t)rc >= sizeof(vf)) {
		rc = mi_err_set(err, EX_SOFTWARE, "filter too long");
		goto out;
	}
	snprintf(frames_s, sizeof(frames_s), "%u", frames);
	/* "file:" keeps ffmpeg from reading a name as a protocol or URL. */
	if ((size_t)snprintf(input, sizeof(input), "file:%s", ref_image) >=
	    sizeof(input)) {
		rc = mi_err_set(err, EX_DATAERR, "reference image name too long");
		goto out;
	}

	args[n++] = "ffmpeg";
	args[n++] = "-nostdin";
	args[n++] = "-hide_banner";
	args[n++] = "-loglevel";
	args[n++] = "error";
	args[n++] = "-nostats";
	args[n++] = "-progress";
	args[n++] = "pipe:1";
	args[n++] = "-y";
	args[n++] = "-i";
	args[n++] = input;
	args[n++] = "-vf";
	args[n++] = vf;
	args[n++] = "-frames:v";
	args[n++] = frames_s;
	args[n++] = "-an";
	args[n++] = "-c:v";
	args[n++] = "libx264";
	args[n++] = "-preset";
	args[n++] = "veryfast";
	args[n++] = "-crf";
	args[n++] = "21";
	/* x264's output depends on its thread count: fix it for determinism. */
	args[n++] = "-threads";
	args[n++] = "4";
	args[n++] = "-pix_fmt";
	args[n++] = "yuv420p";
	/* Same input, same bytes: no timestamps or version strings. */
	args[n++] = "-map_metadata";
	args[n++] = "-1";
	args[n++] = "-fflags";
	args[n++] = "+bitexact";
	args[n++] = "-flags:v";
	args[n++] = "+bitexact";
	args[n++] = "-movflags";
	args[n++] = "+faststart";
	args[n++] = "-f";
	args[n++] = "mp4";
	args[n++] = path;
	args[n] = NULL;
	rc = run_ffmpeg(args, logpath, frames, prog, err);
	if (rc == -1)
		unlink(path);
out:
	unlink(still);
	unlink(logpath);
	rmdir(dir);
	return rc;
}
