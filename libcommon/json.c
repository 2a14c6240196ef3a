/*
 * json.c - the record stream over jv's incremental parser.
 *
 * Input is fed to the parser a line at a time.  After a syntax error the
 * parser is replaced and the rest of that line dropped; a value left
 * unfinished when a new line starts with '{' or '[' in column 0 is given up
 * as invalid too, since no pretty-printer puts a nested value there: so one
 * broken record costs that record only and the stream goes on.
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "banned.h"

#define MAX_LINE (64 * 1024 * 1024)

struct mi_json_in {
	FILE *fp;
	jv_parser *p;
	char *line;
	size_t cap;
	char *held;		/* a line to feed after a resync */
	size_t heldlen, heldcap;
	unsigned long count;
	int depth;		/* nesting outside strings, across lines */
	int instr, esc;
	int fed_final;
};

struct mi_json_in *
mi_json_in_new(FILE *fp)
{
	struct mi_json_in *in = calloc(1, sizeof(*in));

	if (in == NULL)
		return NULL;
	in->fp = fp;
	in->p = jv_parser_new(0);
	return in;
}

void
mi_json_in_free(struct mi_json_in *in)
{
	if (in == NULL)
		return;
	jv_parser_free(in->p);
	free(in->line);
	free(in->held);
	free(in);
}

unsigned long
mi_json_count(const struct mi_json_in *in)
{
	return in->count;
}

static void
reset(struct mi_json_in *in)
{
	jv_parser_free(in->p);
	in->p = jv_parser_new(0);
	in->depth = 0;
	in->instr = in->esc = 0;
}

static void
scan(struct mi_json_in *in, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (in->instr) {
			if (in->esc)
				in->esc = 0;
			else if (c == '\\')
				in->esc = 1;
			else if (c == '"')
				in->instr = 0;
		} else if (c == '"')
			in->instr = 1;
		else if (c == '{' || c == '[')
			in->depth++;
		else if ((c == '}' || c == ']') && in->depth > 0)
			in->depth--;
	}
}

int
mi_json_next(struct mi_json_in *in, jv *out, struct mi_err *err)
{
	for (;;) {
		jv v = jv_parser_next(in->p);
		ssize_t n;

		if (jv_is_valid(v)) {
			in->count++;
			*out = v;
			return 1;
		}
		if (jv_invalid_has_msg(jv_copy(v))) {
			jv msg = jv_invalid_get_msg(v);

			in->count++;
			mi_err_set(err, EX_DATAERR, "record %lu: %s", in->count,
			    jv_string_value(msg));
			jv_free(msg);
			reset(in);
			return -1;
		}
		jv_free(v);
		if (in->fed_final)
			return 0;
		if (in->held) {
			free(in->line);
			in->line = in->held;
			in->cap = in->heldcap;
			n = (ssize_t)in->heldlen;
			in->held = NULL;
		} else {
			n = getline(&in->line, &in->cap, in->fp);
			if (n == -1) {
				if (ferror(in->fp))
					return mi_err_set_errno(err, EX_IOERR,
					    "unable to read input") - 1;
				jv_parser_set_buf(in->p, "", 0, 0);
				in->fed_final = 1;
				continue;
			}
			if (n > MAX_LINE) {
				in->count++;
				reset(in);
				return mi_err_set(err, EX_DATAERR,
				    "record %lu: line longer than %d bytes",
				    in->count, MAX_LINE);
			}
			if (in->depth > 0 && !in->instr &&
			    (in->line[0] == '{' || in->line[0] == '[')) {
				/* Resync: hold the new line, give up the old
				 * value. */
				in->held = in->line;
				in->heldlen = (size_t)n;
				in->heldcap = in->cap;
				in->line = NULL;
				in->cap = 0;
				in->count++;
				reset(in);
				return mi_err_set(err, EX_DATAERR,
				    "record %lu: unfinished JSON value",
				    in->count);
			}
		}
		scan(in, in->line, (size_t)n);
		jv_parser_set_buf(in->p, in->line, (int)n, 1);
	}
}

void
mi_json_write(FILE *fp, jv v)
{
	jv_dumpf(v, fp, 0);
	putc('\n', fp);
	fflush(fp);
}

jv
mi_json_error(jv rec, const char *code, const char *msg, int retryable)
{
	jv e = jv_object();

	if (jv_get_kind(rec) != JV_KIND_OBJECT) {
		jv_free(rec);
		rec = jv_object();
	}
	e = jv_object_set(e, jv_string("code"), jv_string(code));
	e = jv_object_set(e, jv_string("message"), jv_string(msg));
	e = jv_object_set(e, jv_string("retryable"),
	    retryable ? jv_true() : jv_false());
	return jv_object_set(rec, jv_string("error"), e);
}

int
mi_json_has_error(jv rec)
{
	jv e;
	int has;

	if (jv_get_kind(rec) != JV_KIND_OBJECT)
		return 0;
	e = jv_object_get(jv_copy(rec), jv_string("error"));
	has = jv_is_valid(e) && jv_get_kind(e) != JV_KIND_NULL &&
	    jv_get_kind(e) != JV_KIND_FALSE;
	jv_free(e);
	return has;
}

/* Looks up key; returns 0 missing/null, 1 found (*v owned), -1 not object. */
static int
lookup(jv o, const char *key, jv *v)
{
	jv x;

	if (jv_get_kind(o) != JV_KIND_OBJECT)
		return -1;
	x = jv_object_get(jv_copy(o), jv_string(key));
	if (!jv_is_valid(x) || jv_get_kind(x) == JV_KIND_NULL) {
		jv_free(x);
		return 0;
	}
	*v = x;
	return 1;
}

static int
missing(const char *key, int required, struct mi_err *err)
{
	if (required)
		return mi_err_set(err, EX_DATAERR, "missing key '%s'", key);
	return 0;
}

/*
 * The string returned by mi_json_str borrows from o: jv strings are
 * refcounted and o keeps its own reference to the value.
 */
int
mi_json_str(jv o, const char *key, const char **s, int required,
    struct mi_err *err)
{
	jv v;
	int r = lookup(o, key, &v);

	if (r == -1)
		return mi_err_set(err, EX_DATAERR, "record is not an object");
	if (r == 0)
		return missing(key, required, err);
	if (jv_get_kind(v) != JV_KIND_STRING) {
		jv_free(v);
		return mi_err_set(err, EX_DATAERR, "key '%s' is not a string",
		    key);
	}
	/* A NUL inside would silently cut the string short in C. */
	if ((size_t)jv_string_length_bytes(jv_copy(v)) !=
	    strlen(jv_string_value(v))) {
		jv_free(v);
		return mi_err_set(err, EX_DATAERR,
		    "key '%s' contains a NUL character", key);
	}
	*s = jv_string_value(v);
	jv_free(v);
	return 1;
}

int
mi_json_num(jv o, const char *key, double *d, int required,
    struct mi_err *err)
{
	jv v;
	int r = lookup(o, key, &v);

	if (r == -1)
		return mi_err_set(err, EX_DATAERR, "record is not an object");
	if (r == 0)
		return missing(key, required, err);
	if (jv_get_kind(v) != JV_KIND_NUMBER) {
		jv_free(v);
		return mi_err_set(err, EX_DATAERR, "key '%s' is not a number",
		    key);
	}
	*d = jv_number_value(v);
	jv_free(v);
	return 1;
}

int
mi_json_bool(jv o, const char *key, int *b, int required,
    struct mi_err *err)
{
	jv v;
	int r = lookup(o, key, &v);
	jv_kind k;

	if (r == -1)
		return mi_err_set(err, EX_DATAERR, "record is not an object");
	if (r == 0)
		return missing(key, required, err);
	k = jv_get_kind(v);
	jv_free(v);
	if (k != JV_KIND_TRUE && k != JV_KIND_FALSE)
		return mi_err_set(err, EX_DATAERR, "key '%s' is not a boolean",
		    key);
	*b = k == JV_KIND_TRUE;
	return 1;
}

jv
mi_json_parse(const char *text, struct mi_err *err)
{
	jv v = jv_parse(text);

	if (!jv_is_valid(v)) {
		jv msg = jv_invalid_get_msg(v);

		mi_err_set(err, EX_DATAERR, "invalid JSON: %s",
		    jv_get_kind(msg) == JV_KIND_STRING ?
		    jv_string_value(msg) : "empty");
		jv_free(msg);
		return jv_invalid();
	}
	return v;
}

char *
mi_json_dump(jv v)
{
	jv s = jv_dump_string(jv_copy(v), 0);
	char *p = strdup(jv_string_value(s));

	jv_free(s);
	return p;
}
