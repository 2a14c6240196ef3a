/*
 * provider.c - loading, compiling and calling provider definitions.
 *
 * Each definition is compiled once into one jq program: the prelude
 * (include "mi"), the file, and a dispatcher that runs the function named
 * by the input's "fn" on its "in".  Later definitions shadow earlier ones
 * in jq, so a file overrides the prelude's defaults by defining the same
 * name.  The include sits on the file's first line so jq's line numbers
 * in compile errors are the file's own.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jq.h>

#include "json.h"
#include "paths.h"
#include "provider.h"
#include "banned.h"

#define MAX_DEF_SIZE (1024 * 1024)

struct mi_provider {
	char id[64];
	jq_state *jq;
	jv meta;		/* effective metadata */
	const char *transport;	/* points into meta */
	char errmsg[200];	/* last jq error message */
	struct mi_provider *next;
};

static struct mi_provider *loaded;
/* The thread that loads and calls the definitions (one per process). */
static pthread_t owner;
static int at_exit_set;

/* The functions a definition may define; the prelude defines them all. */
static const char dispatcher[] =
    "\ndef _mi_dispatch: .fn as $f | .in |"
    " if $f == \"provider\" then provider"
    " elif $f == \"validate\" then validate"
    " elif $f == \"cost\" then cost"
    " elif $f == \"submit\" then .webhook_url as $u | submit |"
    "  if $u then with_webhook($u) else . end"
    " elif $f == \"submitted\" then submitted"
    " elif $f == \"poll\" then poll"
    " elif $f == \"polled\" then polled"
    " elif $f == \"download\" then download"
    " elif $f == \"lookup\" then lookup"
    " elif $f == \"lost_create\" then lost_create"
    " elif $f == \"webhooks\" then webhooks"
    " elif $f == \"webhook_job\" then webhook_job"
    " elif $f == \"webhook\" then webhook"
    " elif $f == \"cancel\" then cancel"
    " elif $f == \"cancelled\" then cancelled"
    " else error(\"no function \" + $f) end;\n"
    "_mi_dispatch\n";

static const struct {
	const char *media;
	long poll_ms, timeout_ms;
	int concurrency;
} defaults[] = {
	{ "video", 5000, 300000, 2 },
	{ "audio_sfx", 2000, 30000, 2 },
	{ "audio_bgm", 5000, 180000, 2 },
	{ "model_3d", 10000, 600000, 2 },
	{ "image", 2000, 60000, 5 },
	{ "texture", 2000, 60000, 5 },
	{ "environment_map", 2000, 60000, 5 },
	{ NULL, 5000, 300000, 2 }
};

static int
id_ok(const char *id)
{
	size_t i;

	if (id == NULL || !(islower((unsigned char)id[0]) ||
	    isdigit((unsigned char)id[0])))
		return 0;
	for (i = 0; id[i]; i++)
		if (i >= 63 || !(islower((unsigned char)id[i]) ||
		    isdigit((unsigned char)id[i]) || id[i] == '-'))
			return 0;
	return 1;
}

/* The definitions directory. */
static int
providers_dir(char *out, size_t outsz)
{
	const char *d = getenv("MI_PROVIDERS_DIR");

	if (d && *d) {
		if ((size_t)snprintf(out, outsz, "%s", d) >= outsz)
			return -1;
		return 0;
	}
	return mi_share_path("providers", out, outsz);
}

static void
on_jq_error(void *arg, jv msg)
{
	struct mi_provider *p = arg;
	jv f = jq_format_error(msg);

	if (p->errmsg[0] == '\0' && jv_get_kind(f) == JV_KIND_STRING) {
		snprintf(p->errmsg, sizeof(p->errmsg), "%s",
		    jv_string_value(f));
		p->errmsg[strcspn(p->errmsg, "\n")] = '\0';
	}
	jv_free(f);
}

static char *
read_file(const char *path, struct mi_err *err)
{
	FILE *fp = fopen(path, "r");
	struct mi_buf b;
	char chunk[8192];
	size_t n;

	if (fp == NULL) {
		mi_err_set_errno(err, errno == ENOENT ? EX_DATAERR : EX_CONFIG,
		    "unable to open '%s'", path);
		return NULL;
	}
	mi_buf_init(&b, MAX_DEF_SIZE);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		if (mi_buf_add(&b, chunk, n) == -1) {
			fclose(fp);
			mi_buf_release(&b);
			mi_err_set(err, EX_CONFIG, "'%s' is too large", path);
			return NULL;
		}
	if (ferror(fp)) {
		fclose(fp);
		mi_buf_release(&b);
		mi_err_set_errno(err, EX_CONFIG, "unable to read '%s'", path);
		return NULL;
	}
	fclose(fp);
	return mi_buf_detach(&b, NULL);
}

/* "MI_" ID "_" field, ID upper-cased with '-' as '_'. */
static const char *
override(const char *id, const char *field)
{
	char name[160];
	size_t i, n;

	n = (size_t)snprintf(name, sizeof(name), "MI_%s_%s", id, field);
	if (n >= sizeof(name))
		return NULL;
	for (i = 3; i < 3 + strlen(id); i++)
		name[i] = name[i] == '-' ? '_' :
		    (char)toupper((unsigned char)name[i]);
	return getenv(name);
}

static int
apply_overrides(struct mi_provider *p, struct mi_err *err)
{
	static const struct {
		const char *env, *key;
		int numeric;
	} fields[] = {
		{ "BASE_URL", "base_url", 0 },
		{ "API_URL", "api_url", 0 },
		{ "LOST_CREATE", "lost_create", 0 },
		{ "MODEL", "model", 0 },
		{ "POLL_INTERVAL_MS", "poll_interval_ms", 1 },
		{ "TIMEOUT_MS", "timeout_ms", 1 },
		{ "CONCURRENCY", "concurrency", 1 },
		{ "ALLOWED_FAILS", "allowed_fails", 1 },
		{ "COOLDOWN_MS", "cooldown_ms", 1 },
		{ NULL, NULL, 0 }
	};
	unsigned long long v;
	const char *s;
	size_t i;

	for (i = 0; fields[i].env; i++) {
		if ((s = override(p->id, fields[i].env)) == NULL)
			continue;
		if (!fields[i].numeric) {
			p->meta = jv_object_set(p->meta,
			    jv_string(fields[i].key), jv_string(s));
			continue;
		}
		if (mi_parse_uint(s, strcmp(fields[i].env, "ALLOWED_FAILS") ?
		    1 : 0, 2147483647ULL, &v) == -1)
			return mi_err_set(err, EX_CONFIG,
			    "MI_%s_%s: not a number in range", p->id,
			    fields[i].env);
		p->meta = jv_object_set(p->meta, jv_string(fields[i].key),
		    jv_number((double)v));
	}
	/* An operator's lost-create policy overrides the definition's. */
	if (mi_json_str(p->meta, "lost_create", &s, 0, NULL) == 1 &&
	    strcmp(s, "resend") != 0 && strcmp(s, "hold") != 0)
		return mi_err_set(err, EX_CONFIG, "MI_%s_LOST_CREATE: '%.40s' "
		    "is neither resend nor hold", p->id, s);
	/* A base URL never ends in '/': requests add "/path". */
	if (mi_json_str(p->meta, "base_url", &s, 0, NULL) == 1) {
		size_t n = strlen(s);

		if (n > 0 && s[n - 1] == '/') {
			char *t = strdup(s);

			if (t == NULL)
				return mi_err_set(err, EX_OSERR,
				    "out of memory");
			while (n > 0 && t[n - 1] == '/')
				t[--n] = '\0';
			p->meta = jv_object_set(p->meta,
			    jv_string("base_url"), jv_string(t));
			free(t);
		}
	}
	return 0;
}

static int
check_meta(struct mi_provider *p, struct mi_err *err)
{
	const char *id = NULL, *tr = NULL, *base = NULL, *env = NULL;
	jv types, auth;

	if (jv_get_kind(p->meta) != JV_KIND_OBJECT)
		return mi_err_set(err, EX_CONFIG,
		    "provider '%s': `provider` is not an object", p->id);
	if (mi_json_str(p->meta, "id", &id, 1, err) == -1 ||
	    mi_json_str(p->meta, "transport", &tr, 1, err) == -1 ||
	    mi_json_str(p->meta, "base_url", &base, 0, err) == -1)
		return mi_err_prefix(err, "provider '%s'", p->id);
	if (strcmp(id, p->id) != 0)
		return mi_err_set(err, EX_CONFIG,
		    "provider '%s': id is '%s'", p->id, id);
	if (strcmp(tr, "http") && strcmp(tr, "sync") && strcmp(tr, "local"))
		return mi_err_set(err, EX_CONFIG,
		    "provider '%s': unknown transport '%s'", p->id, tr);
	if (strcmp(tr, "local") != 0 && base == NULL)
		return mi_err_set(err, EX_CONFIG,
		    "provider '%s': no base_url", p->id);
	types = jv_object_get(jv_copy(p->meta), jv_string("media_types"));
	if (jv_get_kind(types) != JV_KIND_ARRAY) {
		jv_free(types);
		return mi_err_set(err, EX_CONFIG,
		    "provider '%s': media_types is not an array", p->id);
	}
	jv_free(types);
	auth = jv_object_get(jv_copy(p->meta), jv_string("auth"));
	if (jv_get_kind(auth) == JV_KIND_OBJECT &&
	    mi_json_str(auth, "env", &env, 1, err) == -1) {
		jv_free(auth);
		return mi_err_prefix(err, "provider '%s': auth", p->id);
	}
	jv_free(auth);
	tr = NULL;
	mi_json_str(p->meta, "transport", &tr, 1, NULL);
	p->transport = tr;
	return 0;
}

static struct mi_provider *
load(const char *id, struct mi_err *err)
{
	char dir[1024], path[1200], lib1[1200], lib2[1200];
	struct mi_provider *p;
	struct mi_buf prog;
	char *text;
	jv meta;

	if (providers_dir(dir, sizeof(dir)) == -1 ||
	    (size_t)snprintf(path, sizeof(path), "%s/%s.jq", dir, id) >=
	    sizeof(path) ||
	    (size_t)snprintf(lib1, sizeof(lib1), "%s/lib", dir) >=
	    sizeof(lib1) ||
	    mi_share_path("providers/lib", lib2, sizeof(lib2)) == -1) {
		mi_err_set(err, EX_CONFIG, "providers directory path too long");
		return NULL;
	}
	if ((text = read_file(path, err)) == NULL) {
		if (err && err->code == EX_DATAERR)
			mi_err_set(err, EX_DATAERR, "unknown provider '%s'",
			    id);
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		free(text);
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	snprintf(p->id, sizeof(p->id), "%s", id);
	p->meta = jv_null();
	mi_buf_init(&prog, 0);
	if (mi_buf_adds(&prog, "include \"mi\"; ") == -1 ||
	    mi_buf_adds(&prog, text) == -1 ||
	    mi_buf_adds(&prog, dispatcher) == -1 ||
	    (p->jq = jq_init()) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		goto fail;
	}
	jq_set_error_cb(p->jq, on_jq_error, p);
	jq_set_attr(p->jq, jv_string("JQ_LIBRARY_PATH"),
	    jv_array_append(jv_array_append(jv_array(), jv_string(lib1)),
	    jv_string(lib2)));
	if (!jq_compile(p->jq, prog.buf)) {
		mi_err_set(err, EX_CONFIG, "provider '%s': %s", id,
		    p->errmsg[0] ? p->errmsg : "does not compile");
		goto fail;
	}
	meta = mi_provider_call(p, "provider", jv_object(), err);
	if (!jv_is_valid(meta)) {
		jv_free(meta);
		goto fail;
	}
	p->meta = meta;
	/* Webhooks and cancel: see webhook.h. */
	meta = mi_provider_call(p, "webhooks", jv_object(), err);
	if (!jv_is_valid(meta)) {
		jv_free(meta);
		goto fail;
	}
	if (jv_get_kind(meta) == JV_KIND_OBJECT)
		p->meta = jv_object_set(p->meta, jv_string("webhooks"), meta);
	else
		jv_free(meta);
	if (apply_overrides(p, err) == -1 || check_meta(p, err) == -1)
		goto fail;
	mi_buf_release(&prog);
	free(text);
	return p;
fail:
	mi_buf_release(&prog);
	free(text);
	if (p->jq)
		jq_teardown(&p->jq);
	jv_free(p->meta);
	free(p);
	return NULL;
}

/*
 * An exit that did not come through mi_provider_free_all (a fatal error:
 * the database gone for good, a signal) tears the definitions down too.
 * A jq state keeps its execution stack between calls, and points to it
 * only by the stack's end: leak checkers (valgrind, LeakSanitizer) cannot
 * see it is still held and report it as lost.  Only on the thread that
 * calls the definitions, never under another thread's feet.
 */
static void
free_at_exit(void)
{
	if (pthread_equal(pthread_self(), owner))
		mi_provider_free_all();
}

struct mi_provider *
mi_provider_get(const char *id, struct mi_err *err)
{
	struct mi_provider *p;

	if (!id_ok(id)) {
		mi_err_set(err, EX_DATAERR, "bad provider id '%.64s'",
		    id ? id : "");
		return NULL;
	}
	for (p = loaded; p; p = p->next)
		if (strcmp(p->id, id) == 0)
			return p;
	if ((p = load(id, err)) == NULL)
		return NULL;
	p->next = loaded;
	loaded = p;
	if (!at_exit_set) {
		owner = pthread_self();
		at_exit_set = atexit(free_at_exit) == 0;
	}
	return p;
}

void
mi_provider_free_all(void)
{
	struct mi_provider *p;

	while ((p = loaded) != NULL) {
		loaded = p->next;
		jq_teardown(&p->jq);
		jv_free(p->meta);
		free(p);
	}
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

jv
mi_provider_list(struct mi_err *err)
{
	char dir[1024], *names[256];
	struct dirent *de;
	size_t n = 0, i;
	DIR *d;
	jv out;

	if (providers_dir(dir, sizeof(dir)) == -1 ||
	    (d = opendir(dir)) == NULL) {
		mi_err_set_errno(err, EX_CONFIG,
		    "unable to open the providers directory");
		return jv_invalid();
	}
	while ((de = readdir(d)) != NULL && n < 256) {
		size_t len = strlen(de->d_name);
		char id[64];

		if (len < 4 || len - 3 >= sizeof(id) ||
		    strcmp(de->d_name + len - 3, ".jq") != 0)
			continue;
		memcpy(id, de->d_name, len - 3);
		id[len - 3] = '\0';
		if (id_ok(id) && (names[n] = strdup(id)) != NULL)
			n++;
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_str);
	out = jv_array();
	for (i = 0; i < n; i++) {
		out = jv_array_append(out, jv_string(names[i]));
		free(names[i]);
	}
	return out;
}

const char *
mi_provider_id(const struct mi_provider *p)
{
	return p->id;
}

const char *
mi_provider_transport(const struct mi_provider *p)
{
	return p->transport;
}

jv
mi_provider_meta(const struct mi_provider *p)
{
	return jv_copy(p->meta);
}

int
mi_provider_supports(const struct mi_provider *p, const char *media_type)
{
	jv types = jv_object_get(jv_copy(p->meta), jv_string("media_types"));
	int i, n, hit = 0;

	n = jv_get_kind(types) == JV_KIND_ARRAY ?
	    jv_array_length(jv_copy(types)) : 0;
	for (i = 0; i < n && !hit; i++) {
		jv t = jv_array_get(jv_copy(types), i);

		hit = jv_get_kind(t) == JV_KIND_STRING &&
		    strcmp(jv_string_value(t), media_type) == 0;
		jv_free(t);
	}
	jv_free(types);
	return hit;
}

/* meta[key] as a number, or meta[key][media] / meta[key].default when it
 * is an object; -1 when absent. */
static double
setting(const struct mi_provider *p, const char *key, const char *media)
{
	jv v = jv_object_get(jv_copy(p->meta), jv_string(key));
	double d = -1;

	if (jv_get_kind(v) == JV_KIND_OBJECT) {
		jv m = jv_object_get(jv_copy(v), jv_string(media ? media :
		    "default"));

		if (jv_get_kind(m) != JV_KIND_NUMBER) {
			jv_free(m);
			m = jv_object_get(jv_copy(v), jv_string("default"));
		}
		jv_free(v);
		v = m;
	}
	if (jv_get_kind(v) == JV_KIND_NUMBER && jv_number_value(v) > 0)
		d = jv_number_value(v);
	jv_free(v);
	return d;
}

static int
default_index(const char *media)
{
	int i;

	for (i = 0; defaults[i].media; i++)
		if (media && strcmp(defaults[i].media, media) == 0)
			break;
	return i;
}

long
mi_provider_poll_interval_ms(const struct mi_provider *p,
    const char *media_type)
{
	double d = setting(p, "poll_interval_ms", media_type);

	return d > 0 ? (long)d : defaults[default_index(media_type)].poll_ms;
}

long
mi_provider_timeout_ms(const struct mi_provider *p, const char *media_type)
{
	double d = setting(p, "timeout_ms", media_type);

	return d > 0 ? (long)d :
	    defaults[default_index(media_type)].timeout_ms;
}

int
mi_provider_concurrency(const struct mi_provider *p, const char *media_type)
{
	double d = setting(p, "concurrency", media_type);

	return d >= 1 ? (int)d :
	    defaults[default_index(media_type)].concurrency;
}

static long
env_long(const char *name, long dflt)
{
	const char *s = getenv(name);
	unsigned long long v;

	if (s == NULL || mi_parse_uint(s, 0, 2147483647ULL, &v) == -1)
		return dflt;
	return (long)v;
}

void
mi_provider_cooldown(const struct mi_provider *p, int *allowed_fails,
    long *window_ms, long *cooldown_ms)
{
	jv v = jv_object_get(jv_copy(p->meta), jv_string("allowed_fails"));
	double d;

	*allowed_fails = (int)env_long("MI_ALLOWED_FAILS", 3);
	if (jv_get_kind(v) == JV_KIND_NUMBER && jv_number_value(v) >= 0)
		*allowed_fails = (int)jv_number_value(v);
	jv_free(v);
	*cooldown_ms = env_long("MI_COOLDOWN_MS", 60000);
	if ((d = setting(p, "cooldown_ms", NULL)) > 0)
		*cooldown_ms = (long)d;
	*window_ms = env_long("MI_FAILURE_WINDOW_MS", 60000);
}

jv
mi_provider_call(struct mi_provider *p, const char *fn, jv input,
    struct mi_err *err)
{
	jv in, out, msg;

	if (jv_get_kind(input) != JV_KIND_OBJECT) {
		jv_free(input);
		input = jv_object();
	}
	if (jv_is_valid(p->meta) && jv_get_kind(p->meta) == JV_KIND_OBJECT)
		input = jv_object_set(input, jv_string("provider"),
		    jv_copy(p->meta));
	in = jv_object_set(jv_object(), jv_string("fn"), jv_string(fn));
	in = jv_object_set(in, jv_string("in"), input);
	p->errmsg[0] = '\0';
	jq_start(p->jq, in, 0);
	out = jq_next(p->jq);
	if (jv_is_valid(out))
		return out;
	if (jv_invalid_has_msg(jv_copy(out))) {
		msg = jv_invalid_get_msg(out);
		if (jv_get_kind(msg) == JV_KIND_STRING)
			mi_err_set(err, EX_CONFIG, "provider '%s': %s: %s",
			    p->id, fn, jv_string_value(msg));
		else {
			char *s = mi_json_dump(msg);

			mi_err_set(err, EX_CONFIG, "provider '%s': %s: %s",
			    p->id, fn, s ? s : "error");
			free(s);
		}
		jv_free(msg);
	} else {
		jv_free(out);
		mi_err_set(err, EX_CONFIG, "provider '%s': %s gave no value",
		    p->id, fn);
	}
	return jv_invalid();
}

const char *
mi_provider_key_env(const struct mi_provider *p)
{
	jv auth = jv_object_get(jv_copy(p->meta), jv_string("auth"));
	const char *env = NULL;

	if (jv_get_kind(auth) == JV_KIND_OBJECT)
		mi_json_str(auth, "env", &env, 0, NULL);
	jv_free(auth);
	/* env points into p->meta, which outlives this call. */
	return env;
}

int
mi_provider_auth(const struct mi_provider *p, struct mi_buf *out,
    struct mi_err *err)
{
	jv auth = jv_object_get(jv_copy(p->meta), jv_string("auth"));
	const char *env = NULL, *header = NULL, *prefix = "", *key;
	int r;

	if (jv_get_kind(auth) != JV_KIND_OBJECT) {
		jv_free(auth);
		return 0;
	}
	mi_json_str(auth, "env", &env, 0, NULL);
	mi_json_str(auth, "header", &header, 0, NULL);
	mi_json_str(auth, "prefix", &prefix, 0, NULL);
	if (env == NULL) {
		jv_free(auth);
		return 0;
	}
	if ((key = getenv(env)) == NULL || *key == '\0') {
		r = mi_err_set(err, EX_CONFIG, "%s is not set", env);
		jv_free(auth);
		return r;
	}
	if (strpbrk(key, "\r\n") != NULL) {
		r = mi_err_set(err, EX_CONFIG, "%s holds a line break", env);
		jv_free(auth);
		return r;
	}
	r = mi_buf_addf(out, "%s: %s%s", header ? header : "Authorization",
	    prefix ? prefix : "", key);
	jv_free(auth);
	return r == -1 ? mi_err_set(err, EX_OSERR, "out of memory") : 1;
}
