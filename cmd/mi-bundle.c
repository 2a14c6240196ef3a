/*
 * mi-bundle - game bundles and campaign manifests (seed 003).  Builds a
 * reproducible zip of a template directory plus artifacts (records on
 * stdin, or all of --run's) with a BundleManifest as bundle.json; with
 * --manifest builds a CampaignManifest; with --verify checks manifests
 * and bundles.  What it builds is stored and its artifact record written
 * on stdout.  Exits 0, 1 (some error records), 64, 65, 69 or 78.
 */
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "artifact.h"
#include "buf.h"
#include "bundle/manifest.h"
#include "bundle/zipread.h"
#include "bundle/zipwrite.h"
#include "db.h"
#include "err.h"
#include "hash.h"
#include "json.h"
#include "mime.h"
#include "names.h"
#include "store.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-bundle [-v] --template DIR [--config FILE] [--tenant T]\n"
    "                 [--run RUN] [--template-id ID] [< artifacts.ndjson]\n"
    "       mi-bundle [-v] --manifest CAMPAIGN [--run RUN] "
    "[< artifacts.ndjson]\n"
    "       mi-bundle [-v] --verify [--tenant T] [FILE...] "
    "[< artifacts.ndjson]\n"
    "  -c, --config FILE     the GameConfig, stored as game_config.json\n"
    "  -m, --manifest FILE   build the CampaignManifest of this campaign\n"
    "  -r, --run RUN         the artifacts are all of this run's\n"
    "  -T, --template DIR    the game template (index.html and its files)\n"
    "  -i, --template-id ID  template_id (default: the config's)\n"
    "  -t, --tenant T        the tenant (default: the artifacts')\n"
    "  -V, --verify          check manifests and bundles\n"
    "  -v, --verbose         say more on stderr\n"
    "      --help            this text\n"
    "      --version         print the version";

#define MAX_FILES 4096
#define MAX_JSON (8 << 20)
#define FIXED_TIME "1980-01-02T00:00:00Z"

/* One entry of a bundle being built. */
struct file {
	char *path; /* name in the zip */
	const char *type; /* Content-Type */
	long long size;
	char sha[65];
	char *src; /* a file to copy, or NULL */
	char *uri; /* an artifact's uri */
	char *mem; /* or these bytes */
	const char *kind; /* assets/ folder, NULL for template files */
	char *artifact_type;
};

struct ctx {
	struct mi_db *db;
	struct mi_store *st;
	char tenant[256];
	char run[37];
	char created_at[48]; /* the latest artifact's, or fixed */
	struct file files[MAX_FILES];
	size_t nfiles;
	jv artifacts; /* the good artifact records */
	int with_bundles; /* --run's bundles are artifacts too */
	int failed;
};

static void
emit_error(struct ctx *c, jv rec, const char *code, const char *msg)
{
	mi_warn("%s", msg);
	mi_json_write(stdout, mi_json_error(rec, code, msg, 0));
	c->failed = 1;
}

static void
open_db(struct ctx *c)
{
	struct mi_err err = MI_ERR_INIT;

	if (c->db == NULL && (c->db = mi_db_open(NULL, &err)) == NULL)
		mi_die_err(&err);
}

static void
open_store(struct ctx *c)
{
	struct mi_err err = MI_ERR_INIT;

	if (c->st == NULL && (c->st = mi_store_open(NULL, &err)) == NULL)
		mi_die_err(&err);
}

/* SHA-256 and size of a whole file. */
static int
sha256_fd(int fd, char hex[65], long long *size, struct mi_err *err)
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
static int
uri_asset(const char *uri, struct mi_asset_path *p, struct mi_err *err)
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
stored_path(struct ctx *c, const struct mi_asset_path *p, char *out,
    size_t outsz)
{
	struct stat sb;

	open_store(c);
	if ((size_t)snprintf(out, outsz, "%s/%s/%s/%s/%s.%s",
		mi_store_root(c->st), p->tenant, p->run, p->type, p->hash,
		p->ext) >= outsz)
		return -1;
	return lstat(out, &sb) == 0 && S_ISREG(sb.st_mode) ? 0 : -1;
}

/* Opens a stored file by its asset path (no symbolic link followed). */
static int
open_stored(struct ctx *c, const struct mi_asset_path *p)
{
	char path[4200];

	if (stored_path(c, p, path, sizeof(path)) == -1)
		return -1;
	return open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

/* Whether the database knows an artifact of tenant with this content. */
static int
artifact_known(struct ctx *c, const char *tenant, const char *hash)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[2] = { tenant, hash };
	jv row;
	int found;

	open_db(c);
	row = mi_db_json1(c->db,
	    "SELECT to_jsonb(a.id) FROM app.artifacts a "
	    "WHERE tenant_id = $1 AND content_hash = $2 LIMIT 1",
	    2, params, &err);
	if (!jv_is_valid(row))
		mi_die_err(&err);
	found = jv_get_kind(row) != JV_KIND_NULL;
	jv_free(row);
	return found;
}

static void
add_file(struct ctx *c, struct file *f)
{
	if (c->nfiles == MAX_FILES)
		mi_die(EX_DATAERR, "more than %d files in one bundle",
		    MAX_FILES);
	c->files[c->nfiles++] = *f;
}

static struct file *
find_file(struct ctx *c, const char *path)
{
	size_t i;

	for (i = 0; i < c->nfiles; i++)
		if (strcmp(c->files[i].path, path) == 0)
			return &c->files[i];
	return NULL;
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		mi_die(EX_OSERR, "out of memory");
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
static void
take_artifact(struct ctx *c, jv rec)
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
	    uri_asset(uri, &p, &err) == -1) {
		emit_error(c, rec, "VALIDATION_ERROR", err.msg);
		return;
	}
	if (strncmp(hash, "sha256:", 7) == 0)
		hash += 7;
	if (!mi_name_hash_ok(hash) || strcmp(hash, p.hash) != 0) {
		snprintf(msg, sizeof(msg),
		    "artifact '%.200s': content_hash "
		    "is not the SHA-256 in its uri",
		    uri);
		emit_error(c, rec, "INVALID_HASH", msg);
		return;
	}
	if (c->tenant[0] == '\0')
		snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
	if (strcmp(tenant, c->tenant) != 0 || strcmp(p.tenant, c->tenant)) {
		snprintf(msg, sizeof(msg),
		    "artifact '%.200s' belongs to "
		    "another tenant",
		    uri);
		emit_error(c, rec, "MISSING_ASSET", msg);
		return;
	}
	if (c->run[0] == '\0')
		snprintf(c->run, sizeof(c->run), "%s", p.run);
	if ((fd = open_stored(c, &p)) == -1) {
		snprintf(msg, sizeof(msg),
		    "artifact '%.200s' is not in the "
		    "store",
		    uri);
		emit_error(c, rec, "MISSING_ASSET", msg);
		return;
	}
	memset(&f, 0, sizeof(f));
	if (sha256_fd(fd, f.sha, &f.size, &err) == -1) {
		close(fd);
		emit_error(c, rec, "STORAGE_ERROR", err.msg);
		return;
	}
	close(fd);
	if (strcmp(f.sha, p.hash) != 0) {
		snprintf(msg, sizeof(msg),
		    "artifact '%.200s': stored bytes "
		    "do not match its hash",
		    uri);
		emit_error(c, rec, "INVALID_HASH", msg);
		return;
	}
	m = mi_mime_by_ext(p.ext);
	f.kind = mi_bundle_kind(m ? m->class : "data");
	asset_name(rec, &p, name, sizeof(name));
	snprintf(path, sizeof(path), "assets/%s/%s", f.kind, name);
	if ((dup = find_file(c, path)) != NULL) {
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
		if (find_file(c, path) != NULL) {
			jv_free(rec);
			return;
		}
	}
	stored_path(c, &p, src, sizeof(src));
	f.path = xstrdup(path);
	f.src = xstrdup(src);
	f.type = mi_bundle_content_type(path);
	f.artifact_type = xstrdup(p.type);
	f.uri = xstrdup(uri);
	add_file(c, &f);
	if (mi_json_str(rec, "created_at", &created, 0, &err) == 1 &&
	    created != NULL && strlen(created) < sizeof(c->created_at) &&
	    strcmp(created, c->created_at) > 0)
		snprintf(c->created_at, sizeof(c->created_at), "%s", created);
	c->artifacts = jv_array_append(c->artifacts, rec);
}

/* Artifact records from stdin, or all of run's from the database. */
static void
read_artifacts(struct ctx *c, const char *run, void (*take)(struct ctx *, jv))
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_json_in *in;
	jv rec, rows;
	int r;

	if (run != NULL) {
		const char *params[3] = { run, c->tenant,
			c->with_bundles ? "yes" : "no" };

		if (!mi_name_uuid_ok(run))
			mi_die(EX_USAGE, "bad --run '%s': not a UUID", run);
		open_db(c);
		rows = mi_db_json(c->db,
		    "SELECT to_jsonb(a) FROM app.artifacts a"
		    " WHERE run_id = $1::uuid AND ($2 = '' OR tenant_id = $2)"
		    " AND ($3 = 'yes' OR type <> 'bundle') AND NOT metadata @> "
		    "'{\"kind\":\"campaign-manifest\"}'"
		    " ORDER BY type, created_at, content_hash",
		    3, params, &err);
		if (!jv_is_valid(rows))
			mi_die_err(&err);
		jv_array_foreach(rows, i, row)
		{
			take(c, row);
		}
		jv_free(rows);
		if (c->run[0] == '\0')
			snprintf(c->run, sizeof(c->run), "%s", run);
		return;
	}
	if ((in = mi_json_in_new(stdin)) == NULL)
		mi_die(EX_OSERR, "out of memory");
	while ((r = mi_json_next(in, &rec, &err)) != 0) {
		if (r == -2)
			mi_die_err(&err);
		if (r == -1) {
			emit_error(c, jv_object(), "INVALID_JSON", err.msg);
			continue;
		}
		if (mi_json_has_error(rec)) {
			mi_json_write(stdout, rec);
			c->failed = 1;
			continue;
		}
		if (jv_get_kind(rec) != JV_KIND_OBJECT) {
			emit_error(c, rec, "VALIDATION_ERROR",
			    "record is not "
			    "an object");
			continue;
		}
		take(c, rec);
	}
	mi_json_in_free(in);
}

/* Reads a whole (small) file; NULL with err. */
static char *
slurp(const char *path, size_t *len, struct mi_err *err)
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

static int
by_path(const void *a, const void *b)
{
	return strcmp(((const struct file *)a)->path,
	    ((const struct file *)b)->path);
}

/* Adds the template's regular files, recursively; dies on what is odd. */
static void
walk_template(struct ctx *c, const char *dir, const char *prefix)
{
	struct mi_err err = MI_ERR_INIT;
	struct dirent *d;
	struct stat sb;
	char path[4200], name[1100];
	struct file f;
	DIR *dp;
	int fd;

	if ((dp = opendir(dir)) == NULL)
		mi_die(EX_NOINPUT, "unable to open template '%s': %s", dir,
		    strerror(errno));
	while ((d = readdir(dp)) != NULL) {
		if (d->d_name[0] == '.')
			continue; /* ".", "..", and hidden files */
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
			d->d_name) >= sizeof(path) ||
		    (size_t)snprintf(name, sizeof(name), "%s%s", prefix,
			d->d_name) >= sizeof(name))
			mi_die(EX_DATAERR, "template path too long: '%s'", dir);
		if (lstat(path, &sb) == -1)
			mi_die(EX_IOERR, "unable to stat '%s': %s", path,
			    strerror(errno));
		if (S_ISDIR(sb.st_mode)) {
			char sub[1100];

			snprintf(sub, sizeof(sub), "%s/", name);
			walk_template(c, path, sub);
			continue;
		}
		if (!S_ISREG(sb.st_mode))
			mi_die(EX_DATAERR,
			    "template file '%s' is not a regular "
			    "file",
			    path);
		if (!mi_zip_name_ok(name, strlen(name)) ||
		    strncmp(name, "exp=", 4) == 0)
			mi_die(EX_DATAERR,
			    "template file name '%s' is outside "
			    "the entry grammar (see mi-bundle(1))",
			    name);
		if (strncmp(name, "assets/", 7) == 0 &&
		    (strncmp(name + 7, "images/", 7) == 0 ||
			strncmp(name + 7, "audio/", 6) == 0 ||
			strncmp(name + 7, "video/", 6) == 0 ||
			strncmp(name + 7, "models/", 7) == 0 ||
			strncmp(name + 7, "configs/", 8) == 0))
			mi_die(EX_DATAERR,
			    "template file '%s' is under a "
			    "folder the artifacts fill",
			    name);
		memset(&f, 0, sizeof(f));
		if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) ==
			-1 ||
		    sha256_fd(fd, f.sha, &f.size, &err) == -1)
			mi_die(EX_IOERR, "unable to read '%s'", path);
		close(fd);
		f.path = xstrdup(name);
		f.src = xstrdup(path);
		f.type = mi_bundle_content_type(name);
		add_file(c, &f);
	}
	closedir(dp);
}

static void
iso_time(long long t, char *out, size_t outsz)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The BundleManifest of the files gathered so far. */
static jv
bundle_manifest(struct ctx *c, const char *template_id, const char *version)
{
	static const char *const kinds[] = { "images", "audio", "video",
		"models", "configs", NULL };
	struct mi_sha256 *idh;
	struct mi_err err = MI_ERR_INIT;
	jv files = jv_array(), assets = jv_object(), artifacts = jv_array();
	jv m, opt;
	long long total = 0;
	char id[65], sum[72];
	size_t i, k;

	if ((idh = mi_sha256_new(&err)) == NULL)
		mi_die_err(&err);
	for (k = 0; kinds[k]; k++)
		assets = jv_object_set(assets, jv_string(kinds[k]), jv_array());
	for (i = 0; i < c->nfiles; i++) {
		struct file *f = &c->files[i];

		files = jv_array_append(files,
		    JV_OBJECT(jv_string("path"), jv_string(f->path),
			jv_string("size_bytes"), jv_number((double)f->size),
			jv_string("content_type"), jv_string(f->type),
			jv_string("checksum"), jv_string_fmt("%.16s", f->sha)));
		mi_sha256_update(idh, f->path, strlen(f->path) + 1);
		mi_sha256_update(idh, f->sha, 64);
		total += f->size;
		if (f->kind == NULL)
			continue;
		assets = jv_object_set(assets, jv_string(f->kind),
		    jv_array_append(jv_object_get(jv_copy(assets),
					jv_string(f->kind)),
			jv_string(f->path)));
		artifacts = jv_array_append(artifacts,
		    JV_OBJECT(jv_string("path"), jv_string(f->path),
			jv_string("type"), jv_string(f->artifact_type),
			jv_string("content_hash"), jv_string(f->sha)));
	}
	mi_sha256_final(idh, id);
	mi_sha256_free(idh);
	opt = JV_ARRAY(jv_string("deflate-text"),
	    jv_string("store-media-uncompressed"), jv_string("sorted-entries"),
	    jv_string("fixed-timestamps"));
	m = JV_OBJECT(jv_string("bundle_id"), jv_string_fmt("bundle_%.32s", id),
	    jv_string("template_id"), jv_string(template_id),
	    jv_string("version"), jv_string(version), jv_string("created_at"),
	    jv_string(c->created_at), jv_string("files"), files,
	    jv_string("entry_point"), jv_string("index.html"),
	    jv_string("assets"), assets);
	m = jv_object_set(m, jv_string("metadata"),
	    JV_OBJECT(jv_string("total_size_bytes"), jv_number((double)total),
		jv_string("file_count"), jv_number((double)c->nfiles),
		jv_string("optimizations_applied"), opt, jv_string("tenant_id"),
		jv_string(c->tenant), jv_string("artifacts"), artifacts));
	if (mi_manifest_checksum(m, sum, &err) == -1)
		mi_die_err(&err);
	return jv_object_set(m, jv_string("checksum"), jv_string(sum));
}

/* An unnamed temporary file for the zip. */
static int
temp_file(void)
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
		mi_die(EX_CANTCREAT,
		    "unable to create a temporary file in "
		    "'%s': %s",
		    dir, strerror(errno));
	unlink(path);
	return fd;
}

/* Stores fd's content as type for the bundle's tenant and run. */
static void
store_and_record(struct ctx *c, int fd, const char *type, const char *ext,
    jv extra)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_store_req req;
	struct mi_store_result res;
	jv art;

	open_store(c);
	open_db(c);
	memset(&req, 0, sizeof(req));
	req.tenant = c->tenant;
	req.run = c->run;
	req.type = type;
	req.declared_ext = ext;
	if (lseek(fd, 0, SEEK_SET) == -1 ||
	    mi_store_put_fd(c->st, &req, fd, &res, &err) == -1) {
		emit_error(c, extra, mi_err_name(&err), err.msg);
		return;
	}
	art = mi_artifact_record(c->db, &req, &res, extra, &err);
	if (!jv_is_valid(art)) {
		jv_free(art);
		emit_error(c, jv_object(), "STORAGE_ERROR", err.msg);
		return;
	}
	mi_verbose("%s %s", res.deduplicated ? "found" : "stored", res.rel);
	mi_json_write(stdout, art);
}

/* Reads and checks the GameConfig; the text, or NULL after errors. */
static char *
game_config(struct ctx *c, const char *path, size_t *len, jv *cfg)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_buf problems = MI_BUF_INIT;
	char *text, msg[1024];

	if ((text = slurp(path, len, &err)) == NULL)
		mi_die_err(&err);
	*cfg = mi_json_parse(text, &err);
	if (!jv_is_valid(*cfg)) {
		snprintf(msg, sizeof(msg), "game config '%.200s': %s", path,
		    err.msg);
		emit_error(c, jv_object(), "VALIDATION_ERROR", msg);
		free(text);
		return NULL;
	}
	if (mi_game_config_check(*cfg, &problems) > 0) {
		problems.buf[problems.len - 1] = '\0';
		snprintf(msg, sizeof(msg), "game config '%.200s': %s", path,
		    problems.buf);
		for (char *p = msg; *p; p++)
			if (*p == '\n')
				*p = ';';
		mi_buf_release(&problems);
		emit_error(c, jv_object(), "VALIDATION_ERROR", msg);
		free(text);
		return NULL;
	}
	mi_buf_release(&problems);
	return text;
}

static int
build(struct ctx *c, const char *dir, const char *config, const char *run,
    const char *template_id)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_zipw *w;
	struct file f, *tf;
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	char cfgpath[4200], *cfgtext = NULL, *text;
	unsigned long long t;
	size_t len, i;
	jv cfg = jv_null(), m, tid, ver;
	int fd;

	c->artifacts = jv_array();
	snprintf(c->created_at, sizeof(c->created_at), "%s", "");
	read_artifacts(c, run, take_artifact);
	walk_template(c, dir, "");
	if (find_file(c, "index.html") == NULL)
		mi_die(EX_DATAERR, "template '%s' has no index.html", dir);
	/* The GameConfig: --config, else the template's own. */
	tf = find_file(c, "game_config.json");
	if (config == NULL && tf != NULL) {
		snprintf(cfgpath, sizeof(cfgpath), "%s", tf->src);
		config = cfgpath;
	}
	if (config != NULL) {
		if ((cfgtext = game_config(c, config, &len, &cfg)) == NULL)
			goto out;
		if (tf == NULL) {
			memset(&f, 0, sizeof(f));
			f.path = xstrdup("game_config.json");
			f.mem = cfgtext;
			f.size = (long long)len;
			f.type = mi_bundle_content_type(f.path);
			mi_sha256_hex(cfgtext, len, f.sha);
			add_file(c, &f);
			cfgtext = NULL;
		} else if (config != cfgpath) {
			free(tf->src);
			tf->src = xstrdup(config);
			mi_sha256_hex(cfgtext, len, tf->sha);
			tf->size = (long long)len;
		}
	}
	if (c->failed) {
		emit_error(c, jv_object(), "VALIDATION_ERROR",
		    "bundle not "
		    "built: fix the errors above");
		goto out;
	}
	if (c->tenant[0] == '\0' || c->run[0] == '\0')
		mi_die(EX_USAGE, "no artifacts: give --tenant and --run");
	if (sde != NULL && mi_parse_uint(sde, 0, 253402300799ULL, &t) == 0)
		iso_time((long long)t, c->created_at, sizeof(c->created_at));
	else if (c->created_at[0] == '\0')
		snprintf(c->created_at, sizeof(c->created_at), FIXED_TIME);
	if (find_file(c, "bundle.json") != NULL)
		mi_die(EX_DATAERR, "template has its own bundle.json");
	qsort(c->files, c->nfiles, sizeof(c->files[0]), by_path);
	tid = jv_object_get(jv_copy(cfg), jv_string("template_id"));
	ver = jv_object_get(jv_copy(cfg), jv_string("version"));
	m = bundle_manifest(c,
	    template_id				     ? template_id
		: jv_get_kind(tid) == JV_KIND_STRING ? jv_string_value(tid)
						     : "template",
	    jv_get_kind(ver) == JV_KIND_STRING ? jv_string_value(ver)
					       : "1.0.0");
	jv_free(tid);
	jv_free(ver);
	text = mi_json_dump(m);
	memset(&f, 0, sizeof(f));
	f.path = xstrdup("bundle.json");
	f.mem = text;
	f.size = (long long)strlen(text);
	f.type = "application/json";
	add_file(c, &f);
	qsort(c->files, c->nfiles, sizeof(c->files[0]), by_path);
	fd = temp_file();
	if ((w = mi_zipw_new(fd, &err)) == NULL)
		mi_die_err(&err);
	for (i = 0; i < c->nfiles; i++) {
		struct file *e = &c->files[i];
		int sfd = -1;

		if (e->mem == NULL &&
		    (sfd = open(e->src, O_RDONLY | O_CLOEXEC)) == -1)
			mi_die(EX_IOERR, "unable to open '%s': %s", e->src,
			    strerror(errno));
		if (mi_zipw_add(w, e->path, mi_bundle_deflate_type(e->type),
			e->mem, sfd, (uint64_t)e->size, &err) == -1)
			mi_die_err(&err);
		if (sfd != -1)
			close(sfd);
	}
	if (mi_zipw_close(w, &err) == -1)
		mi_die_err(&err);
	tid = jv_object_get(jv_copy(m), jv_string("bundle_id"));
	ver = jv_string_fmt("%s.zip", jv_string_value(tid));
	jv_free(tid);
	store_and_record(c, fd, "bundle", "zip",
	    JV_OBJECT(jv_string("filename"), ver, jv_string("metadata"),
		JV_OBJECT(jv_string("kind"), jv_string("game-bundle"),
		    jv_string("bundle_id"),
		    jv_object_get(jv_copy(m), jv_string("bundle_id")),
		    jv_string("template_id"),
		    jv_object_get(jv_copy(m), jv_string("template_id")),
		    jv_string("entry_point"), jv_string("index.html"),
		    jv_string("file_count"), jv_number((double)c->nfiles),
		    jv_string("manifest_checksum"),
		    jv_object_get(jv_copy(m), jv_string("checksum")))));
	close(fd);
	jv_free(m);
out:
	free(cfgtext);
	jv_free(cfg);
	for (i = 0; i < c->nfiles; i++) {
		free(c->files[i].path);
		free(c->files[i].src);
		free(c->files[i].mem);
		free(c->files[i].artifact_type);
		free(c->files[i].uri);
	}
	jv_free(c->artifacts);
	return c->failed ? 1 : 0;
}

/* Adds {code, message} to *problems. */
static void problem(jv *problems, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
problem(jv *problems, const char *code, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	*problems = jv_array_append(*problems,
	    JV_OBJECT(jv_string("code"), jv_string(code), jv_string("message"),
		jv_string(msg)));
}

/* SHA-256 of an entry's content. */
static int
entry_sha256(int fd, const struct mi_zip_entry *e, char hex[65],
    struct mi_err *err)
{
	struct mi_sha256 *h;
	char buf[65536];
	uint64_t done = 0;
	void *mem;

	if (e->method != 0) {
		if ((mem = malloc(e->usize + 1)) == NULL)
			return mi_err_set(err, EX_OSERR, "out of memory");
		if (mi_zip_extract(e, mi_zip_read_fd, &fd, mem, e->usize,
			err) == -1) {
			free(mem);
			return -1;
		}
		mi_sha256_hex(mem, e->usize, hex);
		free(mem);
		return 0;
	}
	if ((h = mi_sha256_new(err)) == NULL)
		return -1;
	while (done < e->usize) {
		size_t n = e->usize - done < sizeof(buf)
		    ? (size_t)(e->usize - done)
		    : sizeof(buf);

		if (mi_zip_read_fd(&fd, buf, n, e->data_off + done) == -1) {
			mi_sha256_free(h);
			return mi_err_set(err, EX_IOERR,
			    "unable to read entry "
			    "'%s'",
			    e->name);
		}
		mi_sha256_update(h, buf, n);
		done += n;
	}
	mi_sha256_final(h, hex);
	mi_sha256_free(h);
	return 0;
}

/* An entry (at most MAX_JSON bytes) parsed as JSON. */
static jv
entry_json(int fd, const struct mi_zip_entry *e, struct mi_err *err)
{
	char *text;
	jv v;

	if (e->usize > MAX_JSON) {
		mi_err_set(err, EX_DATAERR, "'%s' is over %d bytes", e->name,
		    MAX_JSON);
		return jv_invalid();
	}
	if ((text = malloc(e->usize + 1)) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return jv_invalid();
	}
	if (mi_zip_extract(e, mi_zip_read_fd, &fd, text, e->usize, err) == -1) {
		free(text);
		return jv_invalid();
	}
	text[e->usize] = '\0';
	v = mi_json_parse(text, err);
	free(text);
	return v;
}

/* GameConfig rules on cfg (borrowed), each broken one a problem. */
static void
check_game_config(jv cfg, const char *where, jv *problems)
{
	struct mi_buf b = MI_BUF_INIT;
	char *line, *save = NULL;

	if (mi_game_config_check(cfg, &b) > 0)
		for (line = strtok_r(b.buf, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save))
			problem(problems, "VALIDATION_ERROR", "%s: %s", where,
			    line);
	mi_buf_release(&b);
}

/* Checks a bundle open on fd: its structure, bundle.json, every file. */
static void
verify_bundle(int fd, long long size, jv *problems, int *checked)
{
	struct mi_err err = MI_ERR_INIT;
	const struct mi_zip_entry *e;
	struct mi_zip *z;
	char hex[65], sum[72];
	jv m, files, v;
	size_t i, listed = 0;

	if ((z = mi_zip_open(mi_zip_read_fd, &fd, (uint64_t)size, &err)) ==
	    NULL) {
		problem(problems, "VALIDATION_ERROR", "not a servable zip: %s",
		    err.msg);
		return;
	}
	for (i = 0; i < mi_zip_count(z); i++) {
		e = mi_zip_entry_at(z, i);
		if (e->refused != NULL)
			problem(problems, "VALIDATION_ERROR",
			    "entry '%.200s' "
			    "is refused: %s",
			    e->name, e->refused);
	}
	if ((e = mi_zip_find(z, "bundle.json", 11)) == NULL) {
		problem(problems, "MISSING_ASSET", "bundle.json: missing");
		mi_zip_free(z);
		return;
	}
	m = entry_json(fd, e, &err);
	if (jv_get_kind(m) != JV_KIND_OBJECT) {
		jv_free(m);
		problem(problems, "VALIDATION_ERROR", "bundle.json: %s",
		    err.msg[0] ? err.msg : "not an object");
		mi_zip_free(z);
		return;
	}
	v = jv_object_get(jv_copy(m), jv_string("checksum"));
	if (jv_get_kind(v) != JV_KIND_STRING ||
	    !mi_manifest_hash_ok(jv_string_value(v)))
		problem(problems, "INVALID_HASH",
		    "bundle.json: checksum is "
		    "not sha256: and 64 hex digits");
	else if (mi_manifest_checksum(m, sum, &err) == 0 &&
	    strcmp(sum, jv_string_value(v)) != 0)
		problem(problems, "INVALID_HASH",
		    "bundle.json: checksum does "
		    "not match the manifest");
	jv_free(v);
	files = jv_object_get(jv_copy(m), jv_string("files"));
	if (jv_get_kind(files) != JV_KIND_ARRAY) {
		problem(problems, "VALIDATION_ERROR", "bundle.json: no files");
		jv_free(files);
		files = jv_array();
	}
	jv_array_foreach(files, k, f)
	{
		const char *path = NULL, *ck = NULL;
		double sz = -1;

		if (mi_json_str(f, "path", &path, 1, &err) == -1 ||
		    mi_json_str(f, "checksum", &ck, 1, &err) == -1 ||
		    mi_json_num(f, "size_bytes", &sz, 1, &err) == -1) {
			problem(problems, "VALIDATION_ERROR",
			    "bundle.json: "
			    "files[%d]: %s",
			    k, err.msg);
			jv_free(f);
			continue;
		}
		listed++;
		(*checked)++;
		if ((e = mi_zip_find(z, path, strlen(path))) == NULL)
			problem(problems, "MISSING_ASSET",
			    "'%.200s': listed "
			    "in bundle.json but not in the zip",
			    path);
		else if (strlen(ck) != 16 ||
		    strspn(ck, "0123456789abcdef") != 16)
			problem(problems, "INVALID_HASH",
			    "'%.200s': checksum "
			    "'%.40s' is not 16 hex digits",
			    path, ck);
		else if (entry_sha256(fd, e, hex, &err) == -1)
			problem(problems, "INVALID_HASH", "'%.200s': %s", path,
			    err.msg);
		else if (strncmp(hex, ck, 16) != 0)
			problem(problems, "INVALID_HASH",
			    "'%.200s': checksum %s does not match the content "
			    "(%.16s)",
			    path, ck, hex);
		else if ((double)e->usize != sz)
			problem(problems, "VALIDATION_ERROR",
			    "'%.200s': size_bytes %.0f, the entry has %llu",
			    path, sz, (unsigned long long)e->usize);
		jv_free(f);
	}
	jv_free(files);
	if (listed + 1 < mi_zip_count(z))
		problem(problems, "VALIDATION_ERROR",
		    "the zip has %zu entries "
		    "that bundle.json does not list",
		    mi_zip_count(z) - 1 - listed);
	v = jv_object_get(jv_copy(m), jv_string("entry_point"));
	if (jv_get_kind(v) != JV_KIND_STRING ||
	    mi_zip_find(z, jv_string_value(v), strlen(jv_string_value(v))) ==
		NULL)
		problem(problems, "MISSING_ASSET",
		    "bundle.json: entry_point "
		    "is not in the zip");
	jv_free(v);
	if ((e = mi_zip_find(z, "game_config.json", 16)) != NULL) {
		v = entry_json(fd, e, &err);
		if (!jv_is_valid(v))
			problem(problems, "VALIDATION_ERROR",
			    "game_config.json: %s", err.msg);
		else
			check_game_config(v, "game_config.json", problems);
		jv_free(v);
	}
	jv_free(m);
	mi_zip_free(z);
}

/* One ManifestAssetRef: resolves, belongs to tenant, bytes match. */
static void
verify_ref(struct ctx *c, jv ref, const char *where, const char *tenant,
    jv *problems, int *checked)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_asset_path p;
	const char *uri = NULL, *ck = NULL;
	char hex[65];
	long long size;
	double want = -1;
	int fd;

	(*checked)++;
	if (jv_get_kind(ref) != JV_KIND_OBJECT ||
	    mi_json_str(ref, "uri", &uri, 1, &err) == -1) {
		problem(problems, "MISSING_ASSET", "%s: no uri", where);
		return;
	}
	if (mi_json_str(ref, "checksum", &ck, 0, &err) == -1 ||
	    (ck != NULL && !mi_manifest_hash_ok(ck)))
		problem(problems, "INVALID_HASH",
		    "%s: checksum '%.80s' is not "
		    "sha256: and 64 hex digits",
		    where, ck ? ck : "?");
	if (uri_asset(uri, &p, &err) == -1 || strcmp(p.tenant, tenant) != 0 ||
	    (fd = open_stored(c, &p)) == -1 ||
	    !artifact_known(c, tenant, p.hash)) {
		problem(problems, "MISSING_ASSET",
		    "%s: '%.200s' is not a "
		    "stored artifact of tenant '%s'",
		    where, uri, tenant);
		return;
	}
	if (sha256_fd(fd, hex, &size, &err) == -1) {
		close(fd);
		problem(problems, "STORAGE_ERROR", "%s: %s", where, err.msg);
		return;
	}
	if (ck != NULL && mi_manifest_hash_ok(ck) && strcmp(ck + 7, hex) != 0)
		problem(problems, "INVALID_HASH",
		    "%s: checksum does not match "
		    "the stored bytes (sha256:%s)",
		    where, hex);
	if (mi_json_num(ref, "size_bytes", &want, 0, &err) == 1 &&
	    want != (double)size)
		problem(problems, "VALIDATION_ERROR",
		    "%s: size_bytes %.0f, "
		    "the stored file has %lld",
		    where, want, size);
	if (strcmp(p.type, "bundle") == 0 ||
	    strcmp(where, "assets.game_bundle") == 0)
		verify_bundle(fd, size, problems, checked);
	close(fd);
}

/* Checks a CampaignManifest (borrowed) of tenant. */
static void
verify_manifest(struct ctx *c, jv m, const char *tenant, jv *problems,
    int *checked)
{
	static const char *const keys[] = { "intro_video", "win_video",
		"lose_video", "game_bundle", NULL };
	struct mi_err err = MI_ERR_INIT;
	char sum[72], where[64];
	jv v, assets;
	size_t i;

	v = jv_object_get(jv_copy(m), jv_string("checksum"));
	if (jv_get_kind(v) != JV_KIND_STRING ||
	    !mi_manifest_hash_ok(jv_string_value(v)))
		problem(problems, "INVALID_HASH",
		    "checksum: not sha256: and 64 "
		    "hex digits");
	else if (mi_manifest_checksum(m, sum, &err) == 0 &&
	    strcmp(sum, jv_string_value(v)) != 0)
		problem(problems, "INVALID_HASH",
		    "checksum: does not match the "
		    "manifest (%s)",
		    sum);
	jv_free(v);
	assets = jv_object_get(jv_copy(m), jv_string("assets"));
	if (jv_get_kind(assets) != JV_KIND_OBJECT) {
		jv_free(assets);
		assets = jv_object();
	}
	for (i = 0; keys[i]; i++) {
		snprintf(where, sizeof(where), "assets.%s", keys[i]);
		v = jv_object_get(jv_copy(assets), jv_string(keys[i]));
		if (jv_get_kind(v) != JV_KIND_OBJECT)
			problem(problems, "MISSING_ASSET", "%s: missing",
			    where);
		else
			verify_ref(c, v, where, tenant, problems, checked);
		jv_free(v);
	}
	v = jv_object_get(jv_copy(assets), jv_string("additional"));
	if (jv_get_kind(v) == JV_KIND_ARRAY)
		jv_array_foreach(v, k, ref)
		{
			snprintf(where, sizeof(where), "assets.additional[%d]",
			    k);
			verify_ref(c, ref, where, tenant, problems, checked);
			jv_free(ref);
		}
	jv_free(v);
	jv_free(assets);
	v = jv_object_get(jv_copy(m), jv_string("branding"));
	if (jv_get_kind(v) == JV_KIND_OBJECT) {
		jv colours = jv_object_get(jv_copy(v), jv_string("colors"));

		if (jv_get_kind(colours) == JV_KIND_OBJECT)
			jv_object_foreach(colours, k, col)
			{
				if (jv_get_kind(col) != JV_KIND_STRING ||
				    !mi_css_colour_ok(jv_string_value(col)))
					problem(problems, "VALIDATION_ERROR",
					    "branding.colors.%s: not a CSS "
					    "colour",
					    jv_string_value(k));
				jv_free(k);
				jv_free(col);
			}
		jv_free(colours);
	}
	jv_free(v);
}

/* Writes the verdict on one manifest or bundle. */
static void
verdict(struct ctx *c, jv out, jv problems, int checked)
{
	jv first, code, msg;

	out = jv_object_set(out, jv_string("checked"),
	    jv_number((double)checked));
	if (jv_array_length(jv_copy(problems)) == 0) {
		jv_free(problems);
		out = jv_object_set(out, jv_string("verified"), jv_true());
		mi_json_write(stdout, out);
		return;
	}
	first = jv_array_get(jv_copy(problems), 0);
	code = jv_object_get(jv_copy(first), jv_string("code"));
	msg = jv_object_get(first, jv_string("message"));
	out = jv_object_set(out, jv_string("verified"), jv_false());
	out = jv_object_set(out, jv_string("problems"), problems);
	mi_warn("%s: %s", jv_string_value(code), jv_string_value(msg));
	mi_json_write(stdout,
	    mi_json_error(out, jv_string_value(code), jv_string_value(msg), 0));
	jv_free(code);
	jv_free(msg);
	c->failed = 1;
}

/* Verifies what fd holds: a zip, or a manifest's JSON. */
static void
verify_fd(struct ctx *c, int fd, const char *source, const char *tenant)
{
	struct mi_err err = MI_ERR_INIT;
	jv problems = jv_array(), m, v;
	char head[4] = { 0 }, *text;
	struct mi_buf b;
	char buf[65536];
	struct stat sb;
	int checked = 0;
	ssize_t r;

	if (fstat(fd, &sb) == -1 || pread(fd, head, 4, 0) < 0)
		mi_die(EX_IOERR, "unable to read '%s': %s", source,
		    strerror(errno));
	if (memcmp(head, "PK", 2) == 0) {
		verify_bundle(fd, (long long)sb.st_size, &problems, &checked);
		verdict(c,
		    JV_OBJECT(jv_string("source"), jv_string(source),
			jv_string("kind"), jv_string("bundle")),
		    problems, checked);
		return;
	}
	mi_buf_init(&b, MAX_JSON);
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		if (mi_buf_add(&b, buf, (size_t)r) == -1)
			break;
	text = mi_buf_detach(&b, NULL);
	m = mi_json_parse(text, &err);
	free(text);
	if (jv_get_kind(m) != JV_KIND_OBJECT) {
		problem(&problems, "VALIDATION_ERROR", "not a manifest: %s",
		    err.msg[0] ? err.msg : "not an object");
		jv_free(m);
		verdict(c,
		    JV_OBJECT(jv_string("source"), jv_string(source),
			jv_string("kind"), jv_string("campaign_manifest")),
		    problems, checked);
		return;
	}
	v = jv_object_get(jv_object_get(jv_copy(m), jv_string("metadata")),
	    jv_string("tenant_id"));
	if (tenant == NULL && jv_get_kind(v) == JV_KIND_STRING)
		tenant = jv_string_value(v);
	if (tenant == NULL)
		problem(&problems, "VALIDATION_ERROR",
		    "no tenant: give "
		    "--tenant or metadata.tenant_id");
	else
		verify_manifest(c, m, tenant, &problems, &checked);
	verdict(c,
	    JV_OBJECT(jv_string("source"), jv_string(source), jv_string("kind"),
		jv_string("campaign_manifest")),
	    problems, checked);
	jv_free(v);
	jv_free(m);
}

/* --verify on an artifact record (consumed): its stored file. */
static void
verify_record(struct ctx *c, jv rec)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_asset_path p;
	const char *uri = NULL;
	char msg[400];
	int fd;

	if (mi_json_str(rec, "uri", &uri, 1, &err) == -1 ||
	    uri_asset(uri, &p, &err) == -1) {
		emit_error(c, rec, "VALIDATION_ERROR", err.msg);
		return;
	}
	if ((fd = open_stored(c, &p)) == -1) {
		snprintf(msg, sizeof(msg), "'%.200s' is not in the store", uri);
		emit_error(c, rec, "MISSING_ASSET", msg);
		return;
	}
	verify_fd(c, fd, uri, c->tenant[0] ? c->tenant : p.tenant);
	close(fd);
	jv_free(rec);
}

static int
verify(struct ctx *c, char **files, int nfiles)
{
	int i, fd;

	if (nfiles == 0) {
		read_artifacts(c, NULL, verify_record);
		return c->failed ? 1 : 0;
	}
	for (i = 0; i < nfiles; i++) {
		if ((fd = open(files[i], O_RDONLY | O_CLOEXEC)) == -1)
			mi_die(EX_NOINPUT, "unable to open '%s': %s", files[i],
			    strerror(errno));
		verify_fd(c, fd, files[i], c->tenant[0] ? c->tenant : NULL);
		close(fd);
	}
	return c->failed ? 1 : 0;
}

/* The ManifestAssetRef of a gathered artifact. */
static jv
asset_ref(const struct file *f, int required)
{
	const char *t = strcmp(f->artifact_type, "bundle") == 0 ? "bundle"
	    : strcmp(f->kind, "images") == 0			? "image"
	    : strcmp(f->kind, "models") == 0			? "model"
	    : strcmp(f->kind, "configs") == 0			? "data"
								: f->kind;

	/* The asset's path, not the host it was first served from: the
	 * manifest is content-addressed, and a new MI_PUBLIC_URL must not
	 * make it a new object. */
	const char *path = strstr(f->uri, "/api/assets/");
	jv uri = path != NULL
	    ? jv_string_sized(path, (int)strcspn(path, "?#"))
	    : jv_string(f->uri);

	return JV_OBJECT(jv_string("uri"), uri, jv_string("type"),
	    jv_string(t), jv_string("size_bytes"), jv_number((double)f->size),
	    jv_string("checksum"), jv_string_fmt("sha256:%s", f->sha),
	    jv_string("required"), jv_bool(required));
}

/* conf's section key when it is an object, else def; both consumed. */
static jv
section(jv conf, const char *key, jv def)
{
	jv v = jv_object_get(conf, jv_string(key));

	if (jv_get_kind(v) == JV_KIND_OBJECT) {
		jv_free(def);
		return v;
	}
	jv_free(v);
	return def;
}

/* The game bundle's bundle.json and GameConfig, checked. */
static int
bundle_facts(struct ctx *c, const struct file *f, jv *entry_point,
    jv *bundle_id)
{
	struct mi_err err = MI_ERR_INIT;
	const struct mi_zip_entry *e;
	jv problems = jv_array(), m, cfg;
	struct mi_zip *z;
	int fd, bad = 0;

	if ((fd = open(f->src, O_RDONLY | O_CLOEXEC)) == -1 ||
	    (z = mi_zip_open(mi_zip_read_fd, &fd, (uint64_t)f->size, &err)) ==
		NULL) {
		if (fd != -1)
			close(fd);
		emit_error(c, jv_object(), "VALIDATION_ERROR",
		    "game bundle is "
		    "not a servable zip");
		return -1;
	}
	if ((e = mi_zip_find(z, "bundle.json", 11)) != NULL) {
		m = entry_json(fd, e, &err);
		*entry_point =
		    jv_object_get(jv_copy(m), jv_string("entry_point"));
		*bundle_id = jv_object_get(m, jv_string("bundle_id"));
	}
	if ((e = mi_zip_find(z, "game_config.json", 16)) != NULL) {
		cfg = entry_json(fd, e, &err);
		check_game_config(cfg, "game bundle's game_config.json",
		    &problems);
		jv_free(cfg);
	}
	jv_array_foreach(problems, i, pr)
	{
		jv msg = jv_object_get(pr, jv_string("message"));

		emit_error(c, jv_object(), "VALIDATION_ERROR",
		    jv_string_value(msg));
		jv_free(msg);
		bad = i + 1;
	}
	jv_free(problems);
	mi_zip_free(z);
	close(fd);
	return bad ? -1 : 0;
}

/* Whether an artifact type is key, or ends in "_" key (outcome_win_video). */
static int
type_is(const char *type, const char *key)
{
	size_t n = strlen(type), k = strlen(key);

	return strcmp(type, key) == 0 || (n > k + 1 &&
	    type[n - k - 1] == '_' && strcmp(type + n - k, key) == 0);
}

static int
campaign(struct ctx *c, const char *path, const char *run)
{
	static const char *const keys[] = { "intro_video", "win_video",
		"lose_video", "bundle", NULL };
	struct mi_err err = MI_ERR_INIT;
	const struct file *found[4] = { NULL, NULL, NULL, NULL };
	jv conf, m, assets, additional = jv_array(), ep = jv_null();
	jv bid = jv_null(), meta, v;
	char *text, sum[72];
	size_t i, k, len;
	int fd;

	if ((text = slurp(path, &len, &err)) == NULL)
		mi_die_err(&err);
	conf = mi_json_parse(text, &err);
	free(text);
	if (jv_get_kind(conf) != JV_KIND_OBJECT)
		mi_die(EX_DATAERR, "campaign '%s': %s", path,
		    err.msg[0] ? err.msg : "not an object");
	v = jv_object_get(jv_copy(conf), jv_string("tenant_id"));
	if (jv_get_kind(v) == JV_KIND_STRING && c->tenant[0] == '\0')
		snprintf(c->tenant, sizeof(c->tenant), "%s",
		    jv_string_value(v));
	jv_free(v);
	v = jv_object_get(jv_copy(conf), jv_string("campaign_id"));
	if (jv_get_kind(v) != JV_KIND_STRING)
		mi_die(EX_DATAERR, "campaign '%s': missing key 'campaign_id'",
		    path);
	jv_free(v);
	c->artifacts = jv_array();
	c->with_bundles = 1;
	read_artifacts(c, run, take_artifact);
	for (i = 0; i < c->nfiles; i++) {
		for (k = 0; keys[k]; k++)
			if (type_is(c->files[i].artifact_type, keys[k]) &&
			    found[k] == NULL) {
				found[k] = &c->files[i];
				break;
			}
		if (keys[k] == NULL)
			additional = jv_array_append(additional,
			    asset_ref(&c->files[i], 0));
	}
	for (k = 0; keys[k]; k++)
		if (found[k] == NULL) {
			char msg[200];

			snprintf(msg, sizeof(msg),
			    "campaign '%s': no artifact "
			    "of type %s",
			    path, keys[k]);
			emit_error(c, jv_object(), "MISSING_ASSET", msg);
		}
	if (found[3] != NULL)
		bundle_facts(c, found[3], &ep, &bid);
	if (c->failed) {
		jv_free(conf);
		jv_free(additional);
		jv_free(ep);
		jv_free(bid);
		emit_error(c, jv_object(), "VALIDATION_ERROR",
		    "manifest not "
		    "built: fix the errors above");
		goto out;
	}
	if (c->created_at[0] == '\0')
		snprintf(c->created_at, sizeof(c->created_at), FIXED_TIME);
	assets = JV_OBJECT(jv_string("intro_video"), asset_ref(found[0], 1),
	    jv_string("win_video"), asset_ref(found[1], 1),
	    jv_string("lose_video"), asset_ref(found[2], 1),
	    jv_string("game_bundle"), asset_ref(found[3], 1),
	    jv_string("additional"), additional);
	m = JV_OBJECT(jv_string("manifest_version"), jv_string("1.0.0"),
	    jv_string("campaign_id"),
	    jv_object_get(jv_copy(conf), jv_string("campaign_id")),
	    jv_string("campaign_name"),
	    jv_object_get(jv_copy(conf), jv_string("campaign_name")),
	    jv_string("created_at"), jv_string(c->created_at),
	    jv_string("updated_at"), jv_string(c->created_at),
	    jv_string("version"), jv_string("1.0.0"), jv_string("assets"),
	    assets);
	v = jv_object_get(jv_copy(conf), jv_string("version"));
	if (jv_get_kind(v) == JV_KIND_STRING)
		m = jv_object_set(m, jv_string("version"), v);
	else
		jv_free(v);
	v = jv_object_get(jv_copy(m), jv_string("campaign_name"));
	if (jv_get_kind(v) != JV_KIND_STRING)
		m = jv_object_set(m, jv_string("campaign_name"),
		    jv_object_get(jv_copy(conf), jv_string("campaign_id")));
	jv_free(v);
	v = section(jv_copy(conf), "interaction",
	    JV_OBJECT(jv_string("button"),
		JV_OBJECT(jv_string("bounds"),
		    JV_OBJECT(jv_string("x"), jv_number(0.4), jv_string("y"),
			jv_number(0.8), jv_string("width"), jv_number(0.2),
			jv_string("height"), jv_number(0.1)))));
	v = jv_object_set(v, jv_string("game_container"),
	    JV_OBJECT(jv_string("entry_point"),
		jv_get_kind(ep) == JV_KIND_STRING ? jv_copy(ep)
						  : jv_string("index.html"),
		jv_string("config_path"), jv_string("game_config.json")));
	m = jv_object_set(m, jv_string("interaction"), v);
	m = jv_object_set(m, jv_string("flow"),
	    section(jv_copy(conf), "flow",
		JV_OBJECT(jv_string("sequence"),
		    JV_ARRAY(jv_string("intro"), jv_string("game"),
			jv_string("outcome")),
		    jv_string("intro_to_game_trigger"), jv_string("video_end"),
		    jv_string("game_to_outcome_trigger"),
		    jv_string("game_complete"))));
	m = jv_object_set(m, jv_string("rules"),
	    section(jv_copy(conf), "rules",
		JV_OBJECT(jv_string("active"), jv_true(),
		    jv_string("require_login"), jv_false())));
	m = jv_object_set(m, jv_string("analytics"),
	    section(jv_copy(conf), "analytics",
		JV_OBJECT(jv_string("enabled"), jv_false(), jv_string("events"),
		    jv_array())));
	v = section(jv_copy(conf), "branding", jv_null());
	if (jv_get_kind(v) == JV_KIND_OBJECT)
		m = jv_object_set(m, jv_string("branding"), v);
	else
		jv_free(v);
	meta = section(jv_copy(conf), "metadata", jv_object());
	meta =
	    jv_object_set(meta, jv_string("tenant_id"), jv_string(c->tenant));
	meta = jv_object_set(meta, jv_string("run_id"), jv_string(c->run));
	if (jv_get_kind(bid) == JV_KIND_STRING)
		meta =
		    jv_object_set(meta, jv_string("bundle_id"), jv_copy(bid));
	m = jv_object_set(m, jv_string("metadata"), meta);
	if (mi_manifest_checksum(m, sum, &err) == -1)
		mi_die_err(&err);
	m = jv_object_set(m, jv_string("checksum"), jv_string(sum));
	/* Its own problems (branding colours) stop it being stored. */
	{
		jv problems = jv_array();
		int checked = 0;

		v = jv_object_get(jv_copy(m), jv_string("branding"));
		if (jv_get_kind(v) == JV_KIND_OBJECT) {
			jv col = jv_object_get(v, jv_string("colors"));

			if (jv_get_kind(col) == JV_KIND_OBJECT)
				jv_object_foreach(col, key, val)
				{
					if (jv_get_kind(val) !=
						JV_KIND_STRING ||
					    !mi_css_colour_ok(
						jv_string_value(val)))
						problem(&problems,
						    "VALIDATION_ERROR",
						    "branding.colors.%s: not a "
						    "CSS colour",
						    jv_string_value(key));
					jv_free(key);
					jv_free(val);
				}
			jv_free(col);
		} else
			jv_free(v);
		if (jv_array_length(jv_copy(problems)) > 0) {
			verdict(c,
			    JV_OBJECT(jv_string("source"), jv_string(path),
				jv_string("kind"),
				jv_string("campaign_manifest")),
			    problems, checked);
			jv_free(m);
			jv_free(conf);
			jv_free(ep);
			jv_free(bid);
			goto out;
		}
		jv_free(problems);
	}
	text = mi_json_dump(m);
	fd = temp_file();
	len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
		mi_die(EX_IOERR, "unable to write a temporary file: %s",
		    strerror(errno));
	free(text);
	store_and_record(c, fd, "json", "json",
	    JV_OBJECT(jv_string("filename"),
		jv_string("campaign-manifest.json"), jv_string("metadata"),
		JV_OBJECT(jv_string("kind"), jv_string("campaign-manifest"),
		    jv_string("campaign_id"),
		    jv_object_get(jv_copy(conf), jv_string("campaign_id")),
		    jv_string("manifest_checksum"), jv_string(sum))));
	close(fd);
	jv_free(m);
	jv_free(conf);
	jv_free(ep);
	jv_free(bid);
out:
	for (i = 0; i < c->nfiles; i++) {
		free(c->files[i].path);
		free(c->files[i].src);
		free(c->files[i].artifact_type);
		free(c->files[i].uri);
	}
	jv_free(c->artifacts);
	return c->failed ? 1 : 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = { { "config", required_argument,
						  NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "manifest", required_argument, NULL, 'm' },
		{ "run", required_argument, NULL, 'r' },
		{ "template", required_argument, NULL, 'T' },
		{ "template-id", required_argument, NULL, 'i' },
		{ "tenant", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "verify", no_argument, NULL, 'V' },
		{ "version", no_argument, NULL, 'W' }, { NULL, 0, NULL, 0 } };
	static struct ctx c;
	const char *dir = NULL, *config = NULL, *manifest = NULL, *run = NULL;
	const char *tid = NULL, *tenant = NULL;
	int ch, check = 0, r;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "c:hi:m:r:T:t:vV", opts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 'h': mi_usage(usage, 0);
		case 'i': tid = optarg; break;
		case 'm': manifest = optarg; break;
		case 'r': run = optarg; break;
		case 'T': dir = optarg; break;
		case 't': tenant = optarg; break;
		case 'v': mi_verbosity++; break;
		case 'V': check = 1; break;
		case 'W': mi_version();
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if ((dir != NULL) + (manifest != NULL) + check != 1) {
		fprintf(stderr,
		    "mi-bundle: give one of --template, --manifest "
		    "and --verify\n");
		mi_usage(usage, EX_USAGE);
	}
	if ((!check && optind != argc) || (check && run != NULL) ||
	    (dir == NULL && (config != NULL || tid != NULL)))
		mi_usage(usage, EX_USAGE);
	if (tenant != NULL) {
		if (!mi_name_tenant_ok(tenant))
			mi_die(EX_USAGE, "bad --tenant '%s'", tenant);
		snprintf(c.tenant, sizeof(c.tenant), "%s", tenant);
	}
	if (check)
		r = verify(&c, argv + optind, argc - optind);
	else if (manifest != NULL)
		r = campaign(&c, manifest, run);
	else
		r = build(&c, dir, config, run, tid);
	mi_db_close(c.db);
	mi_store_close(c.st);
	mi_close_stdout();
	return r;
}
