/*
 * bundle/gather.c - a struct mi_bundle (build.h): the artifacts a bundle
 * or a campaign is made of, checked against the store and the database,
 * the files it reads and writes, and what leaves it (records, notes,
 * fatal errors).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifact.h"
#include "buf.h"
#include "bundle/gather.h"
#include "bundle/manifest.h"
#include "hash.h"
#include "json.h"
#include "mime.h"
#include "banned.h"

struct mi_bundle *
mi_bundle_new(const struct mi_bundle_io *io, const char *tenant)
{
	/* Zeroed: no files, no database or store yet, and jv null (0). */
	struct mi_bundle *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->io = *io;
	c->artifacts = jv_null();
	c->conf = jv_null();
	if (tenant != NULL)
		snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
	return c;
}

void
mi_bundle_free(struct mi_bundle *c)
{
	if (c == NULL)
		return;
	mi_db_close(c->db);
	mi_store_close(c->st);
	free(c);
}

int
mi_bundle_failed(const struct mi_bundle *c)
{
	return c->failed ? 1 : 0;
}

void
bnd_out(struct mi_bundle *c, jv rec)
{
	c->io.out(c->io.arg, rec);
}

void
bnd_note(struct mi_bundle *c, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mi_note_send(c->io.note, c->io.arg, level, fmt, ap);
	va_end(ap);
}

void
bnd_die(struct mi_bundle *c, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->io.fatal(c->io.arg, code, msg);
}

void
bnd_die_err(struct mi_bundle *c, const struct mi_err *err)
{
	c->io.fatal(c->io.arg, err->code ? err->code : EX_SOFTWARE, err->msg);
}

void
mi_bundle_pass(struct mi_bundle *c, jv rec)
{
	bnd_out(c, rec);
	c->failed = 1;
}


void
mi_bundle_error(struct mi_bundle *c, jv rec, const char *code, const char *msg)
{
	bnd_note(c, MI_BUNDLE_WARN, "%s", msg);
	bnd_out(c, mi_json_error(rec, code, msg, 0));
	c->failed = 1;
}

void
bnd_open_db(struct mi_bundle *c)
{
	struct mi_err err = MI_ERR_INIT;

	if (c->db == NULL && (c->db = mi_db_open(NULL, &err)) == NULL)
		bnd_die_err(c, &err);
}

void
bnd_open_store(struct mi_bundle *c)
{
	struct mi_err err = MI_ERR_INIT;

	if (c->st == NULL && (c->st = mi_store_open(NULL, &err)) == NULL)
		bnd_die_err(c, &err);
}

/* SHA-256 and size of a whole file. */
int
bnd_sha256_fd(int fd, char hex[65], long long *size, struct mi_err *err)
{
	struct mi_sha256 *h;
	char buf[65536];
	long long n = 0;
	ssize_t r;

	if ((h = mi_sha256_new(err)) == NULL)
		return -1;
	while ((r = read(fd, buf, sizeof(buf))) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			mi_sha256_free(h);
			return mi_err_set_errno(err, EX_IOERR, "read");
		}
		mi_sha256_update(h, buf, (size_t)r);
		n += r;
	}
	mi_sha256_final(h, hex);
	mi_sha256_free(h);
	*size = n;
	return 0;
}

/* The asset path of a uri (a full URL or "/api/assets/..."). */
int
bnd_uri_asset(const char *uri, struct mi_asset_path *p, struct mi_err *err)
{
	const char *s = strstr(uri, "/api/assets/");
	char path[1200];
	size_t n;

	if (s == NULL)
		return mi_err_set(err, EX_DATAERR,
		    "'%.200s' is not an asset "
		    "URI",
		    uri);
	n = strcspn(s, "?#");
	if (n >= sizeof(path))
		return mi_err_set(err, EX_DATAERR, "URI too long");
	memcpy(path, s, n);
	path[n] = '\0';
	if (mi_asset_path_parse(path, p, err) == -1)
		return mi_err_prefix(err, "'%.200s'", uri);
	return 0;
}

/* The store's file for p, as a path; -1 when absent or not regular. */
static int
stored_path(struct mi_bundle *c, const struct mi_asset_path *p, char *out,
    size_t outsz)
{
	struct stat sb;

	bnd_open_store(c);
	if ((size_t)snprintf(out, outsz, "%s/%s/%s/%s/%s.%s",
		mi_store_root(c->st), p->tenant, p->run, p->type, p->hash,
		p->ext) >= outsz)
		return -1;
	return lstat(out, &sb) == 0 && S_ISREG(sb.st_mode) ? 0 : -1;
}

/* Opens a stored file by its asset path (no symbolic link followed). */
int
bnd_open_stored(struct mi_bundle *c, const struct mi_asset_path *p)
{
	char path[4200];

	if (stored_path(c, p, path, sizeof(path)) == -1)
		return -1;
	return open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

/* Whether the database knows an artifact of tenant with this content. */
int
bnd_artifact_known(struct mi_bundle *c, const char *tenant, const char *hash)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[2] = { tenant, hash };
	jv row;
	int found;

	bnd_open_db(c);
	row = mi_db_json1(c->db,
	    "SELECT to_jsonb(a.id) FROM app.artifacts a "
	    "WHERE tenant_id = $1 AND content_hash = $2 LIMIT 1",
	    2, params, &err);
	if (!jv_is_valid(row))
		bnd_die_err(c, &err);
	found = jv_get_kind(row) != JV_KIND_NULL;
	jv_free(row);
	return found;
}

void
bnd_add_file(struct mi_bundle *c, struct file *f)
{
	if (c->nfiles == MAX_FILES)
		bnd_die(c, EX_DATAERR, "more than %d files in one bundle",
		    MAX_FILES);
	c->files[c->nfiles++] = *f;
}

struct file *
bnd_find_file(struct mi_bundle *c, const char *path)
{
	size_t i;

	for (i = 0; i < c->nfiles; i++)
		if (strcmp(c->files[i].path, path) == 0)
			return &c->files[i];
	return NULL;
}

char *
bnd_strdup(struct mi_bundle *c, const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		bnd_die(c, EX_OSERR, "out of memory");
	return p;
}

/* The file name an artifact gets inside assets/KIND/. */
static void
asset_name(jv rec, const struct mi_asset_path *p, char *out, size_t outsz)
{
	const char *fn = NULL, *type = p->type;
	struct mi_err err = MI_ERR_INIT;
	const char *slash;

	if (mi_json_str(rec, "filename", &fn, 0, &err) == 1 && fn != NULL) {
		slash = strrchr(fn, '/');
		fn = slash ? slash + 1 : fn;
		if (mi_zip_name_ok(fn, strlen(fn)) && fn[0] != '.' &&
		    strchr(fn, '.') != NULL &&
		    (size_t)snprintf(out, outsz, "%s", fn) < outsz)
			return;
	}
	snprintf(out, outsz, "%s.%s", type, p->ext);
}

/*
 * Checks one artifact record (consumed) against the store and adds it
 * under assets/; error records for what is wrong.
 */
void
mi_bundle_add(struct mi_bundle *c, jv rec)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_asset_path p;
	const char *uri = NULL, *tenant = NULL, *hash = NULL, *created = NULL;
	const struct mi_mime *m;
	char name[300], path[512], src[4200], msg[512];
	struct file f, *dup;
	int fd;

	if (mi_json_str(rec, "uri", &uri, 1, &err) == -1 ||
	    mi_json_str(rec, "tenant_id", &tenant, 1, &err) == -1 ||
	    mi_json_str(rec, "content_hash", &hash, 1, &err) == -1 ||
	    bnd_uri_asset(uri, &p, &err) == -1) {
		mi_bundle_error(c, rec, "VALIDATION_ERROR", err.msg);
		return;
	}
	if (strncmp(hash, "sha256:", 7) == 0)
		hash += 7;
	if (!mi_name_hash_ok(hash) || strcmp(hash, p.hash) != 0) {
		snprintf(msg, sizeof(msg),
		    "artifact '%.200s': content_hash "
		    "is not the SHA-256 in its uri",
		    uri);
		mi_bundle_error(c, rec, "INVALID_HASH", msg);
		return;
	}
	if (c->tenant[0] == '\0')
		snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
	if (strcmp(tenant, c->tenant) != 0 || strcmp(p.tenant, c->tenant)) {
		snprintf(msg, sizeof(msg),
		    "artifact '%.200s' belongs to "
		    "another tenant",
		    uri);
		mi_bundle_error(c, rec, "MISSING_ASSET", msg);
		return;
	}
	if (c->run[0] == '\0')
		snprintf(c->run, sizeof(c->run), "%s", p.run);
	if ((fd = bnd_open_stored(c, &p)) == -1) {
		snprintf(msg, sizeof(msg),
		    "artifact '%.200s' is not in the "
		    "store",
		    uri);
		mi_bundle_error(c, rec, "MISSING_ASSET", msg);
		return;
	}
	memset(&f, 0, sizeof(f));
	if (bnd_sha256_fd(fd, f.sha, &f.size, &err) == -1) {
		close(fd);
		mi_bundle_error(c, rec, "STORAGE_ERROR", err.msg);
		return;
	}
	close(fd);
	if (strcmp(f.sha, p.hash) != 0) {
		snprintf(msg, sizeof(msg),
		    "artifact '%.200s': stored bytes "
		    "do not match its hash",
		    uri);
		mi_bundle_error(c, rec, "INVALID_HASH", msg);
		return;
	}
	m = mi_mime_by_ext(p.ext);
	f.kind = mi_bundle_kind(m ? m->class : "data");
	asset_name(rec, &p, name, sizeof(name));
	snprintf(path, sizeof(path), "assets/%s/%s", f.kind, name);
	if ((dup = bnd_find_file(c, path)) != NULL) {
		if (strcmp(dup->sha, f.sha) == 0 &&
		    strcmp(dup->artifact_type, p.type) == 0) {
			jv_free(rec); /* the same artifact twice: one entry */
			return;
		}
		/* Another content, or the same one as another type. */
		if (strcmp(dup->sha, f.sha) != 0)
			snprintf(path, sizeof(path), "assets/%s/%.12s-%s",
			    f.kind, f.sha, name);
		else
			snprintf(path, sizeof(path), "assets/%s/%.100s-%s",
			    f.kind, p.type, name);
		if (bnd_find_file(c, path) != NULL) {
			jv_free(rec);
			return;
		}
	}
	stored_path(c, &p, src, sizeof(src));
	f.path = bnd_strdup(c, path);
	f.src = bnd_strdup(c, src);
	f.type = mi_bundle_content_type(path);
	f.artifact_type = bnd_strdup(c, p.type);
	f.uri = bnd_strdup(c, uri);
	bnd_add_file(c, &f);
	if (mi_json_str(rec, "created_at", &created, 0, &err) == 1 &&
	    created != NULL && strlen(created) < sizeof(c->created_at) &&
	    strcmp(created, c->created_at) > 0)
		snprintf(c->created_at, sizeof(c->created_at), "%s", created);
	c->artifacts = jv_array_append(c->artifacts, rec);
}

/* All of run's artifacts from the database (bundles for a campaign). */
void
mi_bundle_add_run(struct mi_bundle *c, const char *run)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[3] = { run, c->tenant,
		c->with_bundles ? "yes" : "no" };
	jv rows;

	if (!mi_name_uuid_ok(run))
		bnd_die(c, EX_USAGE, "bad --run '%s': not a UUID", run);
	bnd_open_db(c);
	rows = mi_db_json(c->db,
	    "SELECT to_jsonb(a) FROM app.artifacts a"
	    " WHERE run_id = $1::uuid AND ($2 = '' OR tenant_id = $2)"
	    " AND ($3 = 'yes' OR type <> 'bundle') AND NOT metadata @> "
	    "'{\"kind\":\"campaign-manifest\"}'"
	    " ORDER BY type, created_at, content_hash",
	    3, params, &err);
	if (!jv_is_valid(rows))
		bnd_die_err(c, &err);
	jv_array_foreach(rows, i, row)
	{
		mi_bundle_add(c, row);
	}
	jv_free(rows);
	if (c->run[0] == '\0')
		snprintf(c->run, sizeof(c->run), "%s", run);
}

void
bnd_files_free(struct mi_bundle *c)
{
	size_t i;

	for (i = 0; i < c->nfiles; i++) {
		free(c->files[i].path);
		free(c->files[i].src);
		free(c->files[i].mem);
		free(c->files[i].artifact_type);
		free(c->files[i].uri);
	}
	c->nfiles = 0;
}

/* Reads a whole (small) file; NULL with err. */
char *
bnd_slurp(const char *path, size_t *len, struct mi_err *err)
{
	struct mi_buf b;
	char buf[65536];
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		mi_err_set_errno(err, EX_NOINPUT, "unable to open '%s'", path);
		return NULL;
	}
	mi_buf_init(&b, MAX_JSON);
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		if (mi_buf_add(&b, buf, (size_t)r) == -1) {
			close(fd);
			mi_buf_release(&b);
			mi_err_set(err, EX_DATAERR, "'%s' is over %d bytes",
			    path, MAX_JSON);
			return NULL;
		}
	close(fd);
	if (r == -1) {
		mi_buf_release(&b);
		mi_err_set_errno(err, EX_IOERR, "unable to read '%s'", path);
		return NULL;
	}
	return mi_buf_detach(&b, len);
}

/* An unnamed temporary file for the zip or the manifest. */
int
bnd_temp_file(struct mi_bundle *c)
{
	const char *dir = getenv("TMPDIR");
	char path[4200];
	int fd;

	if (dir == NULL || *dir == '\0')
		dir = "/tmp";
	if ((fd = open(dir, O_RDWR | O_TMPFILE | O_CLOEXEC, 0600)) != -1)
		return fd;
	snprintf(path, sizeof(path), "%s/mi-bundle-XXXXXX", dir);
	if ((fd = mkstemp(path)) == -1)
		bnd_die(c, EX_CANTCREAT,
		    "unable to create a temporary file in "
		    "'%s': %s",
		    dir, strerror(errno));
	unlink(path);
	return fd;
}

/* Stores fd's content as type for the bundle's tenant and run. */
void
bnd_store_and_record(struct mi_bundle *c, int fd, const char *type,
    const char *ext, jv extra)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_store_req req;
	struct mi_store_result res;
	jv art;

	bnd_open_store(c);
	bnd_open_db(c);
	memset(&req, 0, sizeof(req));
	req.tenant = c->tenant;
	req.run = c->run;
	req.type = type;
	req.declared_ext = ext;
	if (lseek(fd, 0, SEEK_SET) == -1 ||
	    mi_store_put_fd(c->st, &req, fd, &res, &err) == -1) {
		mi_bundle_error(c, extra, mi_err_name(&err), err.msg);
		return;
	}
	art = mi_artifact_record(c->db, &req, &res, extra, &err);
	if (!jv_is_valid(art)) {
		jv_free(art);
		mi_bundle_error(c, jv_object(), "STORAGE_ERROR", err.msg);
		return;
	}
	bnd_note(c, MI_BUNDLE_VERBOSE, "%s %s",
	    res.deduplicated ? "found" : "stored", res.rel);
	bnd_out(c, art);
}
