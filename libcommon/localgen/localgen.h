/*
 * localgen/localgen.h - the built-in local generators: deterministic, offline
 * producers of real media files for every media type (the "local"
 * provider).
 *
 * Each generator writes a complete file at path (created or truncated) and
 * is deterministic: the same inputs give the same bytes.  The output varies
 * with the prompt: a SHA-256 of it seeds palette, shapes, tempo and key.
 * Each returns 0, or -1 with err filled: EX_DATAERR for bad parameters,
 * EX_IOERR for write failures, EX_UNAVAILABLE when ffmpeg cannot be run,
 * EX_SOFTWARE when it fails.  Nothing here prints or exits.
 *
 * Video is made by running ffmpeg (found on PATH, or at $MI_FFMPEG);
 * everything else is computed in-process.
 */
#ifndef MI_LOCALGEN_H
#define MI_LOCALGEN_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "buf.h"
#include "err.h"

struct mi_gen_progress {
	void (*fn)(void *arg, double fraction);	/* fraction in [0, 1] */
	void *arg;
};

/* PNG (RGB, 8 bits) of w x h, each 512..4096. */
int mi_gen_image(const char *prompt, unsigned w, unsigned h, int seamless,
    const char *path, struct mi_err *err);
/* Radiance .hdr, equirectangular width x width/2 (width 64..8192, even). */
int mi_gen_hdr(const char *prompt, unsigned width, const char *path,
    struct mi_err *err);
/* GLB 2.0, PBR metallic-roughness, at most max_triangles triangles. */
int mi_gen_glb(const char *prompt, unsigned max_triangles, const char *path,
    struct mi_err *err);
/*
 * The same with a named shape (MI_GEN_SHAPES; NULL: from the prompt's
 * words, else from its hash); pbr 0 leaves out the metallic-roughness and
 * normal textures.
 */
int mi_gen_model(const char *prompt, const char *shape,
    unsigned max_triangles, int pbr, const char *path, struct mi_err *err);
/* WAV, PCM 16-bit 44100 Hz mono, 0.5..5 s; sfx_type as in MI_GEN_SFX_TYPES. */
int mi_gen_sfx(const char *prompt, const char *sfx_type, double seconds,
    const char *path, struct mi_err *err);
/* Music as mi_gen_bgm, any length from 1 to 600 s (video soundtracks). */
int mi_gen_soundtrack(const char *prompt, const char *genre, double seconds,
    const char *path, struct mi_err *err);
/* A natural length in seconds for an sfx_type (1 for unknown types). */
double mi_gen_sfx_default(const char *sfx_type);
/* WAV, PCM 16-bit 22050 Hz mono, 30..120 s; genre as in MI_GEN_GENRES. */
int mi_gen_bgm(const char *prompt, const char *genre, double seconds,
    const char *path, struct mi_err *err);
/*
 * H.264 MP4 (yuv420p, +faststart) of w x h (even, 64..4096) lasting
 * seconds (4..15), a slow zoom and pan over ref_image (any image ffmpeg
 * reads) or over a generated picture when ref_image is NULL.  loop makes
 * the motion return to its start so the last frame flows into the first.
 * prog (may be NULL) is called as ffmpeg reports progress.
 */
int mi_gen_video(const char *prompt, const char *ref_image, double seconds,
    unsigned w, unsigned h, int loop, const struct mi_gen_progress *prog,
    const char *path, struct mi_err *err);

/* A scene of a video: an image (NULL: generated) shown for seconds. */
struct mi_gen_scene {
	const char *image;	/* any image ffmpeg reads, or NULL */
	const char *caption;	/* drawn near the bottom; NULL: none */
	double seconds;		/* at least 1 when there are several */
};

/*
 * Like mi_gen_video for 1..8 scenes joined by half-second crossfades; the
 * video lasts the sum of their seconds (4..15).  loop applies to a single
 * scene.  genre (MI_GEN_GENRES, or NULL for none) adds a music track (AAC)
 * of the video's length.
 */
int mi_gen_video_scenes(const char *prompt, const struct mi_gen_scene *scenes,
    unsigned n, unsigned w, unsigned h, int loop, const char *genre,
    const struct mi_gen_progress *prog, const char *path, struct mi_err *err);

/*
 * Generic entry: media_type and a params object as in SPEC.md requests
 * (consumes params; null means defaults).  Unknown params are ignored.
 * A reference_image of the form ".../api/assets/{tenant}/..." is read from
 * $ASSET_STORAGE_DIR; any other value is taken as a file path.  Beyond
 * SPEC.md: model_3d takes "shape"; video takes "scenes" ([{image, caption,
 * duration}]) and "music" (true or a genre).
 */
int mi_gen_request(const char *media_type, const char *prompt, jv params,
    const struct mi_gen_progress *prog, const char *path,
    struct mi_err *err);

/* The file extension and MIME type a media type produces, or NULL. */
const char *mi_gen_ext(const char *media_type);
const char *mi_gen_mime(const char *media_type);

#define MI_GEN_SFX_TYPES \
	"click, spin, flip, scratch, match, win, lose, countdown, reveal, confetti"
#define MI_GEN_GENRES \
	"electronic, orchestral, rock, jazz, ambient, pop, hip-hop"
#define MI_GEN_SHAPES "wheel, card, coin, stage, plate"

#endif
