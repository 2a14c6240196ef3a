/*
 * zipread.h - a strict, bounded reader of zip central directories, for
 * serving entries of stored bundles without unpacking them.
 *
 * The bytes of a stored zip are untrusted input: mi_zip_open() checks the
 * end record, the central directory and every local header against each
 * other and refuses the archive as a whole on any structural fault (no
 * end record, a directory outside the file, ZIP64, several disks, a local
 * header that disagrees with its central one, entries that overlap).  An
 * entry that is well formed but must not be served (a name outside the
 * grammar below, a symbolic link, a directory, an encrypted entry, a
 * method other than stored or deflate, a size over the limits, a name
 * given twice) is kept but marked refused: mi_zip_find() answers NULL for
 * it, exactly as for a name that is not there.
 *
 * Entry names: 1 to MI_ZIP_MAX_NAME bytes of A-Z a-z 0-9 - . _ ~ ! $ & '
 * ( ) * + , ; = : @ and '/' between non-empty segments that are not "."
 * or ".." (so a name is its own URL path, needs no decoding and cannot
 * leave the archive); no leading '/'.
 *
 * Memory: a directory holds at most MI_ZIP_MAX_ENTRIES entries and
 * MI_ZIP_MAX_CD bytes of names.  A deflated entry is inflated only into a
 * buffer of its declared size, which is at most MI_ZIP_MAX_INFLATE bytes
 * and at most 1032 times its compressed size (deflate's own limit): a
 * stream that would produce more, or fewer, bytes fails.
 *
 * Ownership: the directory is immutable after mi_zip_open(); entries and
 * their names live as long as it does, and it may be shared by threads.
 */
#ifndef MI_ZIPREAD_H
#define MI_ZIPREAD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MI_ZIP_MAX_ENTRIES 16384
#define MI_ZIP_MAX_CD (4 << 20)
#define MI_ZIP_MAX_NAME 1024
#define MI_ZIP_MAX_INFLATE (32LL << 20)

/* Reads exactly len bytes at off; 0, or -1 on error or a short read. */
typedef int (*mi_zip_read_fn)(void *arg, void *buf, size_t len, uint64_t off);

struct mi_zip_entry {
	const char *name; /* NUL-terminated */
	size_t name_len;
	unsigned method; /* 0 stored, 8 deflate */
	uint32_t crc;
	uint64_t csize, usize;
	uint64_t header_off; /* local header */
	uint64_t data_off; /* first byte of the (compressed) data */
	const char *refused; /* NULL, or why it is never served */
};

struct mi_zip;

/* Parses the archive of size bytes read through rd; NULL with err (65). */
struct mi_zip *
mi_zip_open(mi_zip_read_fn rd, void *arg, uint64_t size, struct mi_err *err);
void mi_zip_free(struct mi_zip *z);

/* The servable entry called name (len bytes), or NULL. */
const struct mi_zip_entry *
mi_zip_find(const struct mi_zip *z, const char *name, size_t len);
/* All entries, refused ones included, sorted by name. */
size_t mi_zip_count(const struct mi_zip *z);
const struct mi_zip_entry *mi_zip_entry_at(const struct mi_zip *z, size_t i);
/* Bytes the directory takes in memory (for bounded caches). */
size_t mi_zip_footprint(const struct mi_zip *z);

/*
 * The whole content of e (usize bytes) into out (outsz >= e->usize),
 * inflated when deflated, its CRC-32 checked.  0, or -1 with err (65).
 */
int mi_zip_extract(const struct mi_zip_entry *e, mi_zip_read_fn rd, void *arg,
    void *out, size_t outsz, struct mi_err *err);

/* Whether name (len bytes) is in the entry-name grammar above. */
int mi_zip_name_ok(const char *name, size_t len);

/* An mi_zip_read_fn over a file descriptor (arg points at the int). */
int mi_zip_read_fd(void *arg, void *buf, size_t len, uint64_t off);

#endif
