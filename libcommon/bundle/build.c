/*
 * bundle/build.c - a game bundle: the template's files and the artifacts
 * gathered, the GameConfig checked, the BundleManifest (bundle.json),
 * all in a reproducible zip (zipwrite.h) that is stored as a "bundle"
 * artifact.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "bundle/gather.h"
#include "bundle/manifest.h"
#include "bundle/zipwrite.h"
#include "hash.h"
#include "json.h"
#include "banned.h"

static int
by_path(const void *a, const void *b)
{
	return strcmp(((const struct file *)a)->path,
	    ((const struct file *)b)->path);
}

/* Adds the template's regular files, recursively; dies on what is odd. */
static void
walk_template(struct mi_bundle *c, const char *dir, const char *prefix)
{
	struct mi_err err = MI_ERR_INIT;
	struct dirent *d;
	struct stat sb;
	char path[4200], name[1100];
	struct file f;
	DIR *dp;
	int fd;

	if ((dp = opendir(dir)) == NULL)
		bnd_die(c, EX_NOINPUT, "unable to open template '%s': %s", dir,
		    strerror(errno));
	while ((d = readdir(dp)) != NULL) {
		if (d->d_name[0] == '.')
			continue; /* ".", "..", and hidden files */
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
			d->d_name) >= sizeof(path) ||
		    (size_t)snprintf(name, sizeof(name), "%s%s", prefix,
			d->d_name) >= sizeof(name))
			bnd_die(c, EX_DATAERR, "template path too long: '%s'", dir);
		if (lstat(path, &sb) == -1)
			bnd_die(c, EX_IOERR, "unable to stat '%s': %s", path,
			    strerror(errno));
		if (S_ISDIR(sb.st_mode)) {
			char sub[1100];

			snprintf(sub, sizeof(sub), "%s/", name);
			walk_template(c, path, sub);
			continue;
		}
		if (!S_ISREG(sb.st_mode))
			bnd_die(c, EX_DATAERR,
			    "template file '%s' is not a regular "
			    "file",
			    path);
		if (!mi_zip_name_ok(name, strlen(name)) ||
		    strncmp(name, "exp=", 4) == 0)
			bnd_die(c, EX_DATAERR,
			    "template file name '%s' is outside "
			    "the entry grammar (see mi-bundle(1))",
			    name);
		if (strncmp(name, "assets/", 7) == 0 &&
		    (strncmp(name + 7, "images/", 7) == 0 ||
			strncmp(name + 7, "audio/", 6) == 0 ||
			strncmp(name + 7, "video/", 6) == 0 ||
			strncmp(name + 7, "models/", 7) == 0 ||
			strncmp(name + 7, "configs/", 8) == 0))
			bnd_die(c, EX_DATAERR,
			    "template file '%s' is under a "
			    "folder the artifacts fill",
			    name);
		memset(&f, 0, sizeof(f));
		if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) ==
			-1 ||
		    bnd_sha256_fd(fd, f.sha, &f.size, &err) == -1)
			bnd_die(c, EX_IOERR, "unable to read '%s'", path);
		close(fd);
		f.path = bnd_strdup(c, name);
		f.src = bnd_strdup(c, path);
		f.type = mi_bundle_content_type(name);
		bnd_add_file(c, &f);
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
bundle_manifest(struct mi_bundle *c, const char *template_id, const char *version)
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
		bnd_die_err(c, &err);
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
		bnd_die_err(c, &err);
	return jv_object_set(m, jv_string("checksum"), jv_string(sum));
}

/* Reads and checks the GameConfig; the text, or NULL after errors. */
static char *
game_config(struct mi_bundle *c, const char *path, size_t *len, jv *cfg)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_buf problems = MI_BUF_INIT;
	char *text, msg[1024];

	if ((text = bnd_slurp(path, len, &err)) == NULL)
		bnd_die_err(c, &err);
	*cfg = mi_json_parse(text, &err);
	if (!jv_is_valid(*cfg)) {
		snprintf(msg, sizeof(msg), "game config '%.200s': %s", path,
		    err.msg);
		mi_bundle_error(c, jv_object(), "VALIDATION_ERROR", msg);
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
		mi_bundle_error(c, jv_object(), "VALIDATION_ERROR", msg);
		free(text);
		return NULL;
	}
	mi_buf_release(&problems);
	return text;
}

void
mi_bundle_build_begin(struct mi_bundle *c)
{
	c->artifacts = jv_array();
	snprintf(c->created_at, sizeof(c->created_at), "%s", "");
}

int
mi_bundle_build_end(struct mi_bundle *c, const char *dir, const char *config,
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

	walk_template(c, dir, "");
	if (bnd_find_file(c, "index.html") == NULL)
		bnd_die(c, EX_DATAERR, "template '%s' has no index.html", dir);
	/* The GameConfig: --config, else the template's own. */
	tf = bnd_find_file(c, "game_config.json");
	if (config == NULL && tf != NULL) {
		snprintf(cfgpath, sizeof(cfgpath), "%s", tf->src);
		config = cfgpath;
	}
	if (config != NULL) {
		if ((cfgtext = game_config(c, config, &len, &cfg)) == NULL)
			goto out;
		if (tf == NULL) {
			memset(&f, 0, sizeof(f));
			f.path = bnd_strdup(c, "game_config.json");
			f.mem = cfgtext;
			f.size = (long long)len;
			f.type = mi_bundle_content_type(f.path);
			mi_sha256_hex(cfgtext, len, f.sha);
			bnd_add_file(c, &f);
			cfgtext = NULL;
		} else if (config != cfgpath) {
			free(tf->src);
			tf->src = bnd_strdup(c, config);
			mi_sha256_hex(cfgtext, len, tf->sha);
			tf->size = (long long)len;
		}
	}
	if (c->failed) {
		mi_bundle_error(c, jv_object(), "VALIDATION_ERROR",
		    "bundle not "
		    "built: fix the errors above");
		goto out;
	}
	if (c->tenant[0] == '\0' || c->run[0] == '\0')
		bnd_die(c, EX_USAGE, "no artifacts: give --tenant and --run");
	if (sde != NULL && mi_parse_uint(sde, 0, 253402300799ULL, &t) == 0)
		iso_time((long long)t, c->created_at, sizeof(c->created_at));
	else if (c->created_at[0] == '\0')
		snprintf(c->created_at, sizeof(c->created_at), FIXED_TIME);
	if (bnd_find_file(c, "bundle.json") != NULL)
		bnd_die(c, EX_DATAERR, "template has its own bundle.json");
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
	f.path = bnd_strdup(c, "bundle.json");
	f.mem = text;
	f.size = (long long)strlen(text);
	f.type = "application/json";
	bnd_add_file(c, &f);
	qsort(c->files, c->nfiles, sizeof(c->files[0]), by_path);
	fd = bnd_temp_file(c);
	if ((w = mi_zipw_new(fd, &err)) == NULL)
		bnd_die_err(c, &err);
	for (i = 0; i < c->nfiles; i++) {
		struct file *e = &c->files[i];
		int sfd = -1;

		if (e->mem == NULL &&
		    (sfd = open(e->src, O_RDONLY | O_CLOEXEC)) == -1)
			bnd_die(c, EX_IOERR, "unable to open '%s': %s", e->src,
			    strerror(errno));
		if (mi_zipw_add(w, e->path, mi_bundle_deflate_type(e->type),
			e->mem, sfd, (uint64_t)e->size, &err) == -1)
			bnd_die_err(c, &err);
		if (sfd != -1)
			close(sfd);
	}
	if (mi_zipw_close(w, &err) == -1)
		bnd_die_err(c, &err);
	tid = jv_object_get(jv_copy(m), jv_string("bundle_id"));
	ver = jv_string_fmt("%s.zip", jv_string_value(tid));
	jv_free(tid);
	bnd_store_and_record(c, fd, "bundle", "zip",
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
	bnd_files_free(c);
	jv_free(c->artifacts);
	c->artifacts = jv_null();
	return c->failed ? 1 : 0;
}
