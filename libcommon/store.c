/*
 * store.c - the content-addressed store (see store.h for the layout and
 * the crash-safety argument).
 *
 * New bytes go to an O_TMPFILE in {root}/{tenant}/.objects, hashed as they
 * are written.  On commit the content is sniffed, fsynced, linked as
 * .objects/{sha256}.{ext} (EEXIST: the tenant already has it) and then
 * hard-linked into {run}/{type}/.  A crash before the link leaves nothing:
 * an unnamed file disappears with its last descriptor.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
#include "names.h"
#include "store.h"
#include "banned.h"

#define HEAD_SIZE 8192
#define RETRIES 3

#define MAX_UNSYNCED 64

struct mi_store {
	char root[PATH_MAX];
	/* Directories with a new name, not fsynced yet (deferred commits). */
	char *unsynced[MAX_UNSYNCED];
	int nunsynced;
};

struct mi_store_tx {
	struct mi_store *st;
	struct mi_store_req req;
	char run[37];		/* req.run, lowercased */
	char objdir[PATH_MAX];
	char tmpname[PATH_MAX];	/* named fallback when O_TMPFILE fails */
	int fd;
	struct mi_sha256 *h;
	unsigned char head[HEAD_SIZE];
	size_t headlen;
	long long size;
	int adopted;		/* fd is the caller's file, linked as it is */
};

/* Backoff before retry i (1-based): 20, 80, 320 ms. */
static void
backoff(int i)
{
	mi_sleep_ms(20LL << (2 * (i - 1)));
}

/*
 * Storage errors are EX_IOERR (STORAGE_ERROR, retryable: the disk may have
 * room or work later) except those that trying again will not change
 * (permissions, a read-only filesystem, a file where a directory belongs):
 * EX_CANTCREAT, also STORAGE_ERROR but not retryable.
 */
static int
storage_code(int e)
{
	switch (e) {
	case EACCES:
	case EPERM:
	case EROFS:
	case ENOTDIR:
	case EEXIST:
	case ELOOP:
	case ENAMETOOLONG:
		return EX_CANTCREAT;
	default:
		return EX_IOERR;
	}
}

static int
storage_err(struct mi_err *err, const char *what, const char *path, int e)
{
	return mi_err_set(err, storage_code(e), "unable to %s '%s': %s", what,
	    path, strerror(e));
}

static int
fsync_dir(const char *dir, struct mi_err *err)
{
	int fd, r, e;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return storage_err(err, "open directory", dir, errno);
	r = fsync(fd);
	e = errno;
	close(fd);
	if (r == -1)
		return storage_err(err, "fsync directory", dir, e);
	return 0;
}

/* fsync_dir, retried like writes. */
static int
fsync_dir_retrying(const char *dir, struct mi_err *err)
{
	int i;

	for (i = 0; fsync_dir(dir, err) == -1; ) {
		if (++i > RETRIES)
			return -1;
		backoff(i);
	}
	return 0;
}

/*
 * mkdir -p; returns 0, -1 (mkdir failed) or -2 (an fsync failed, retried
 * already).  A directory made here is made durable by an fsync of its
 * parent (the new entry lives there), so a later link into it cannot
 * outlive, after a crash, the directory that holds it.
 */
static int
mkdirs_once(const char *path, struct mi_err *err)
{
	char tmp[PATH_MAX];
	char *p, *end;
	struct stat sb;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s", path) >= sizeof(tmp))
		return mi_err_set(err, EX_DATAERR, "path too long");
	/* Most often it is there already: one call, not one a component. */
	if (stat(tmp, &sb) == 0 && S_ISDIR(sb.st_mode))
		return 0;
	end = tmp + strlen(tmp);
	for (p = tmp + 1; p <= end; p++) {
		char *slash;

		if (*p != '/' && *p != '\0')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) == 0) {
			char parent[PATH_MAX];

			memcpy(parent, tmp, (size_t)(p - tmp) + 1);
			if ((slash = strrchr(parent, '/')) == NULL)
				memcpy(parent, ".", 2);
			else
				slash[slash == parent] = '\0';
			if (fsync_dir_retrying(parent, err) == -1)
				return -2;	/* retried already */
		} else if (errno != EEXIST)
			return storage_err(err, "create directory", tmp, errno);
		if (p < end)
			*p = '/';
	}
	return 0;
}

/* mkdirs_once, retried like writes. */
static int
mkdirs(const char *path, struct mi_err *err)
{
	int i, r;

	for (i = 0; (r = mkdirs_once(path, err)) != 0; ) {
		if (r == -2 || err->code == EX_DATAERR || ++i > RETRIES)
			return -1;
		backoff(i);
	}
	return 0;
}

struct mi_store *
mi_store_open(const char *root, struct mi_err *err)
{
	struct mi_store *st;
	struct stat sb;

	if (root == NULL)
		root = getenv("ASSET_STORAGE_DIR");
	if (root == NULL || *root == '\0') {
		mi_err_set(err, EX_CONFIG, "ASSET_STORAGE_DIR is not set");
		return NULL;
	}
	if (mkdirs(root, err) == -1)
		return NULL;
	if ((st = calloc(1, sizeof(*st))) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	if (realpath(root, st->root) == NULL || stat(st->root, &sb) == -1 ||
	    !S_ISDIR(sb.st_mode)) {
		mi_err_set_errno(err, EX_CONFIG, "bad store directory '%s'",
		    root);
		free(st);
		return NULL;
	}
	return st;
}

void
mi_store_close(struct mi_store *st)
{
	int i;

	if (st == NULL)
		return;
	for (i = 0; i < st->nunsynced; i++)
		free(st->unsynced[i]);
	free(st);
}

/* dir joins the directories waiting for mi_store_sync: 1, or 0 when
 * there is no room (the caller syncs it itself). */
static int
defer_dir(struct mi_store *st, const char *dir)
{
	int i;

	for (i = 0; i < st->nunsynced; i++)
		if (strcmp(st->unsynced[i], dir) == 0)
			return 1;
	if (st->nunsynced == MAX_UNSYNCED ||
	    (st->unsynced[st->nunsynced] = strdup(dir)) == NULL)
		return 0;
	st->nunsynced++;
	return 1;
}

int
mi_store_sync(struct mi_store *st, struct mi_err *err)
{
	while (st->nunsynced > 0) {
		if (fsync_dir_retrying(st->unsynced[st->nunsynced - 1],
		    err) == -1)
			return -1;
		free(st->unsynced[--st->nunsynced]);
	}
	return 0;
}

int
mi_store_unsynced(const struct mi_store *st)
{
	return st->nunsynced;
}

const char *
mi_store_root(const struct mi_store *st)
{
	return st->root;
}

static int
check_req(const struct mi_store_req *req, struct mi_err *err)
{
	if (!mi_name_tenant_ok(req->tenant))
		return mi_err_set(err, EX_DATAERR,
		    "bad tenant '%.64s': want [A-Za-z0-9_-]{1,255}",
		    req->tenant ? req->tenant : "");
	if (!mi_name_uuid_ok(req->run))
		return mi_err_set(err, EX_DATAERR,
		    "bad run '%.64s': want a UUID", req->run ? req->run : "");
	if (!mi_name_type_ok(req->type))
		return mi_err_set(err, EX_DATAERR,
		    "bad type '%.64s': want [A-Za-z0-9_-]{1,100}",
		    req->type ? req->type : "");
	return 0;
}

static struct mi_store_tx *
begin_dir(struct mi_store *st, const struct mi_store_req *req,
    struct mi_err *err)
{
	struct mi_store_tx *tx;
	int i;

	if (check_req(req, err) == -1)
		return NULL;
	if ((tx = calloc(1, sizeof(*tx))) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	tx->st = st;
	tx->req = *req;
	tx->fd = -1;
	/* One tree per run whatever the case it is spelt in (a UUID). */
	for (i = 0; i < 36; i++)
		tx->run[i] = (char)tolower((unsigned char)req->run[i]);
	tx->req.run = tx->run;
	if ((size_t)snprintf(tx->objdir, sizeof(tx->objdir), "%s/%s/.objects",
	    st->root, req->tenant) >= sizeof(tx->objdir)) {
		free(tx);
		mi_err_set(err, EX_DATAERR, "path too long");
		return NULL;
	}
	if (mkdirs(tx->objdir, err) == -1) {
		mi_store_abort(tx);
		return NULL;
	}
	if ((tx->h = mi_sha256_new(err)) == NULL) {
		mi_store_abort(tx);
		return NULL;
	}
	return tx;
}

/* The unnamed file new content is written to, in tx's objects. */
static int
open_tmp(struct mi_store_tx *tx, struct mi_err *err)
{
	int i;

	for (i = 0; i <= RETRIES; i++) {
		if (i > 0)
			backoff(i);
		tx->fd = open(tx->objdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
		if (tx->fd == -1 && (errno == EOPNOTSUPP || errno == EISDIR ||
		    errno == EINVAL)) {
			/*
			 * No O_TMPFILE on this filesystem: a named temp,
			 * made readable like the O_TMPFILE one (mkstemp
			 * gives 0600, and mi-serve may run as another user).
			 */
			if ((size_t)snprintf(tx->tmpname, sizeof(tx->tmpname),
			    "%s/.tmp.XXXXXX", tx->objdir) < sizeof(tx->tmpname) &&
			    (tx->fd = mkstemp(tx->tmpname)) != -1 &&
			    fchmod(tx->fd, 0644) == -1) {
				int e = errno;

				close(tx->fd);
				unlink(tx->tmpname);
				tx->fd = -1;
				errno = e;
			}
			if (tx->fd == -1)
				tx->tmpname[0] = '\0';
		}
		if (tx->fd != -1)
			break;
		storage_err(err, "create a file in", tx->objdir, errno);
		if (err->code != EX_IOERR)
			break;
	}
	return tx->fd == -1 ? -1 : 0;
}

struct mi_store_tx *
mi_store_begin(struct mi_store *st, const struct mi_store_req *req,
    struct mi_err *err)
{
	struct mi_store_tx *tx = begin_dir(st, req, err);

	if (tx && open_tmp(tx, err) == -1) {
		mi_store_abort(tx);
		return NULL;
	}
	return tx;
}

struct mi_store_tx *
mi_store_begin_adopt(struct mi_store *st, const struct mi_store_req *req,
    const char *path, struct mi_err *err)
{
	struct mi_store_tx *tx = begin_dir(st, req, err);
	struct stat fsb, dsb;
	int fd;

	if (tx == NULL)
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd != -1 && fstat(fd, &fsb) == 0 && S_ISREG(fsb.st_mode) &&
	    stat(tx->objdir, &dsb) == 0 && fsb.st_dev == dsb.st_dev &&
	    fsb.st_uid == geteuid()) {
		tx->fd = fd;
		tx->adopted = 1;
		return tx;
	}
	if (fd != -1)
		close(fd);
	if (open_tmp(tx, err) == -1) {
		mi_store_abort(tx);
		return NULL;
	}
	return tx;
}

void
mi_store_abort(struct mi_store_tx *tx)
{
	if (tx == NULL)
		return;
	if (tx->fd != -1)
		close(tx->fd);
	if (tx->tmpname[0])
		unlink(tx->tmpname);
	mi_sha256_free(tx->h);
	free(tx);
}

/* pwrite all of buf at off, retrying failures RETRIES times. */
static int
write_at(int fd, const void *buf, size_t len, long long off,
    const char *dir, struct mi_err *err)
{
	const char *p = buf;
	int tries = 0;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			off += n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (++tries > RETRIES)
			return storage_err(err, "write to", dir,
			    n == 0 ? EIO : errno);
		backoff(tries);
	}
	return 0;
}

static void
take_head(struct mi_store_tx *tx, const void *data, size_t len)
{
	size_t n;

	if (tx->headlen >= HEAD_SIZE)
		return;
	n = HEAD_SIZE - tx->headlen;
	if (n > len)
		n = len;
	memcpy(tx->head + tx->headlen, data, n);
	tx->headlen += n;
}

int
mi_store_write(struct mi_store_tx *tx, const void *data, size_t len,
    struct mi_err *err)
{
	if (tx->req.max_size && tx->size + (long long)len > tx->req.max_size)
		return mi_err_set(err, tx->req.from_provider ? EX_PROTOCOL :
		    EX_DATAERR, "content larger than %lld bytes",
		    tx->req.max_size);
	take_head(tx, data, len);
	mi_sha256_update(tx->h, data, len);
	if (!tx->adopted &&
	    write_at(tx->fd, data, len, tx->size, tx->objdir, err) == -1)
		return -1;
	tx->size += (long long)len;
	return 0;
}

/* Links the finished file as name; EEXIST is reported as 1. */
static int
link_tmp(struct mi_store_tx *tx, const char *name, struct mi_err *err)
{
	char proc[64];
	int i, r = -1;

	for (i = 0; i <= RETRIES; i++) {
		if (i > 0)
			backoff(i);
		if (tx->tmpname[0])
			r = link(tx->tmpname, name);
		else {
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", tx->fd);
			r = linkat(AT_FDCWD, proc, AT_FDCWD, name,
			    AT_SYMLINK_FOLLOW);
		}
		if (r == 0)
			return 0;
		if (errno == EEXIST)
			return 1;
	}
	return storage_err(err, "link", name, errno);
}

static int
mismatch(struct mi_store_tx *tx, struct mi_err *err)
{
	err->code = tx->req.from_provider ? EX_PROTOCOL : EX_DATAERR;
	return -1;
}

static int commit(struct mi_store_tx *tx, struct mi_store_result *res,
    int defer, struct mi_err *err);

int
mi_store_commit(struct mi_store_tx *tx, struct mi_store_result *res,
    struct mi_err *err)
{
	return commit(tx, res, 0, err);
}

int
mi_store_commit_deferred(struct mi_store_tx *tx, struct mi_store_result *res,
    struct mi_err *err)
{
	return commit(tx, res, 1, err);
}

static int
commit(struct mi_store_tx *tx, struct mi_store_result *res, int defer,
    struct mi_err *err)
{
	const struct mi_mime *m, *declared;
	char obj[PATH_MAX], dir[PATH_MAX];
	struct stat sb;
	int i, r, existed;

	memset(res, 0, sizeof(*res));
	if (tx->size == 0) {
		mi_err_set(err, 0, "empty content (0 bytes)");
		mismatch(tx, err);
		goto fail;
	}
	if ((m = mi_sniff(tx->head, tx->headlen, err)) == NULL) {
		if (tx->req.from_provider)
			err->code = EX_PROTOCOL;
		goto fail;
	}
	declared = mi_mime_by_ext(tx->req.declared_ext);
	if (declared && declared != m) {
		mi_err_set(err, 0, "content is %s, not the declared %s",
		    m->type, declared->type);
		mismatch(tx, err);
		goto fail;
	}
	if (!mi_type_accepts(tx->req.type, m)) {
		mi_err_set(err, 0, "content is %s, which type '%s' does not take",
		    m->type, tx->req.type);
		mismatch(tx, err);
		goto fail;
	}
	/* The file holds exactly the bytes hashed, nothing after them. */
	if (fstat(tx->fd, &sb) == -1 || (long long)sb.st_size != tx->size) {
		mi_err_set(err, EX_SOFTWARE, "stored size differs from the "
		    "hashed size in '%s'", tx->objdir);
		goto fail;
	}
	/* An adopted file gets the mode of the store's files (mi-serve may
	 * run as another user). */
	if (tx->adopted && fchmod(tx->fd, 0644) == -1) {
		storage_err(err, "set the mode of a file for", tx->objdir,
		    errno);
		goto fail;
	}
	for (i = 0; fsync(tx->fd) == -1; ) {
		if (++i > RETRIES) {
			storage_err(err, "fsync a file in", tx->objdir, errno);
			goto fail;
		}
		backoff(i);
	}
	mi_sha256_final(tx->h, res->hash);
	res->mime = m;
	res->size = tx->size;
	if ((size_t)snprintf(obj, sizeof(obj), "%s/%s.%s", tx->objdir,
	    res->hash, m->ext) >= sizeof(obj)) {
		mi_err_set(err, EX_DATAERR, "path too long");
		goto fail;
	}
	if ((size_t)snprintf(res->rel, sizeof(res->rel), "%s/%s/%s/%s.%s",
	    tx->req.tenant, tx->req.run, tx->req.type, res->hash, m->ext) >=
	    sizeof(res->rel) || (size_t)snprintf(dir, sizeof(dir), "%s/%s/%s/%s",
	    tx->st->root, tx->req.tenant, tx->req.run, tx->req.type) >=
	    sizeof(dir) || (size_t)snprintf(res->path, sizeof(res->path),
	    "%s/%s", tx->st->root, res->rel) >= sizeof(res->path)) {
		mi_err_set(err, EX_DATAERR, "path too long");
		goto fail;
	}
	/* The run's directory first: a failure there leaves no object. */
	if (mkdirs(dir, err) == -1)
		goto fail;
	if ((existed = link_tmp(tx, obj, err)) == -1)
		goto fail;
	if (!existed && !(defer && defer_dir(tx->st, tx->objdir)) &&
	    fsync_dir_retrying(tx->objdir, err) == -1)
		goto fail;
	for (i = 0; (r = link(obj, res->path)) == -1 && errno != EEXIST; ) {
		if (++i > RETRIES) {
			storage_err(err, "link", res->path, errno);
			goto fail;
		}
		backoff(i);
	}
	if (r == 0 && !(defer && defer_dir(tx->st, dir)) &&
	    fsync_dir_retrying(dir, err) == -1)
		goto fail;
	res->deduplicated = existed;
	mi_store_abort(tx);
	return 0;
fail:
	mi_store_abort(tx);
	return -1;
}

/*
 * Regular files: one thread copies in the kernel (copy_file_range), chunk
 * after chunk, while this one hashes what the copier has written, read
 * back from the new file (page cache).  The hash is of the bytes that
 * will be linked, whatever happens to the input meanwhile; copying is
 * faster than hashing, so storing costs little more than hashing alone.
 * An input whose size, mtime or ctime changed during the copy is stored
 * again from the start (it would be a mix of two versions).
 */
#define CHUNK (8LL << 20)

struct copier {
	int in, out;
	long long size;
	const char *dir;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	long long done;		/* bytes copied, from 0: under lock */
	int failed;		/* under lock */
	int quit;		/* the hasher gave up: under lock */
	struct mi_err err;
};

static int
copy_chunk(struct copier *c, long long off, size_t len, struct mi_err *err)
{
	int tries = 0;

	while (len > 0) {
		loff_t io = off, oo = off;
		ssize_t n = copy_file_range(c->in, &io, c->out, &oo, len, 0);

		if (n > 0) {
			off += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return mi_err_set(err, EX_IOERR,
			    "input ended early: it changed while being stored");
		if (errno == EINTR)
			continue;
		if (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
		    errno == EOPNOTSUPP) {
			/* No in-kernel copy here: read and write. */
			char buf[1 << 16];
			ssize_t r = pread(c->in, buf, sizeof(buf) < len ?
			    sizeof(buf) : len, (off_t)off);

			if (r == 0)
				return mi_err_set(err, EX_IOERR, "input ended "
				    "early: it changed while being stored");
			if (r < 0)
				return storage_err(err, "read", "input", errno);
			if (write_at(c->out, buf, (size_t)r, off, c->dir,
			    err) == -1)
				return -1;
			off += r;
			len -= (size_t)r;
			continue;
		}
		if (++tries > RETRIES)
			return storage_err(err, "write to", c->dir, errno);
		backoff(tries);
	}
	return 0;
}

static void *
copier_main(void *arg)
{
	struct copier *c = arg;
	struct mi_err err = MI_ERR_INIT;
	long long off = 0, chunk = 1 << 20;

	while (off < c->size) {
		long long n = c->size - off < chunk ? c->size - off : chunk;
		int r, quit;

		/* Small chunks first: the hasher starts sooner. */
		if (chunk < CHUNK)
			chunk *= 2;

		pthread_mutex_lock(&c->lock);
		quit = c->quit;
		pthread_mutex_unlock(&c->lock);
		if (quit)
			break;
		r = copy_chunk(c, off, (size_t)n, &err);
		pthread_mutex_lock(&c->lock);
		if (r == -1) {
			c->err = err;
			c->failed = 1;
		} else
			c->done = off + n;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->lock);
		if (r == -1)
			break;
		/* Start writeback now so the final fsync has little left. */
		sync_file_range(c->out, off, n, SYNC_FILE_RANGE_WRITE);
		off += n;
	}
	return NULL;
}

/* Waits until the copier has copied past off; returns that end, or -1. */
static long long
copied_past(struct copier *c, long long off)
{
	long long done;

	pthread_mutex_lock(&c->lock);
	while (c->done <= off && !c->failed)
		pthread_cond_wait(&c->cond, &c->lock);
	done = c->failed ? -1 : c->done;
	pthread_mutex_unlock(&c->lock);
	return done;
}

static int
same_file_state(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size &&
	    a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	    a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	    a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	    a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * One attempt: copies and hashes into a new transaction.  Returns the
 * transaction ready to commit, or NULL (err filled; *changed set when the
 * input changed meanwhile).
 */
static struct mi_store_tx *
copy_regular(struct mi_store *st, const struct mi_store_req *req, int fd,
    const struct stat *before, char *buf, size_t bufsz, int *changed,
    struct mi_err *err)
{
	struct mi_store_tx *tx;
	struct copier c;
	struct stat after;
	pthread_t th;
	long long off = 0, size = (long long)before->st_size;
	int started = 0, ok = 1;

	*changed = 0;
	if ((tx = mi_store_begin(st, req, err)) == NULL)
		return NULL;
	memset(&c, 0, sizeof(c));
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	c.in = fd;
	c.out = tx->fd;
	c.size = size;
	c.dir = tx->objdir;
	if (size > 0 && pthread_create(&th, NULL, copier_main, &c) == 0)
		started = 1;
	else if (size > 0)
		copier_main(&c);
	while (off < size) {
		long long end = copied_past(&c, off);

		if (end == -1) {
			*err = c.err;
			ok = 0;
			break;
		}
		while (off < end) {
			size_t want = end - off < (long long)bufsz ?
			    (size_t)(end - off) : bufsz;
			ssize_t n = pread(tx->fd, buf, want, (off_t)off);

			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0) {
				storage_err(err, "read back a file in",
				    tx->objdir, n == 0 ? EIO : errno);
				ok = 0;
				break;
			}
			take_head(tx, buf, (size_t)n);
			mi_sha256_update(tx->h, buf, (size_t)n);
			off += n;
		}
		if (!ok)
			break;
	}
	if (started) {
		pthread_mutex_lock(&c.lock);
		c.quit = 1;
		pthread_mutex_unlock(&c.lock);
		pthread_join(th, NULL);
	}
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);
	if (fstat(fd, &after) == 0 && !same_file_state(before, &after)) {
		*changed = 1;
		mi_err_set(err, EX_IOERR, "input changed while being stored");
		ok = 0;
	}
	if (!ok) {
		mi_store_abort(tx);
		return NULL;
	}
	tx->size = off;
	return tx;
}

static int
put_regular(struct mi_store *st, const struct mi_store_req *req, int fd,
    const struct stat *sb, struct mi_store_result *res, struct mi_err *err)
{
	struct mi_store_tx *tx = NULL;
	struct stat before = *sb;
	size_t bufsz = 1 << 20;
	char *buf;
	int i, changed = 0;

	if (req->max_size && before.st_size > req->max_size)
		return mi_err_set(err, req->from_provider ? EX_PROTOCOL :
		    EX_DATAERR, "content larger than %lld bytes", req->max_size);
	if ((buf = malloc(bufsz)) == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (i = 0; i <= RETRIES; i++) {
		if (i > 0) {
			backoff(i);
			if (fstat(fd, &before) == -1) {
				storage_err(err, "stat", "input", errno);
				break;
			}
		}
		tx = copy_regular(st, req, fd, &before, buf, bufsz, &changed,
		    err);
		if (tx != NULL || !changed)
			break;
	}
	free(buf);
	if (tx == NULL)
		return -1;
	return mi_store_commit(tx, res, err);
}

int
mi_store_put_fd(struct mi_store *st, const struct mi_store_req *req, int fd,
    struct mi_store_result *res, struct mi_err *err)
{
	struct mi_store_tx *tx;
	struct stat sb;
	char *buf;
	const size_t bufsz = 256 * 1024;

	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    lseek(fd, 0, SEEK_CUR) == 0)
		return put_regular(st, req, fd, &sb, res, err);
	if ((tx = mi_store_begin(st, req, err)) == NULL)
		return -1;
	if ((buf = malloc(bufsz)) == NULL) {
		mi_store_abort(tx);
		return mi_err_set(err, EX_OSERR, "out of memory");
	}
	for (;;) {
		ssize_t n = read(fd, buf, bufsz);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			storage_err(err, "read", "input", errno);
			goto fail;
		}
		if (n == 0)
			break;
		if (mi_store_write(tx, buf, (size_t)n, err) == -1)
			goto fail;
	}
	free(buf);
	return mi_store_commit(tx, res, err);
fail:
	free(buf);
	mi_store_abort(tx);
	return -1;
}

int
mi_store_link(struct mi_store *st, const struct mi_store_req *req,
    const char *hash, const char *ext, struct mi_store_result *res,
    struct mi_err *err)
{
	const struct mi_mime *m = mi_mime_by_ext(ext);
	char obj[PATH_MAX], dir[PATH_MAX];
	struct stat sb;
	int i, r;

	memset(res, 0, sizeof(*res));
	if (check_req(req, err) == -1)
		return -1;
	if (!mi_name_hash_ok(hash) || m == NULL)
		return mi_err_set(err, EX_DATAERR, "bad content name '%.64s.%.8s'",
		    hash, ext ? ext : "");
	if (!mi_type_accepts(req->type, m))
		return mi_err_set(err, EX_DATAERR, "content is %s, which type "
		    "'%s' does not take", m->type, req->type);
	if ((size_t)snprintf(obj, sizeof(obj), "%s/%s/.objects/%s.%s",
	    st->root, req->tenant, hash, m->ext) >= sizeof(obj) ||
	    (size_t)snprintf(res->rel, sizeof(res->rel), "%s/%s/%s/%s.%s",
	    req->tenant, req->run, req->type, hash, m->ext) >=
	    sizeof(res->rel) || (size_t)snprintf(dir, sizeof(dir),
	    "%s/%s/%s/%s", st->root, req->tenant, req->run, req->type) >=
	    sizeof(dir) || (size_t)snprintf(res->path, sizeof(res->path),
	    "%s/%s", st->root, res->rel) >= sizeof(res->path))
		return mi_err_set(err, EX_DATAERR, "path too long");
	if (stat(obj, &sb) == -1 || !S_ISREG(sb.st_mode) || sb.st_size <= 0)
		return mi_err_set(err, EX_NOINPUT, "no stored copy of %s.%s",
		    hash, m->ext);
	if (mkdirs(dir, err) == -1)
		return -1;
	for (i = 0; (r = link(obj, res->path)) == -1 && errno != EEXIST; ) {
		if (errno == ENOENT)
			return mi_err_set(err, EX_NOINPUT, "no stored copy of "
			    "%s.%s", hash, m->ext);
		if (++i > RETRIES)
			return storage_err(err, "link", res->path, errno);
		backoff(i);
	}
	if (r == 0 && fsync_dir_retrying(dir, err) == -1)
		return -1;
	snprintf(res->hash, sizeof(res->hash), "%s", hash);
	res->mime = m;
	res->size = (long long)sb.st_size;
	res->deduplicated = 1;
	return 0;
}

int
mi_store_uri(const char *rel, char *out, size_t outsz)
{
	const char *pub = getenv("MI_PUBLIC_URL");
	size_t n;
	int r;

	if (pub == NULL)
		pub = "";
	n = strlen(pub);
	while (n > 0 && pub[n - 1] == '/')
		n--;
	r = snprintf(out, outsz, "%.*s/api/assets/%s", (int)n, pub, rel);
	return r < 0 || (size_t)r >= outsz ? -1 : 0;
}
