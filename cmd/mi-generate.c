/*
 * mi-generate - makes media files with the built-in local generators, one
 * per request read on stdin (or one described by options), and writes one
 * record per file on stdout: {path, media_type, mime_type, size_bytes,
 * content_hash}.  Exits 0, 1 (some error records), 64, 65, 69, 70 or 74.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "hash.h"
#include "json.h"
#include "localgen/localgen.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-generate [-v] [-d dir | -o file] [-t media_type -p prompt\n"
    "                   [-P key=value ...]] [< requests.ndjson]\n"
    "  -d, --dir DIR           directory for {sha256}.{ext} files (default .)\n"
    "  -o, --output FILE       write the one generated file to FILE\n"
    "  -P, --param KEY=VALUE   a request parameter (VALUE as JSON, else a\n"
    "                          string); repeatable\n"
    "  -p, --prompt TEXT       the prompt (with -t)\n"
    "  -t, --media-type TYPE   generate one file of TYPE instead of reading\n"
    "                          requests: video, audio_sfx, audio_bgm,\n"
    "                          model_3d, image, texture, environment_map\n"
    "  -v, --verbose           report progress on stderr\n"
    "      --help              this text\n"
    "      --version           print the version";

/* Request keys copied to the output record. */
static const char *const keep[] = { "tenant_id", "run_id", "run_step_id",
	"artifact_type", NULL };

struct opts {
	const char *dir, *output, *type, *prompt;
	jv params;
	unsigned long done;	/* files generated so far */
};

static void
progress(void *arg, double f)
{
	int *last = arg, pct = (int)(f * 100);

	if (pct / 10 > *last / 10 || (pct == 100 && *last != 100)) {
		*last = pct;
		mi_verbose("%d%%", pct);
	}
}

/* SHA-256 and size of the file at path. */
static int
hash_file(const char *path, char hex[65], off_t *size, struct mi_err *err)
{
	struct mi_sha256 *h = mi_sha256_new(err);
	char buf[65536];
	ssize_t n;
	int fd;

	if (h == NULL)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		mi_sha256_free(h);
		return mi_err_set_errno(err, EX_IOERR, "unable to read '%s'",
		    path);
	}
	*size = 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		mi_sha256_update(h, buf, (size_t)n);
		*size += n;
	}
	close(fd);
	mi_sha256_final(h, hex);
	mi_sha256_free(h);
	if (n < 0)
		return mi_err_set_errno(err, EX_IOERR, "unable to read '%s'",
		    path);
	return 0;
}

/*
 * Generates the request into a scratch file beside its final name, then
 * renames it: into -o's file, or to {sha256}.{ext} in the directory.
 * Returns the output record, or jv_invalid with err filled.
 */
static jv
generate(struct opts *o, const char *type, const char *prompt, jv params,
    struct mi_err *err)
{
	const char *ext = mi_gen_ext(type);
	char tmp[4096], final[4200], hex[65];
	struct mi_gen_progress prog;
	int fd, last = -1;
	off_t size = 0;
	mode_t mask;
	jv rec;

	if (ext == NULL) {
		jv_free(params);
		mi_err_set(err, EX_DATAERR, "unknown media_type '%s'",
		    type ? type : "");
		return jv_invalid();
	}
	if (o->output != NULL && o->done > 0) {
		jv_free(params);
		mi_err_set(err, EX_USAGE, "-o names one file, not %lu",
		    o->done + 1);
		return jv_invalid();
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s%s.mi-generate.XXXXXX",
	    o->output ? o->output : o->dir, o->output ? "" : "/") >=
	    sizeof(tmp)) {
		jv_free(params);
		mi_err_set(err, EX_USAGE, "output name too long");
		return jv_invalid();
	}
	if ((fd = mkstemp(tmp)) == -1) {
		jv_free(params);
		mi_err_set_errno(err, EX_IOERR, "unable to create '%s'", tmp);
		return jv_invalid();
	}
	/* mkstemp's 0600 would outlive the rename: honour the umask. */
	mask = umask(0);
	umask(mask);
	fchmod(fd, 0666 & ~mask);
	close(fd);
	prog.fn = progress;
	prog.arg = &last;
	if (mi_gen_request(type, prompt, params, &prog, tmp, err) == -1 ||
	    hash_file(tmp, hex, &size, err) == -1)
		goto fail;
	if (o->output)
		snprintf(final, sizeof(final), "%s", o->output);
	else
		snprintf(final, sizeof(final), "%s/%s.%s", o->dir, hex, ext);
	if (rename(tmp, final) == -1) {
		mi_err_set_errno(err, EX_IOERR, "unable to rename to '%s'",
		    final);
		goto fail;
	}
	o->done++;
	rec = jv_object();
	rec = jv_object_set(rec, jv_string("path"), jv_string(final));
	rec = jv_object_set(rec, jv_string("media_type"), jv_string(type));
	rec = jv_object_set(rec, jv_string("mime_type"),
	    jv_string(mi_gen_mime(type)));
	rec = jv_object_set(rec, jv_string("size_bytes"),
	    jv_number((double)size));
	rec = jv_object_set(rec, jv_string("content_hash"), jv_string(hex));
	return rec;
fail:
	unlink(tmp);
	return jv_invalid();
}

/* One request from the stream; returns 0, or -1 after an error record. */
static int
one_record(struct opts *o, jv req, unsigned long recno)
{
	struct mi_err err = MI_ERR_INIT;
	jv type, prompt, out;
	const char *const *k;

	if (jv_get_kind(req) != JV_KIND_OBJECT) {
		mi_json_write(stdout, mi_json_error(req, "VALIDATION_ERROR",
		    "request is not an object", 0));
		return -1;
	}
	if (mi_json_has_error(req)) {
		mi_json_write(stdout, req);
		return 0;
	}
	type = jv_object_get(jv_copy(req), jv_string("media_type"));
	prompt = jv_object_get(jv_copy(req), jv_string("prompt"));
	if (!jv_is_valid(type) || jv_get_kind(type) == JV_KIND_NULL)
		mi_err_set(&err, EX_DATAERR, "missing key 'media_type'");
	else if (jv_get_kind(type) != JV_KIND_STRING)
		mi_err_set(&err, EX_DATAERR, "key 'media_type' is not a string");
	else if (jv_is_valid(prompt) && jv_get_kind(prompt) !=
	    JV_KIND_STRING && jv_get_kind(prompt) != JV_KIND_NULL)
		mi_err_set(&err, EX_DATAERR, "key 'prompt' is not a string");
	out = err.code ? jv_invalid() : generate(o, jv_string_value(type),
	    jv_get_kind(prompt) == JV_KIND_STRING ? jv_string_value(prompt) :
	    "", jv_object_get(jv_copy(req), jv_string("params")), &err);
	jv_free(type);
	jv_free(prompt);
	if (!jv_is_valid(out)) {
		jv_free(out);
		mi_warn("record %lu: %s", recno, err.msg);
		mi_json_write(stdout, mi_json_error(req, mi_err_name(&err),
		    err.msg, err.code == EX_TEMPFAIL));
		return -1;
	}
	for (k = keep; *k; k++) {
		jv v = jv_object_get(jv_copy(req), jv_string(*k));

		if (jv_is_valid(v))
			out = jv_object_set(out, jv_string(*k), v);
		else
			jv_free(v);
	}
	jv_free(req);
	mi_json_write(stdout, out);
	return 0;
}

static int
stream(struct opts *o)
{
	struct mi_json_in *in = mi_json_in_new(stdin);
	struct mi_err err = MI_ERR_INIT;
	int r, failed = 0;
	jv req;

	if (in == NULL)
		mi_die(EX_SOFTWARE, "out of memory");
	while ((r = mi_json_next(in, &req, &err)) != 0) {
		if (r == -2)
			mi_die_err(&err);
		if (r == -1) {
			mi_warn("%s", err.msg);
			mi_json_write(stdout, mi_json_error(jv_object(),
			    "INVALID_JSON", err.msg, 0));
			failed = 1;
			continue;
		}
		if (one_record(o, req, mi_json_count(in)) == -1)
			failed = 1;
	}
	mi_json_in_free(in);
	return failed;
}

static void
add_param(struct opts *o, const char *kv)
{
	const char *eq = strchr(kv, '=');
	jv key, val;

	if (eq == NULL || eq == kv)
		mi_die(EX_USAGE, "bad parameter '%s' (want key=value)", kv);
	key = jv_string_sized(kv, (int)(eq - kv));
	val = jv_parse(eq + 1);
	if (!jv_is_valid(val)) {
		jv_free(val);
		val = jv_string(eq + 1);
	}
	o->params = jv_object_set(o->params, key, val);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "media-type", required_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ "param", required_argument, NULL, 'P' },
		{ "prompt", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { ".", NULL, NULL, NULL, jv_object(), 0 };
	struct mi_err err = MI_ERR_INIT;
	struct stat st;
	int c, failed;
	jv rec;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "d:o:P:p:t:v", longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'd':
			o.dir = optarg;
			break;
		case 'h':
			mi_usage(usage, 0);
		case 'o':
			o.output = optarg;
			break;
		case 'P':
			add_param(&o, optarg);
			break;
		case 'p':
			o.prompt = optarg;
			break;
		case 't':
			o.type = optarg;
			break;
		case 'v':
			mi_verbosity++;
			break;
		case 'V':
			mi_version();
		default:
			mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind != argc || (o.type == NULL && (o.prompt != NULL ||
	    jv_object_length(jv_copy(o.params)) > 0)))
		mi_usage(usage, EX_USAGE);
	if (o.output == NULL && (stat(o.dir, &st) == -1 ||
	    !S_ISDIR(st.st_mode)))
		mi_die(EX_USAGE, "'%s' is not a directory", o.dir);
	if (o.type == NULL) {
		jv_free(o.params);
		failed = stream(&o);
		mi_close_stdout();
		return failed ? 1 : 0;
	}
	rec = generate(&o, o.type, o.prompt ? o.prompt : "", o.params, &err);
	if (!jv_is_valid(rec))
		mi_die_err(&err);
	mi_json_write(stdout, rec);
	mi_close_stdout();
	return 0;
}
