/*
 * mime.c - the table of stored types and content sniffing.
 *
 * libmagic names most formats; signatures it does not know here (Radiance
 * HDR, KTX2, glTF JSON, MP4 brands it calls "application/octet-stream")
 * are checked first, from the bytes alone.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <magic.h>

#include "mime.h"
#include "banned.h"

static const struct mi_mime table[] = {
	{ "glb", "model/gltf-binary", "model" },
	{ "gltf", "model/gltf+json", "model" },
	{ "bin", "application/octet-stream", "data" },
	{ "ktx2", "image/ktx2", "image" },
	{ "hdr", "image/vnd.radiance", "hdr" },
	{ "exr", "image/x-exr", "hdr" },
	{ "png", "image/png", "image" },
	{ "jpg", "image/jpeg", "image" },
	{ "webp", "image/webp", "image" },
	{ "avif", "image/avif", "image" },
	{ "mp4", "video/mp4", "video" },
	{ "webm", "video/webm", "video" },
	{ "mp3", "audio/mpeg", "audio" },
	{ "wav", "audio/wav", "audio" },
	{ "ogg", "audio/ogg", "audio" },
	{ "json", "application/json", "data" },
	{ "zip", "application/zip", "data" },
	{ "wasm", "application/wasm", "data" },
	{ NULL, NULL, NULL }
};

/* Other names libmagic and servers use for the same types. */
static const struct {
	const char *alias, *type;
} aliases[] = {
	{ "audio/x-wav", "audio/wav" },
	{ "audio/vnd.wave", "audio/wav" },
	{ "audio/wave", "audio/wav" },
	{ "audio/mp3", "audio/mpeg" },
	{ "audio/x-mpeg", "audio/mpeg" },
	{ "video/ogg", "audio/ogg" },
	{ "application/ogg", "audio/ogg" },
	{ "image/x-exr", "image/x-exr" },
	{ "text/json", "application/json" },
	{ "application/x-zip-compressed", "application/zip" },
	{ NULL, NULL }
};

const struct mi_mime *
mi_mime_table(void)
{
	return table;
}

const struct mi_mime *
mi_mime_by_ext(const char *ext)
{
	const struct mi_mime *m;

	if (ext == NULL)
		return NULL;
	if (strcasecmp(ext, "jpeg") == 0)
		ext = "jpg";
	for (m = table; m->ext; m++)
		if (strcasecmp(m->ext, ext) == 0)
			return m;
	return NULL;
}

const struct mi_mime *
mi_mime_by_type(const char *type)
{
	const struct mi_mime *m;
	size_t n, i;

	if (type == NULL)
		return NULL;
	n = strcspn(type, "; ");
	for (i = 0; aliases[i].alias; i++)
		if (strlen(aliases[i].alias) == n &&
		    strncasecmp(aliases[i].alias, type, n) == 0) {
			type = aliases[i].type;
			n = strlen(type);
			break;
		}
	for (m = table; m->ext; m++)
		if (strlen(m->type) == n && strncasecmp(m->type, type, n) == 0)
			return m;
	return NULL;
}

static int
has(const void *head, size_t len, size_t off, const char *sig, size_t n)
{
	return len >= off + n && memcmp((const char *)head + off, sig, n) == 0;
}

/*
 * An MPEG-1/2 audio layer III frame header at h[off] (sync, a version
 * and a layer that exist, a bitrate and a sample rate that are allowed),
 * after the ID3v2 tag that may come first.  libmagic finds MP3 after
 * hundreds of other rules (165 us a file here); a header it would not
 * take goes to it all the same.
 */
static int
mp3_frame(const unsigned char *h, size_t len)
{
	size_t off = 0;

	if (len >= 10 && memcmp(h, "ID3", 3) == 0 && h[3] >= 2 && h[3] <= 4 &&
	    h[4] != 0xff && !((h[6] | h[7] | h[8] | h[9]) & 0x80))
		off = 10 + ((size_t)h[6] << 21 | (size_t)h[7] << 14 |
		    (size_t)h[8] << 7 | h[9]) + (h[5] & 0x10 ? 10 : 0);
	return off + 4 <= len && h[off] == 0xff && (h[off + 1] & 0xe0) == 0xe0 &&
	    (h[off + 1] & 0x18) != 0x08 &&	/* version: not reserved */
	    (h[off + 1] & 0x06) == 0x02 &&	/* layer III */
	    (h[off + 2] & 0xf0) != 0x00 && (h[off + 2] & 0xf0) != 0xf0 &&
	    (h[off + 2] & 0x0c) != 0x0c;
}

/*
 * Signatures checked before libmagic: the types mi stores most, found by
 * their fixed leading bytes (PNG's eight, JPEG's SOI and a marker), for
 * which libmagic would walk its rules first.
 */
static const struct mi_mime *
sniff_known(const unsigned char *h, size_t len)
{
	static const char ktx2[] = "\xabKTX 20\xbb\r\n\x1a\n";
	size_t i;

	if (has(h, len, 0, "\x89PNG\r\n\x1a\n", 8))
		return mi_mime_by_ext("png");
	if (has(h, len, 0, "\xff\xd8\xff", 3))
		return mi_mime_by_ext("jpg");
	if (has(h, len, 0, "glTF", 4) && len >= 12 && h[4] == 2)
		return mi_mime_by_ext("glb");
	if (has(h, len, 0, "#?RADIANCE", 10) || has(h, len, 0, "#?RGBE", 6))
		return mi_mime_by_ext("hdr");
	if (has(h, len, 0, ktx2, 12))
		return mi_mime_by_ext("ktx2");
	if (has(h, len, 0, "\x76\x2f\x31\x01", 4))
		return mi_mime_by_ext("exr");
	if (has(h, len, 0, "\0asm", 4))
		return mi_mime_by_ext("wasm");
	if (has(h, len, 4, "ftypavif", 8) || has(h, len, 4, "ftypavis", 8))
		return mi_mime_by_ext("avif");
	if (has(h, len, 4, "ftyp", 4))
		return mi_mime_by_ext("mp4");
	if (has(h, len, 0, "RIFF", 4) && has(h, len, 8, "WAVE", 4))
		return mi_mime_by_ext("wav");
	if (mp3_frame(h, len))
		return mi_mime_by_ext("mp3");
	if (has(h, len, 0, "RIFF", 4) && has(h, len, 8, "WEBP", 4))
		return mi_mime_by_ext("webp");
	/* A JSON object whose first key mentions "asset" is glTF. */
	for (i = 0; i < len && (h[i] == ' ' || h[i] == '\n' || h[i] == '\r' ||
	    h[i] == '\t'); i++)
		;
	if (i < len && h[i] == '{' && len - i > 8 &&
	    memmem(h + i, len - i, "\"asset\"", 7) != NULL &&
	    memmem(h + i, len - i, "\"version\"", 9) != NULL)
		return mi_mime_by_ext("gltf");
	return NULL;
}

static pthread_mutex_t magic_lock = PTHREAD_MUTEX_INITIALIZER;
static magic_t cookie;

const struct mi_mime *
mi_sniff(const void *head, size_t len, struct mi_err *err)
{
	const struct mi_mime *m;
	const char *type;
	char what[128];

	if (len == 0) {
		mi_err_set(err, EX_DATAERR, "empty content");
		return NULL;
	}
	if ((m = sniff_known(head, len)) != NULL)
		return m;
	pthread_mutex_lock(&magic_lock);
	if (cookie == NULL) {
		cookie = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);
		if (cookie != NULL && magic_load(cookie, NULL) != 0) {
			magic_close(cookie);
			cookie = NULL;
		}
	}
	if (cookie == NULL) {
		pthread_mutex_unlock(&magic_lock);
		mi_err_set(err, EX_SOFTWARE, "unable to load libmagic database");
		return NULL;
	}
	type = magic_buffer(cookie, head, len);
	if ((size_t)snprintf(what, sizeof(what), "%s",
	    type ? type : "unknown") >= sizeof(what))
		what[sizeof(what) - 1] = '\0';
	pthread_mutex_unlock(&magic_lock);
	if ((m = mi_mime_by_type(what)) != NULL &&
	    strcmp(m->ext, "bin") != 0)
		return m;
	mi_err_set(err, EX_DATAERR, "content is %s, not a known media type",
	    what);
	return NULL;
}

int
mi_type_accepts(const char *type, const struct mi_mime *m)
{
	static const struct {
		const char *word;
		const char *classes;
	} kinds[] = {
		{ "video", "video" },
		{ "audio", "audio" },
		{ "sfx", "audio" },
		{ "bgm", "audio" },
		{ "music", "audio" },
		{ "model", "model" },
		{ "environment", "hdr image" },
		{ "hdri", "hdr" },
		{ "texture", "image" },
		{ "image", "image" },
		{ NULL, NULL }
	};
	size_t i;

	if (type == NULL || m == NULL)
		return 0;
	for (i = 0; kinds[i].word; i++)
		if (strstr(type, kinds[i].word) != NULL)
			return strstr(kinds[i].classes, m->class) != NULL;
	return 1;
}
