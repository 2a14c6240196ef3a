/*
 * store.h - the content-addressed asset store on the local filesystem.
 *
 * Layout: {root}/{tenant}/{run}/{type}/{sha256}.{ext}.  Each tenant has one
 * canonical copy of each content under {root}/{tenant}/.objects/, and every
 * run path is a hard link to it, so content saved again by the same tenant
 * costs no bytes.  New content is written to an unnamed O_TMPFILE in the
 * target directory while it is hashed, fsynced, then linked into place and
 * the directory fsynced: a crash never leaves a partial file under a final
 * name, nor a stray temporary file.  linkat() never replaces, so concurrent
 * saves of the same content all succeed and leave one file.
 *
 * Write failures are retried 3 times with backoff, then reported with code
 * EX_IOERR and the error name "STORAGE_ERROR".
 */
#ifndef MI_STORE_H
#define MI_STORE_H

#include <limits.h>
#include <stddef.h>

#include "err.h"
#include "mime.h"

struct mi_store;
struct mi_store_tx;

struct mi_store_req {
	const char *tenant;
	const char *run;
	const char *type;
	const char *declared_ext;	/* from a file name; NULL if none */
	int from_provider;	/* mismatches are PROVIDER_ERROR, not VALIDATION_ERROR */
	long long max_size;	/* 0: no limit */
};

struct mi_store_result {
	char hash[65];
	const struct mi_mime *mime;
	long long size;
	int deduplicated;	/* the tenant already had this content */
	char rel[600];		/* tenant/run/type/hash.ext */
	char path[PATH_MAX];	/* root/rel */
};

/* root NULL: $ASSET_STORAGE_DIR (error 78 when unset). */
struct mi_store *mi_store_open(const char *root, struct mi_err *err);
void mi_store_close(struct mi_store *st);
const char *mi_store_root(const struct mi_store *st);

/* Streaming: begin, write chunks, commit (or abort). */
struct mi_store_tx *mi_store_begin(struct mi_store *st,
    const struct mi_store_req *req, struct mi_err *err);
int mi_store_write(struct mi_store_tx *tx, const void *data, size_t len,
    struct mi_err *err);
int mi_store_commit(struct mi_store_tx *tx, struct mi_store_result *res,
    struct mi_err *err);	/* frees tx, success or not */
void mi_store_abort(struct mi_store_tx *tx);
/*
 * The same, but the directories that got a new name are not fsynced yet:
 * they wait, each named once however many commits touched it, for
 * mi_store_sync(), which must succeed before anything that points at
 * these files (a row) is written.  The file's own bytes are durable
 * before its name exists, as always.  A store holds up to 64 directories
 * waiting; a commit that finds no room syncs its own at once.
 */
int mi_store_commit_deferred(struct mi_store_tx *tx,
    struct mi_store_result *res, struct mi_err *err);
/* fsyncs every directory waiting (retried like writes); 0, or -1 and
 * err (they stay waiting, for a next try). */
int mi_store_sync(struct mi_store *st, struct mi_err *err);
/* Directories waiting for mi_store_sync(). */
int mi_store_unsynced(const struct mi_store *st);
/*
 * The same for a file that is already whole on the store's filesystem
 * (a spool file): its bytes are written to tx as they are read from path,
 * which are hashed and checked as usual, but not copied; the commit links
 * path's own inode into place.  The caller must never write to path again
 * (it may remove it).  A file on another filesystem, or not a regular
 * file of this user, is copied as by mi_store_begin.
 */
struct mi_store_tx *mi_store_begin_adopt(struct mi_store *st,
    const struct mi_store_req *req, const char *path, struct mi_err *err);

/*
 * Whole file descriptor.  A regular file is copied in the kernel and hashed
 * as read back from the copy, so the hash is always of the stored bytes;
 * one that changes meanwhile (size, mtime, ctime) is copied again, up to 3
 * times, then reported as "input changed while being stored" (EX_IOERR).
 */
int mi_store_put_fd(struct mi_store *st, const struct mi_store_req *req,
    int fd, struct mi_store_result *res, struct mi_err *err);

/*
 * Links content the tenant already has (its canonical copy, by hash and
 * extension) into req's run and type: no byte is copied.  res is filled
 * as by a save with deduplicated set.  A missing copy is EX_NOINPUT, a
 * type that does not take the content EX_DATAERR.
 */
int mi_store_link(struct mi_store *st, const struct mi_store_req *req,
    const char *hash, const char *ext, struct mi_store_result *res,
    struct mi_err *err);

/* "/api/assets/" + rel, prefixed with $MI_PUBLIC_URL when set. */
int mi_store_uri(const char *rel, char *out, size_t outsz);

#endif
