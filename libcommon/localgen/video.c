/*
 * localgen/video.c - video: an H.264 MP4 made by ffmpeg from one still (a
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

#include "localgen/blocks.h"
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

/* Transitions between scenes, picked by the prompt's hash. */
static const char *const fades[] = { "fade", "dissolve", "slideleft",
	"circleopen", "smoothleft", "wipeleft" };

#define XFADE 0.5		/* seconds of crossfade between scenes */
#define MAXSCENES 8

/*
 * Appends the filter chain of one clip: the still scaled to cover a frame
 * a quarter larger than the output, zoompan over it for frames frames,
 * and the caption (a text file) drawn near the bottom.
 */
static int
clip_filter(struct mi_buf *f, unsigned k, unsigned frames, unsigned w,
    unsigned h, int loop, struct mi_gen_rng *r, const char *capfile)
{
	unsigned sw = (w * 5 / 4 + 1) & ~1u, sh = (h * 5 / 4 + 1) & ~1u;
	double px = mi_gen_rng_range(r, 0.25, 0.45) * (mi_gen_rng_unit(r) <
	    0.5 ? -1 : 1);
	double py = mi_gen_rng_range(r, 0.15, 0.35) * (mi_gen_rng_unit(r) <
	    0.5 ? -1 : 1);
	int rc;

	rc = mi_buf_addf(f, "%s[%u:v]scale=%u:%u:force_original_aspect_ratio="
	    "increase,crop=%u:%u,setsar=1,", k ? ";" : "", k, sw, sh, sw, sh);
	/*
	 * A loop zooms in and out along a raised cosine and pans along a
	 * closed figure, both periodic in the clip length, so the last frame
	 * leads into the first; otherwise the camera eases in and drifts.
	 */
	if (loop)
		rc |= mi_buf_addf(f,
		    "zoompan=z='1+0.12*(1-cos(2*PI*on/%u))/2'"
		    ":x='(iw-iw/zoom)*(0.5+%.3f*sin(2*PI*on/%u))'"
		    ":y='(ih-ih/zoom)*(0.5+%.3f*sin(4*PI*on/%u))'",
		    frames, px, frames, py, frames);
	else
		rc |= mi_buf_addf(f,
		    "zoompan=z='1+0.2*(3-2*on/%u)*(on/%u)*(on/%u)'"
		    ":x='(iw-iw/zoom)*(0.5+%.3f*on/%u)'"
		    ":y='(ih-ih/zoom)*(0.5+%.3f*on/%u)'",
		    frames, frames, frames, px, frames, py, frames);
	rc |= mi_buf_addf(f, ":d=%u:s=%ux%u:fps=%d,format=yuv420p", frames, w,
	    h, FPS);
	if (capfile != NULL)
		rc |= mi_buf_addf(f, ",drawtext=textfile='%s'"
		    ":font='DejaVu Sans\\:style=Bold':fontsize=%u"
		    ":fontcolor=white:borderw=%u:bordercolor=black@0.7"
		    ":x=(w-text_w)/2:y=h-text_h-h/10", capfile,
		    (w < h ? w : h) / 12, (w < h ? w : h) / 240 + 1);
	rc |= mi_buf_addf(f, "[v%u]", k);
	return rc ? -1 : 0;
}

/* A scratch directory whose name is safe inside a filter graph. */
static int
scratch_dir(char *dir, size_t n, struct mi_err *err)
{
	const char *tmp = getenv("TMPDIR");

	if (tmp == NULL || *tmp == '\0' ||
	    tmp[strspn(tmp, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789/._-")] != '\0')
		tmp = "/tmp";
	if ((size_t)snprintf(dir, n, "%s/mi-video.XXXXXX", tmp) >= n)
		return mi_err_set(err, EX_IOERR, "TMPDIR too long");
	if (mkdtemp(dir) == NULL)
		return mi_err_set_errno(err, EX_IOERR,
		    "unable to create a scratch directory");
	return 0;
}

static int
render(const char *prompt, const struct mi_gen_scene *sc, unsigned n,
    unsigned w, unsigned h, int loop, const char *genre,
    const struct mi_gen_progress *prog, const char *path, struct mi_err *err)
{
	char dir[4096], file[MAXSCENES + 2][4200], input[MAXSCENES + 1][4300];
	char frames_s[16], alabel[16];
	const char *args[64];
	struct mi_buf f = MI_BUF_INIT;
	struct mi_gen_rng r;
	double total = 0, off = 0;
	unsigned k, frames, na = 0;
	int rc = -1;

	if (n < 1 || n > MAXSCENES)
		return mi_err_set(err, EX_DATAERR,
		    "%u scenes, not 1..%d", n, MAXSCENES);
	for (k = 0; k < n; k++) {
		if (n > 1 && !(sc[k].seconds >= 1 - 1e-9))
			return mi_err_set(err, EX_DATAERR,
			    "scene %u: duration %g s below 1", k + 1,
			    sc[k].seconds);
		total += sc[k].seconds;
	}
	if (!(total >= 4 - 1e-9 && total <= 15 + 1e-9))
		return mi_err_set(err, EX_DATAERR,
		    "video duration %g s out of range 4..15", total);
	if (w < 64 || h < 64 || w > 4096 || h > 4096 || w % 2 || h % 2)
		return mi_err_set(err, EX_DATAERR,
		    "video size %ux%u not even numbers in 64..4096", w, h);
	frames = (unsigned)lround(total * FPS);
	if (scratch_dir(dir, sizeof(dir), err) == -1)
		return -1;
	memset(file, 0, sizeof(file));
	mi_gen_rng_seed(&r, prompt, "video");

	for (k = 0; k < n; k++) {
		const char *img = sc[k].image, *cap = NULL;
		/* Every clip but the last runs on under the crossfade. */
		double len = sc[k].seconds + (k + 1 < n ? XFADE : 0);

		if (img == NULL) {
			struct mi_buf p = MI_BUF_INIT;

			snprintf(file[k], sizeof(file[k]), "%s/still%u.png", dir,
			    k);
			if (mi_buf_addf(&p, "%s%s%s", prompt, n > 1 ? " | " : "",
			    n > 1 ? (sc[k].caption ? sc[k].caption : "") : "")
			    == -1 || (n > 1 && mi_buf_addf(&p, " #%u", k) == -1)) {
				mi_buf_release(&p);
				rc = mi_err_set(err, EX_SOFTWARE, "out of memory");
				goto out;
			}
			rc = write_still(p.buf, (w * 5 / 4 + 1) & ~1u,
			    (h * 5 / 4 + 1) & ~1u, file[k], err);
			mi_buf_release(&p);
			if (rc == -1)
				goto out;
			img = file[k];
		}
		if (sc[k].caption != NULL && *sc[k].caption != '\0') {
			char cf[4200];

			snprintf(cf, sizeof(cf), "%s/caption%u.txt", dir, k);
			if (mi_gen_write_file(cf, sc[k].caption,
			    strlen(sc[k].caption), err) == -1) {
				rc = -1;
				goto out;
			}
			cap = cf;
			if (clip_filter(&f, k, (unsigned)lround(len * FPS), w, h,
			    loop && n == 1, &r, cap) == -1)
				goto oom;
		} else if (clip_filter(&f, k, (unsigned)lround(len * FPS), w, h,
		    loop && n == 1, &r, NULL) == -1)
			goto oom;
		/* "file:" keeps ffmpeg from reading a name as a protocol. */
		if ((size_t)snprintf(input[k], sizeof(input[k]), "file:%s",
		    img) >= sizeof(input[k])) {
			rc = mi_err_set(err, EX_DATAERR, "image name too long");
			goto out;
		}
	}
	/* Crossfades: clip k starts XFADE before clip k-1 ends. */
	for (k = 1; k < n; k++) {
		off += sc[k - 1].seconds;
		if (mi_buf_addf(&f, ";[%s%u][v%u]xfade=transition=%s:duration="
		    "%.3f:offset=%.3f[x%u]", k == 1 ? "v" : "x", k == 1 ? 0 :
		    k - 1, k, fades[mi_gen_rng_below(&r, sizeof(fades) /
		    sizeof(fades[0]))], XFADE, off, k) == -1)
			goto oom;
	}
	if (mi_buf_addf(&f, ";[%s%u]null[out]", n > 1 ? "x" : "v",
	    n > 1 ? n - 1 : 0) == -1)
		goto oom;
	if (genre != NULL) {
		snprintf(file[MAXSCENES + 1], sizeof(file[0]), "%s/music.wav",
		    dir);
		if (mi_gen_soundtrack(prompt, genre, total, file[MAXSCENES + 1],
		    err) == -1) {
			rc = -1;
			goto out;
		}
		snprintf(input[n], sizeof(input[n]), "file:%s",
		    file[MAXSCENES + 1]);
	}
	snprintf(frames_s, sizeof(frames_s), "%u", frames);
	snprintf(alabel, sizeof(alabel), "%u:a", n);

	args[na++] = "ffmpeg";
	args[na++] = "-nostdin";
	args[na++] = "-hide_banner";
	args[na++] = "-loglevel";
	args[na++] = "error";
	args[na++] = "-nostats";
	args[na++] = "-progress";
	args[na++] = "pipe:1";
	args[na++] = "-y";
	for (k = 0; k < n + (genre != NULL); k++) {
		args[na++] = "-i";
		args[na++] = input[k];
	}
	args[na++] = "-filter_complex";
	args[na++] = f.buf;
	args[na++] = "-map";
	args[na++] = "[out]";
	args[na++] = "-frames:v";
	args[na++] = frames_s;
	if (genre != NULL) {
		args[na++] = "-map";
		args[na++] = alabel;
		args[na++] = "-c:a";
		args[na++] = "aac";
		args[na++] = "-b:a";
		args[na++] = "128k";
	} else
		args[na++] = "-an";
	args[na++] = "-c:v";
	args[na++] = "libx264";
	args[na++] = "-preset";
	args[na++] = "veryfast";
	args[na++] = "-crf";
	args[na++] = "21";
	/* x264's output depends on its thread count: fix it for determinism. */
	args[na++] = "-threads";
	args[na++] = "4";
	args[na++] = "-pix_fmt";
	args[na++] = "yuv420p";
	/* Same input, same bytes: no timestamps or version strings. */
	args[na++] = "-map_metadata";
	args[na++] = "-1";
	args[na++] = "-fflags";
	args[na++] = "+bitexact";
	args[na++] = "-flags:v";
	args[na++] = "+bitexact";
	args[na++] = "-flags:a";
	args[na++] = "+bitexact";
	args[na++] = "-movflags";
	args[na++] = "+faststart";
	args[na++] = "-f";
	args[na++] = "mp4";
	args[na++] = path;
	args[na] = NULL;
	{
		char logpath[4200];

		snprintf(logpath, sizeof(logpath), "%s/ffmpeg.log", dir);
		rc = run_ffmpeg(args, logpath, frames, prog, err);
		unlink(logpath);
	}
	if (rc == -1)
		unlink(path);
	goto out;
oom:
	rc = mi_err_set(err, EX_SOFTWARE, "out of memory");
out:
	for (k = 0; k < n; k++) {
		char cf[4200];

		snprintf(cf, sizeof(cf), "%s/caption%u.txt", dir, k);
		unlink(cf);
		if (file[k][0])
			unlink(file[k]);
	}
	if (file[MAXSCENES + 1][0])
		unlink(file[MAXSCENES + 1]);
	rmdir(dir);
	mi_buf_release(&f);
	return rc;
}

int
mi_gen_video(const char *prompt, const char *ref_image, double seconds,
    unsigned w, unsigned h, int loop, const struct mi_gen_progress *prog,
    const char *path, struct mi_err *err)
{
	struct mi_gen_scene one = { ref_image, NULL, seconds };

	return render(prompt, &one, 1, w, h, loop, NULL, prog, path, err);
}

int
mi_gen_video_scenes(const char *prompt, const struct mi_gen_scene *scenes,
    unsigned n, unsigned w, unsigned h, int loop, const char *genre,
    const struct mi_gen_progress *prog, const char *path, struct mi_err *err)
{
	return render(prompt ? prompt : "", scenes, n, w, h, loop, genre, prog,
	    path, err);
}
