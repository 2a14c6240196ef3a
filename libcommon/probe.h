/*
 * probe.h - what a stored result really is, checked against what was
 * asked, and fitted to a game.
 *
 * mi_probe_file reads a file's media facts: its own bounded readers for
 * image headers (PNG, JPEG, WebP, KTX2, Radiance HDR, OpenEXR) and for
 * the glTF JSON of a model (GLB or .gltf); libavformat in a forked child
 * (with a time limit and a cap on what it may print; $MI_FFPROBE runs
 * that program instead) for audio and video.
 * Nothing a file says about its own sizes is trusted: every offset and
 * length is checked against the file and against fixed caps.
 *
 * mi_probe_check compares the facts with the request's params and gives
 * named warnings; mi_probe_stored is the one call at the point of
 * storing (mi-fetch, mi-store): facts and warnings into the artifact's
 * metadata, the warnings into the step's debug output, and a model over
 * its triangle budget (or asked to be compressed) simplified with
 * gltfpack and stored as a second file, the original recorded as its own
 * artifact.
 *
 * Ownership follows jv's rule: jv arguments are consumed unless marked
 * borrowed; a returned jv belongs to the caller.
 */
#ifndef MI_PROBE_H
#define MI_PROBE_H

#include <jv.h>

#include "db.h"
#include "err.h"
#include "mime.h"
#include "store.h"

/*
 * Facts about the file at path, read as type mime: an object such as
 * {"kind":"image","format":"png","width":1024,"height":1024,"channels":4}.
 * Unknown types give {"kind":"other"}; a file that cannot be read gives
 * the facts found so far plus "error" (a string).  Never fails.
 */
jv mi_probe_file(const char *path, const struct mi_mime *mime);

/*
 * Warnings [{"code","message"}] for facts media (borrowed) against
 * request (borrowed: media_type, params).  Codes: SIZE_MISMATCH,
 * DURATION_MISMATCH, ASPECT_MISMATCH, TRIANGLES_OVER_BUDGET, PBR_MISSING.
 */
jv mi_probe_check(jv media, jv request);

/* Whether request (borrowed) has "strict": true. */
int mi_probe_strict(jv request);

/*
 * The point of storing: probes res, checks it against request
 * (consumed; null when there is none), and adds "media" and "warnings"
 * to the "metadata" object of *extra (the extra of mi_artifact_record).
 * A GLB over params.max_triangles, or with params.compress, is fitted:
 * the original is recorded as its own artifact (with *extra's fields),
 * the fitted file is stored, *res becomes it, and *extra's metadata
 * names the original in "simplified_from".  Warnings are copied into
 * app.run_steps.debug of the request's run_step_id where that column
 * exists.
 *
 * Returns 0; 1 when warnings remain and the request is strict (err holds
 * the PROVIDER_ERROR message naming them; *extra is filled anyway); -1
 * with err when the database failed.
 */
int mi_probe_stored(struct mi_db *db, struct mi_store *st,
    const struct mi_store_req *req, struct mi_store_result *res, jv request,
    jv *extra, struct mi_err *err);

/*
 * A strict result refused: the next provider of the failed job row's
 * chain (borrowed; its "fallback" and "request") gets a new job, driven
 * to its end with the job runner.  Returns the final job row (completed,
 * or failed with "error"), or jv_null() when the chain has no provider
 * left; jv_invalid() with err when the database failed.
 */
jv mi_probe_next(struct mi_db *db, jv failed_job, struct mi_err *err);

/*
 * Runs argv (no shell) with stdin from /dev/null, stdout captured into a
 * string of at most max_out bytes (more is an error), stderr's last line
 * kept for messages, killed after timeout_ms.  Returns the output, or
 * jv_invalid() with err (EX_UNAVAILABLE: the program is missing).
 */
jv mi_probe_run(const char *const *argv, size_t max_out, long timeout_ms,
    struct mi_err *err);

/* Readers of probe_image.c and probe_glb.c, on an open file. */
jv mi_probe_image_fd(int fd, long long off, long long len, const char *ext);
jv mi_probe_gltf_fd(int fd, long long size, int binary);

#endif
