/*
 * mime.h - the one table of stored file types: extension, Content-Type and
 * media class, and content sniffing (libmagic plus signatures libmagic does
 * not know: Radiance HDR, KTX2, glTF JSON).
 */
#ifndef MI_MIME_H
#define MI_MIME_H

#include <stddef.h>

#include "err.h"

struct mi_mime {
	const char *ext;	/* "glb" */
	const char *type;	/* "model/gltf-binary" */
	const char *class;	/* "model", "image", "video", "audio", "hdr", "data" */
};

/* Entry for an extension ("jpeg" is accepted for "jpg"); NULL if unknown. */
const struct mi_mime *mi_mime_by_ext(const char *ext);
/* Entry for a Content-Type (parameters ignored); NULL if unknown. */
const struct mi_mime *mi_mime_by_type(const char *type);
/* The table, terminated by an entry with ext NULL. */
const struct mi_mime *mi_mime_table(void);

/*
 * Sniffs the first bytes of a file (pass at least 4 KiB when available).
 * Returns the entry, or NULL with err (65) naming what the bytes look like.
 */
const struct mi_mime *mi_sniff(const void *head, size_t len,
    struct mi_err *err);

/*
 * Whether a file of class/ext may be stored under an artifact or media type
 * ("intro_video", "model_3d", "audio_sfx", "texture", ...).  Types that name
 * no media kind accept any known file.
 */
int mi_type_accepts(const char *type, const struct mi_mime *m);

#endif
