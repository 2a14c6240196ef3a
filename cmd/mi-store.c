/*
 * mi-store - content-addressed save of local files, recorded in PostgreSQL.
 * Reads FILE arguments (with --tenant/--run/--type) or, without files,
 * records {"path", "tenant_id", "run_id", "type", ...} on stdin; writes one
 * artifact record per file.  Exits 0, 1 (some error records), 64, 69 (no
 * database) or 78 (no store directory).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact.h"
#include "db.h"
#include "err.h"
#include "json.h"
#include "probe.h"
#include "store.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-store [-v] --tenant T --run R --type TYPE [--skill S] FILE...\n"
    "       mi-store [-v] < records.ndjson\n"
    "  -t, --tenant T   tenant id ([A-Za-z0-9_-]{1,255})\n"
    "  -r, --run R      run id (a UUID)\n"
    "  -y, --type TYPE  artifact type (intro_video, bgm, model_3d, ...)\n"
    "  -s, --skill S    skill id recorded with the artifact\n"
    "  -v, --verbose    say what was stored on stderr\n"
    "      --help       this text\n"
    "      --version    print the version\n"
    "FILE '-' reads the content from standard input.";

struct ctx {
	struct mi_db *db;
	struct mi_store *st;
	int failed;
};

/* The extension of a file name, or NULL. */
static const char *
name_ext(const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *dot = strrchr(slash ? slash + 1 : name, '.');

	return dot && dot[1] ? dot + 1 : NULL;
}

static const char *
base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

static void
emit_error(struct ctx *c, jv rec, const char *code, const char *msg,
    int retryable)
{
	mi_warn("%s", msg);
	mi_json_write(stdout, mi_json_error(rec, code, msg, retryable));
	c->failed = 1;
}

/* What the file was asked to be: rec.request, else rec's own
 * media_type (default: the type), params and strict. */
static jv
request_of(jv rec)
{
	jv r = jv_object_get(jv_copy(rec), jv_string("request"));
	static const char *const keys[] = { "media_type", "params", "strict",
		"run_step_id", NULL };
	int i;

	if (jv_get_kind(r) == JV_KIND_OBJECT)
		return r;
	jv_free(r);
	r = jv_object();
	for (i = 0; keys[i]; i++) {
		jv v = jv_object_get(jv_copy(rec), jv_string(keys[i]));

		if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL)
			r = jv_object_set(r, jv_string(keys[i]), v);
		else
			jv_free(v);
	}
	if (!jv_object_has(jv_copy(r), jv_string("media_type")))
		r = jv_object_set(r, jv_string("media_type"),
		    jv_object_get(jv_copy(rec), jv_string("type")));
	return r;
}

/*
 * Stores one file described by rec (consumed); path, tenant_id, run_id and
 * type are checked here, before any of them reaches a path.
 */
static void
store_one(struct ctx *c, jv rec)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_store_req req;
	struct mi_store_result res;
	const char *path = NULL, *filename = NULL;
	jv extra, art;
	int fd;

	memset(&req, 0, sizeof(req));
	if (mi_json_str(rec, "path", &path, 1, &err) == -1 ||
	    mi_json_str(rec, "tenant_id", &req.tenant, 1, &err) == -1 ||
	    mi_json_str(rec, "run_id", &req.run, 1, &err) == -1 ||
	    mi_json_str(rec, "type", &req.type, 1, &err) == -1 ||
	    mi_json_str(rec, "filename", &filename, 0, &err) == -1) {
		emit_error(c, rec, "VALIDATION_ERROR", err.msg, 0);
		return;
	}
	if (filename == NULL && strcmp(path, "-") != 0)
		filename = base_name(path);
	req.declared_ext = filename ? name_ext(filename) : NULL;
	if (strcmp(path, "-") == 0)
		fd = STDIN_FILENO;
	else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		char msg[512];

		snprintf(msg, sizeof(msg), "unable to open '%s': %s", path,
		    strerror(errno));
		emit_error(c, rec, "MISSING_ASSET", msg, 0);
		return;
	}
	if (mi_store_put_fd(c->st, &req, fd, &res, &err) == -1) {
		if (fd != STDIN_FILENO)
			close(fd);
		mi_err_prefix(&err, "unable to store '%s'", path);
		emit_error(c, rec, mi_err_name(&err), err.msg,
		    err.code == EX_IOERR);
		return;
	}
	if (fd != STDIN_FILENO)
		close(fd);
	extra = jv_object();
	extra = jv_object_set(extra, jv_string("skill_id"),
	    jv_object_get(jv_copy(rec), jv_string("skill_id")));
	if (filename)
		extra = jv_object_set(extra, jv_string("filename"),
		    jv_string(filename));
	extra = jv_object_set(extra, jv_string("metadata"),
	    jv_object_get(jv_copy(rec), jv_string("metadata")));
	/* Facts, warnings against the record's request, a model fitted
	 * to its budget (probe.h); strict: an error record instead. */
	switch (mi_probe_stored(c->db, c->st, &req, &res, request_of(rec),
	    &extra, &err)) {
	case -1:
		jv_free(extra);
		emit_error(c, rec, "STORAGE_ERROR", err.msg, 1);
		return;
	case 1:
		jv_free(extra);
		emit_error(c, rec, "VALIDATION_ERROR", err.msg, 0);
		return;
	}
	art = mi_artifact_record(c->db, &req, &res, extra, &err);
	if (!jv_is_valid(art)) {
		jv_free(art);
		emit_error(c, rec, "STORAGE_ERROR", err.msg,
		    err.code == EX_TEMPFAIL);
		return;
	}
	mi_verbose("%s '%s' as %s", res.deduplicated ? "found" : "stored",
	    path, res.rel);
	jv_free(rec);
	mi_json_write(stdout, art);
}

static void
records(struct ctx *c)
{
	struct mi_json_in *in = mi_json_in_new(stdin);
	struct mi_err err = MI_ERR_INIT;
	jv rec;
	int r;

	if (in == NULL)
		mi_die(EX_OSERR, "out of memory");
	while ((r = mi_json_next(in, &rec, &err)) != 0) {
		if (r == -2)
			mi_die_err(&err);
		if (r == -1) {
			emit_error(c, jv_object(), "INVALID_JSON", err.msg, 0);
			continue;
		}
		if (mi_json_has_error(rec)) {
			mi_json_write(stdout, rec);
			continue;
		}
		if (jv_get_kind(rec) != JV_KIND_OBJECT) {
			char msg[64];

			snprintf(msg, sizeof(msg), "record %lu: not an object",
			    mi_json_count(in));
			emit_error(c, rec, "VALIDATION_ERROR", msg, 0);
			continue;
		}
		store_one(c, rec);
	}
	mi_json_in_free(in);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "run", required_argument, NULL, 'r' },
		{ "skill", required_argument, NULL, 's' },
		{ "tenant", required_argument, NULL, 't' },
		{ "type", required_argument, NULL, 'y' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *tenant = NULL, *run = NULL, *type = NULL, *skill = NULL;
	struct mi_err err = MI_ERR_INIT;
	struct ctx c = { NULL, NULL, 0 };
	int ch, i;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "hr:s:t:vy:", opts, NULL)) != -1) {
		switch (ch) {
		case 'h': mi_usage(usage, 0);
		case 'r': run = optarg; break;
		case 's': skill = optarg; break;
		case 't': tenant = optarg; break;
		case 'v': mi_verbosity++; break;
		case 'V': mi_version();
		case 'y': type = optarg; break;
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind < argc && (!tenant || !run || !type)) {
		fprintf(stderr, "mi-store: FILE needs --tenant, --run and --type\n");
		mi_usage(usage, EX_USAGE);
	}
	if (optind == argc && (tenant || run || type || skill)) {
		fprintf(stderr, "mi-store: --tenant, --run and --type need FILE\n");
		mi_usage(usage, EX_USAGE);
	}
	if ((c.st = mi_store_open(NULL, &err)) == NULL ||
	    (c.db = mi_db_open(NULL, &err)) == NULL)
		mi_die_err(&err);
	if (optind == argc)
		records(&c);
	for (i = optind; i < argc; i++) {
		jv rec = jv_object();

		rec = jv_object_set(rec, jv_string("path"), jv_string(argv[i]));
		rec = jv_object_set(rec, jv_string("tenant_id"),
		    jv_string(tenant));
		rec = jv_object_set(rec, jv_string("run_id"), jv_string(run));
		rec = jv_object_set(rec, jv_string("type"), jv_string(type));
		if (skill)
			rec = jv_object_set(rec, jv_string("skill_id"),
			    jv_string(skill));
		store_one(&c, rec);
	}
	mi_db_close(c.db);
	mi_store_close(c.st);
	mi_close_stdout();
	return c.failed ? 1 : 0;
}
