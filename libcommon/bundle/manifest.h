/*
 * manifest.h - what the manifests of a game bundle and of a campaign
 * share: the canonical JSON their checksums cover, the rules a GameConfig
 * must follow, CSS colours, and the type of a file inside a bundle.
 *
 * Canonical JSON: the value with its top-level "checksum" key removed,
 * serialised with object keys sorted by their bytes, no whitespace, and
 * strings and numbers as jq writes them (for the integers and plain ASCII
 * text mi writes, that is also what Python's json.dumps(sort_keys=True,
 * separators=(",", ":")) writes).  A manifest's checksum is "sha256:"
 * followed by the 64 lowercase hex digits of the SHA-256 of those bytes.
 */
#ifndef MI_MANIFEST_H
#define MI_MANIFEST_H

#include <jv.h>

#include "buf.h"
#include "err.h"

/* "sha256:<64 hex>" of the canonical JSON of v (borrowed) into out[72]. */
int mi_manifest_checksum(jv v, char out[72], struct mi_err *err);

/* Whether s is "sha256:" + 64 lowercase hex digits. */
int mi_manifest_hash_ok(const char *s);

/* Whether s is a CSS colour: #rgb[a], #rrggbb[aa], rgb[a]()/hsl[a](), a
 * named colour, transparent or currentcolor. */
int mi_css_colour_ok(const char *s);

/*
 * Checks the GameConfig rules of seed 003 on cfg (borrowed): template_id
 * a non-empty string, settings.difficulty.level easy/medium/hard,
 * settings.difficulty.win_probability a number in [0, 1],
 * settings.duration_sec a number > 0, every visuals.colors value a CSS
 * colour.  Each broken rule adds one "path: what" line to problems.
 * Returns the number of broken rules.
 */
int mi_game_config_check(jv cfg, struct mi_buf *problems);

/* The Content-Type of a bundle entry, from its name's extension. */
const char *mi_bundle_content_type(const char *name);
/* Whether an entry of that type is worth deflating (text, JSON, SVG). */
int mi_bundle_deflate_type(const char *content_type);
/* The assets/ folder of a stored file's class: images, audio, video,
 * models or configs. */
const char *mi_bundle_kind(const char *mime_class);

#endif
