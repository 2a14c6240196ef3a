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
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
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

struct mi_store {
	char root[PATH_MAX];
};

struct mi_store_tx {
	struct mi_store *st;
	struct mi_store_req req;
	char objdir[PATH_MAX];
	char tmpname[PATH_MAX];	/* named fallback when O_TMPFILE fails */
	int fd;
	struct mi_sha256 *h;
	unsigned char head[HEAD_SIZE];
	size_t headlen;
	long long size;
};

/* Backoff before retry i (1-based): 20, 80, 320 ms. */
static void
backoff(int i)
{
	mi_sleep_ms(20LL << (2 * (i - 1)));
}

static int
storage_err(struct mi_err *err, const char *what, const char *path, int e)
{
	return mi_err_set(err, EX_IOERR, "unable to %s '%s': %s", what, path,
	    strerror(e));
}

static int
mkdirs(const char *path, struct mi_err *err)
{
	char tmp[PATH_MAX];
	char *p;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s", path) >= sizeof(tmp))
		return mi_err_set(err, EX_DATAERR, "path too long");
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) == -1 && errno != EEXIST)
			return storage_err(err, "create directory", tmp, errno);
		*p = '/';
	}
	if (mkdir(tmp, 0755) == -1 && errno != EEXIST)
		return storage_err(err, "create directory", tmp, errno);
	return 0;
}

static int
fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	if (fd == -1)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
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
	free(st);
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

struct mi_store_tx *
mi_store_begin(struct mi_store *st, const struct mi_store_req *req,
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
	if ((size_t)snprintf(tx->objdir, sizeof(tx->objdir), "%s/%s/.objects",
	    st->root, req->tenant) >= sizeof(tx->objdir)) {
		free(tx);
		mi_err_set(err, EX_DATAERR, "path too long");
		return NULL;
	}
	for (i = 0; i <= RETRIES; i++) {
		if (i > 0)
			backoff(i);
		if (mkdirs(tx->objdir, err) == -1)
			continue;
		tx->fd = open(tx->objdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
		if (tx->fd == -1 && (errno == EOPNOTSUPP || errno == EISDIR ||
		    errno == EINVAL)) {
			/* No O_TMPFILE on this filesystem: a named temp. */
			if ((size_t)snprintf(tx->tmpname, sizeof(tx->tmpname),
			    "%s/.tmp.XXXXXX", tx->objdir) < sizeof(tx->tmpname))
				tx->fd = mkstemp(tx->tmpname);
		}
		if (tx->fd != -1)
			break;
		storage_err(err, "create a file in", tx->objdir, errno);
	}
	if (tx->fd == -1 || (tx->h = mi_sha256_new(err)) == NULL) {
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
	if (write_at(tx->fd, data, len, tx->size, tx->objdir, err) == -1)
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

int
mi_store_commit(struct mi_store_tx *tx, struct mi_store_result *res,
    struct mi_err *err)
{
	const struct mi_mime *m, *declared;
	char obj[PATH_MAX], dir[PATH_MAX];
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
	if ((existed = link_tmp(tx, obj, err)) == -1)
		goto fail;
	if (!existed)
		fsync_dir(tx->objdir);
	if ((size_t)snprintf(res->rel, sizeof(res->rel), "%s/%s/%s/%s.%s",
	    tx->req.tenant, tx->req.run, tx->req.type, res->hash, m->ext) >=
	    sizeof(res->rel) || (size_t)snprintf(dir, sizeof(dir), "%s/%s/%s/%s",
	    tx->st->root, tx->req.tenant, tx->req.run, tx->req.type) >=
	    sizeof(dir) || (size_t)snprintf(res->path, sizeof(res->path),
	    "%s/%s", tx->st->root, res->rel) >= sizeof(res->path)) {
		mi_err_set(err, EX_DATAERR, "path too long");
		goto fail;
	}
	if (mkdirs(dir, err) == -1)
		goto fail;
	for (i = 0; (r = link(obj, res->path)) == -1 && errno != EEXIST; ) {
		if (++i > RETRIES) {
			storage_err(err, "link", res->path, errno);
			goto fail;
		}
		backoff(i);
	}
	if (r == 0)
		fsync_dir(dir);
	res->deduplicated = existed;
	mi_store_abort(tx);
	return 0;
fail:
	mi_store_abort(tx);
	return -1;
}

/*
 * Regular files: one thread copies in the kernel (copy_file_range) while
 * this one hashes; when hashing is done this thread takes copy chunks too.
 * Both cores stay busy, so storing costs little more than hashing alone.
 */
#define CHUNK (8LL << 20)

struct copier {
	int in, out;
	long long size;
	const char *dir;
	atomic_llong next;	/* next chunk to copy */
	atomic_int failed;
	pthread_mutex_t lock;
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
			return storage_err(err, "read", "input", EIO);
		if (errno == EINTR)
			continue;
		if (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
		    errno == EOPNOTSUPP) {
			/* No in-kernel copy here: read and write. */
			char buf[1 << 16];
			ssize_t r = pread(c->in, buf, sizeof(buf) < len ?
			    sizeof(buf) : len, (off_t)off);

			if (r <= 0)
				return storage_err(err, "read", "input",
				    r == 0 ? EIO : errno);
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
	long long i, nchunks = (c->size + CHUNK - 1) / CHUNK;

	while (!atomic_load(&c->failed) &&
	    (i = atomic_fetch_add(&c->next, 1)) < nchunks) {
		long long off = i * CHUNK;
		long long n = c->size - off < CHUNK ? c->size - off : CHUNK;

		if (copy_chunk(c, off, (size_t)n, &err) == -1) {
			pthread_mutex_lock(&c->lock);
			if (!atomic_load(&c->failed))
				c->err = err;
			atomic_store(&c->failed, 1);
			pthread_mutex_unlock(&c->lock);
			break;
		}
		/* Start writeback now so the final fsync has little left. */
		sync_file_range(c->out, off, n, SYNC_FILE_RANGE_WRITE);
	}
	return NULL;
}

static int
put_regular(struct mi_store *st, const struct mi_store_req *req, int fd,
    long long size, struct mi_store_result *res, struct mi_err *err)
{
	struct mi_store_tx *tx;
	struct copier c;
	pthread_t th;
	size_t bufsz = 1 << 20;
	char *buf;
	long long off = 0;
	int started = 0;

	if (req->max_size && size > req->max_size)
		return mi_err_set(err, req->from_provider ? EX_PROTOCOL :
		    EX_DATAERR, "content larger than %lld bytes", req->max_size);
	if ((tx = mi_store_begin(st, req, err)) == NULL)
		return -1;
	if ((buf = malloc(bufsz)) == NULL) {
		mi_store_abort(tx);
		return mi_err_set(err, EX_OSERR, "out of memory");
	}
	memset(&c, 0, sizeof(c));
	atomic_init(&c.next, 0);
	atomic_init(&c.failed, 0);
	pthread_mutex_init(&c.lock, NULL);
	c.in = fd;
	c.out = tx->fd;
	c.size = size;
	c.dir = tx->objdir;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (size > 0 && pthread_create(&th, NULL, copier_main, &c) == 0)
		started = 1;
	else if (size > 0)
		copier_main(&c);
	while (off < size) {
		ssize_t n = pread(fd, buf, bufsz, (off_t)off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			storage_err(err, "read", "input", n == 0 ? EIO : errno);
			break;
		}
		take_head(tx, buf, (size_t)n);
		mi_sha256_update(tx->h, buf, (size_t)n);
		off += n;
	}
	if (started) {
		copier_main(&c);	/* help with what is left to copy */
		pthread_join(th, NULL);
	}
	pthread_mutex_destroy(&c.lock);
	free(buf);
	if (off < size) {
		mi_store_abort(tx);
		return -1;
	}
	if (c.failed) {
		*err = c.err;
		mi_store_abort(tx);
		return -1;
	}
	tx->size = size;
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
		return put_regular(st, req, fd, (long long)sb.st_size, res, err);
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
	if (r == 0)
		fsync_dir(dir);
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
