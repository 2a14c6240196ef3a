/*
 * bundle/verify.c - verdicts on manifests and bundles: a bundle's zip
 * structure, its bundle.json (checksum, listed files and their hashes,
 * entry point) and GameConfig; a CampaignManifest's checksum, its asset
 * references (stored, of the tenant, bytes as stated; a game bundle's
 * zip checked in turn) and branding colours.  Every problem found is
 * listed; the first one names the error record.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "bundle/gather.h"
#include "bundle/manifest.h"
#include "bundle/zipread.h"
#include "hash.h"
#include "json.h"
#include "banned.h"

void
bnd_problem(jv *problems, const char *code, const char *fmt, ...)
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
jv
bnd_entry_json(int fd, const struct mi_zip_entry *e, struct mi_err *err)
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
void
bnd_check_game_config(jv cfg, const char *where, jv *problems)
{
	struct mi_buf b = MI_BUF_INIT;
	char *line, *save = NULL;

	if (mi_game_config_check(cfg, &b) > 0)
		for (line = strtok_r(b.buf, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save))
			bnd_problem(problems, "VALIDATION_ERROR", "%s: %s", where,
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
		bnd_problem(problems, "VALIDATION_ERROR", "not a servable zip: %s",
		    err.msg);
		return;
	}
	for (i = 0; i < mi_zip_count(z); i++) {
		e = mi_zip_entry_at(z, i);
		if (e->refused != NULL)
			bnd_problem(problems, "VALIDATION_ERROR",
			    "entry '%.200s' "
			    "is refused: %s",
			    e->name, e->refused);
	}
	if ((e = mi_zip_find(z, "bundle.json", 11)) == NULL) {
		bnd_problem(problems, "MISSING_ASSET", "bundle.json: missing");
		mi_zip_free(z);
		return;
	}
	m = bnd_entry_json(fd, e, &err);
	if (jv_get_kind(m) != JV_KIND_OBJECT) {
		jv_free(m);
		bnd_problem(problems, "VALIDATION_ERROR", "bundle.json: %s",
		    err.msg[0] ? err.msg : "not an object");
		mi_zip_free(z);
		return;
	}
	v = jv_object_get(jv_copy(m), jv_string("checksum"));
	if (jv_get_kind(v) != JV_KIND_STRING ||
	    !mi_manifest_hash_ok(jv_string_value(v)))
		bnd_problem(problems, "INVALID_HASH",
		    "bundle.json: checksum is "
		    "not sha256: and 64 hex digits");
	else if (mi_manifest_checksum(m, sum, &err) == 0 &&
	    strcmp(sum, jv_string_value(v)) != 0)
		bnd_problem(problems, "INVALID_HASH",
		    "bundle.json: checksum does "
		    "not match the manifest");
	jv_free(v);
	files = jv_object_get(jv_copy(m), jv_string("files"));
	if (jv_get_kind(files) != JV_KIND_ARRAY) {
		bnd_problem(problems, "VALIDATION_ERROR", "bundle.json: no files");
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
			bnd_problem(problems, "VALIDATION_ERROR",
			    "bundle.json: "
			    "files[%d]: %s",
			    k, err.msg);
			jv_free(f);
			continue;
		}
		listed++;
		(*checked)++;
		if ((e = mi_zip_find(z, path, strlen(path))) == NULL)
			bnd_problem(problems, "MISSING_ASSET",
			    "'%.200s': listed "
			    "in bundle.json but not in the zip",
			    path);
		else if (strlen(ck) != 16 ||
		    strspn(ck, "0123456789abcdef") != 16)
			bnd_problem(problems, "INVALID_HASH",
			    "'%.200s': checksum "
			    "'%.40s' is not 16 hex digits",
			    path, ck);
		else if (entry_sha256(fd, e, hex, &err) == -1)
			bnd_problem(problems, "INVALID_HASH", "'%.200s': %s", path,
			    err.msg);
		else if (strncmp(hex, ck, 16) != 0)
			bnd_problem(problems, "INVALID_HASH",
			    "'%.200s': checksum %s does not match the content "
			    "(%.16s)",
			    path, ck, hex);
		else if ((double)e->usize != sz)
			bnd_problem(problems, "VALIDATION_ERROR",
			    "'%.200s': size_bytes %.0f, the entry has %llu",
			    path, sz, (unsigned long long)e->usize);
		jv_free(f);
	}
	jv_free(files);
	if (listed + 1 < mi_zip_count(z))
		bnd_problem(problems, "VALIDATION_ERROR",
		    "the zip has %zu entries "
		    "that bundle.json does not list",
		    mi_zip_count(z) - 1 - listed);
	v = jv_object_get(jv_copy(m), jv_string("entry_point"));
	if (jv_get_kind(v) != JV_KIND_STRING ||
	    mi_zip_find(z, jv_string_value(v), strlen(jv_string_value(v))) ==
		NULL)
		bnd_problem(problems, "MISSING_ASSET",
		    "bundle.json: entry_point "
		    "is not in the zip");
	jv_free(v);
	if ((e = mi_zip_find(z, "game_config.json", 16)) != NULL) {
		v = bnd_entry_json(fd, e, &err);
		if (!jv_is_valid(v))
			bnd_problem(problems, "VALIDATION_ERROR",
			    "game_config.json: %s", err.msg);
		else
			bnd_check_game_config(v, "game_config.json", problems);
		jv_free(v);
	}
	jv_free(m);
	mi_zip_free(z);
}

/* One ManifestAssetRef: resolves, belongs to tenant, bytes match. */
static void
verify_ref(struct mi_bundle *c, jv ref, const char *where, const char *tenant,
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
		bnd_problem(problems, "MISSING_ASSET", "%s: no uri", where);
		return;
	}
	if (mi_json_str(ref, "checksum", &ck, 0, &err) == -1 ||
	    (ck != NULL && !mi_manifest_hash_ok(ck)))
		bnd_problem(problems, "INVALID_HASH",
		    "%s: checksum '%.80s' is not "
		    "sha256: and 64 hex digits",
		    where, ck ? ck : "?");
	if (bnd_uri_asset(uri, &p, &err) == -1 || strcmp(p.tenant, tenant) != 0 ||
	    (fd = bnd_open_stored(c, &p)) == -1 ||
	    !bnd_artifact_known(c, tenant, p.hash)) {
		bnd_problem(problems, "MISSING_ASSET",
		    "%s: '%.200s' is not a "
		    "stored artifact of tenant '%s'",
		    where, uri, tenant);
		return;
	}
	if (bnd_sha256_fd(fd, hex, &size, &err) == -1) {
		close(fd);
		bnd_problem(problems, "STORAGE_ERROR", "%s: %s", where, err.msg);
		return;
	}
	if (ck != NULL && mi_manifest_hash_ok(ck) && strcmp(ck + 7, hex) != 0)
		bnd_problem(problems, "INVALID_HASH",
		    "%s: checksum does not match "
		    "the stored bytes (sha256:%s)",
		    where, hex);
	if (mi_json_num(ref, "size_bytes", &want, 0, &err) == 1 &&
	    want != (double)size)
		bnd_problem(problems, "VALIDATION_ERROR",
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
verify_manifest(struct mi_bundle *c, jv m, const char *tenant, jv *problems,
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
		bnd_problem(problems, "INVALID_HASH",
		    "checksum: not sha256: and 64 "
		    "hex digits");
	else if (mi_manifest_checksum(m, sum, &err) == 0 &&
	    strcmp(sum, jv_string_value(v)) != 0)
		bnd_problem(problems, "INVALID_HASH",
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
			bnd_problem(problems, "MISSING_ASSET", "%s: missing",
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
					bnd_problem(problems, "VALIDATION_ERROR",
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
void
bnd_verdict(struct mi_bundle *c, jv out, jv problems, int checked)
{
	jv first, code, msg;

	out = jv_object_set(out, jv_string("checked"),
	    jv_number((double)checked));
	if (jv_array_length(jv_copy(problems)) == 0) {
		jv_free(problems);
		out = jv_object_set(out, jv_string("verified"), jv_true());
		bnd_out(c, out);
		return;
	}
	first = jv_array_get(jv_copy(problems), 0);
	code = jv_object_get(jv_copy(first), jv_string("code"));
	msg = jv_object_get(first, jv_string("message"));
	out = jv_object_set(out, jv_string("verified"), jv_false());
	out = jv_object_set(out, jv_string("problems"), problems);
	bnd_note(c, MI_BUNDLE_WARN, "%s: %s", jv_string_value(code), jv_string_value(msg));
	mi_json_write(stdout,
	    mi_json_error(out, jv_string_value(code), jv_string_value(msg), 0));
	jv_free(code);
	jv_free(msg);
	c->failed = 1;
}

/* Verifies what fd holds: a zip, or a manifest's JSON. */
static void
verify_fd(struct mi_bundle *c, int fd, const char *source, const char *tenant)
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
		bnd_die(c, EX_IOERR, "unable to read '%s': %s", source,
		    strerror(errno));
	if (memcmp(head, "PK", 2) == 0) {
		verify_bundle(fd, (long long)sb.st_size, &problems, &checked);
		bnd_verdict(c,
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
		bnd_problem(&problems, "VALIDATION_ERROR", "not a manifest: %s",
		    err.msg[0] ? err.msg : "not an object");
		jv_free(m);
		bnd_verdict(c,
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
		bnd_problem(&problems, "VALIDATION_ERROR",
		    "no tenant: give "
		    "--tenant or metadata.tenant_id");
	else
		verify_manifest(c, m, tenant, &problems, &checked);
	bnd_verdict(c,
	    JV_OBJECT(jv_string("source"), jv_string(source), jv_string("kind"),
		jv_string("campaign_manifest")),
	    problems, checked);
	jv_free(v);
	jv_free(m);
}

/* --verify on an artifact record (consumed): its stored file. */
void
mi_bundle_verify_record(struct mi_bundle *c, jv rec)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_asset_path p;
	const char *uri = NULL;
	char msg[400];
	int fd;

	if (mi_json_str(rec, "uri", &uri, 1, &err) == -1 ||
	    bnd_uri_asset(uri, &p, &err) == -1) {
		mi_bundle_error(c, rec, "VALIDATION_ERROR", err.msg);
		return;
	}
	if ((fd = bnd_open_stored(c, &p)) == -1) {
		snprintf(msg, sizeof(msg), "'%.200s' is not in the store", uri);
		mi_bundle_error(c, rec, "MISSING_ASSET", msg);
		return;
	}
	verify_fd(c, fd, uri, c->tenant[0] ? c->tenant : p.tenant);
	close(fd);
	jv_free(rec);
}

void
mi_bundle_verify_fd(struct mi_bundle *c, int fd, const char *source)
{
	verify_fd(c, fd, source, c->tenant[0] ? c->tenant : NULL);
}
