/*
 * json.c - the record stream over jv's incremental parser.
 *
 * Input is fed to the parser a line at a time, and a new line only once the
 * parser has consumed the last one (jv asserts otherwise).  After a syntax
 * error the parser is replaced and the rest of that line dropped; a value
 * left unfinished when a new line starts with '{' or '[' in column 0 is
 * given up as invalid too, since no pretty-printer puts a nested value
 * there: so one broken record costs that record only and the stream goes on.
 *
 * Some input never reaches the parser.  0x1E (RS): jv silently resets
 * itself on it in the middle of a buffer, then asserts when fed the next
 * one.  0x00: jv reads it as the number 0.  A value that follows another
 * inside an array or object with no separator: jv reports it but leaks the
 * second value (jq 1.6).  None of these is JSON: the line is cut before
 * it, and the value in progress with the rest of the line becomes one
 * error record.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "banned.h"

#define MAX_LINE (64 * 1024 * 1024)
#define NO_SEPARATOR 0x100	/* a cut: a value right after another */

struct mi_json_in {
	FILE *fp;
	jv_parser *p;
	char *line;
	size_t cap;
	char *held;		/* a line to feed after a resync */
	size_t heldlen, heldcap;
	int heldcut;
	int cut;		/* why the fed line was cut short, or -1 */
	unsigned long count;
	unsigned long lines;
	int depth;		/* nesting outside strings, across lines */
	int instr, esc;
	int after;		/* a value has ended inside an array/object */
	int inlit;		/* inside a literal (number, true, ...) */
	int fed_final;
};

struct mi_json_in *
mi_json_in_new(FILE *fp)
{
	struct mi_json_in *in = calloc(1, sizeof(*in));

	if (in == NULL)
		return NULL;
	in->fp = fp;
	in->cut = -1;
	if ((in->p = jv_parser_new(0)) == NULL) {
		free(in);
		return NULL;
	}
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
	in->after = in->inlit = 0;
	in->cut = -1;
}

/* Cuts the line before its first NUL or RS byte; returns the byte or -1. */
static int
cut_bytes(const char *s, size_t *n)
{
	size_t i;

	for (i = 0; i < *n; i++) {
		if (s[i] == '\0' || s[i] == '\036') {
			*n = i;
			return (unsigned char)s[i];
		}
	}
	return -1;
}

/*
 * Follows the structure outside strings, across lines, as jv classifies
 * bytes: the nesting (for the resync) and whether a value has just ended
 * inside an array or object.  Returns the offset of a value that follows
 * another there without a separator, or n.
 */
static size_t
scan(struct mi_json_in *in, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = s[i];
		int start = 0;

		if (in->instr) {
			if (in->esc)
				in->esc = 0;
			else if (c == '\\')
				in->esc = 1;
			else if (c == '"') {
				in->instr = 0;
				in->after = in->depth > 0;
			}
			continue;
		}
		switch (c) {
		case ' ': case '\t': case '\r': case '\n':
		case ',': case ':': case '}': case ']':
			break;
		case '"': case '{': case '[':
			start = 1;
			break;
		default:
			if (in->inlit)
				continue;
			start = 1;
			break;
		}
		if (in->inlit) {
			/* The literal ends here: it was a value. */
			in->inlit = 0;
			in->after = in->depth > 0;
		}
		if (start && in->after)
			return i;
		switch (c) {
		case ',': case ':':
			in->after = 0;
			break;
		case '}': case ']':
			if (in->depth > 0)
				in->depth--;
			in->after = in->depth > 0;
			break;
		case '"':
			in->instr = 1;
			break;
		case '{': case '[':
			in->depth++;
			break;
		case ' ': case '\t': case '\r': case '\n':
			break;
		default:
			in->inlit = 1;
			break;
		}
	}
	return n;
}

int
mi_json_next(struct mi_json_in *in, jv *out, struct mi_err *err)
{
	for (;;) {
		jv v = jv_parser_next(in->p);
		ssize_t n;
		size_t len;
		int cut;

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
		if (jv_parser_remaining(in->p) > 0) {
			/* Stopped short with neither a value nor an error. */
			in->count++;
			reset(in);
			return mi_err_set(err, EX_DATAERR,
			    "record %lu: unparseable input at line %lu",
			    in->count, in->lines);
		}
		if (in->cut != -1) {
			cut = in->cut;
			in->count++;
			reset(in);
			if (cut == NO_SEPARATOR)
				return mi_err_set(err, EX_DATAERR,
				    "record %lu: expected a separator between "
				    "values at line %lu", in->count, in->lines);
			return mi_err_set(err, EX_DATAERR,
			    "record %lu: invalid byte 0x%02X at line %lu",
			    in->count, cut, in->lines);
		}
		if (in->fed_final)
			return 0;
		if (in->held) {
			free(in->line);
			in->line = in->held;
			in->cap = in->heldcap;
			len = in->heldlen;
			cut = in->heldcut;
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
			in->lines++;
			if (n > MAX_LINE) {
				in->count++;
				reset(in);
				return mi_err_set(err, EX_DATAERR,
				    "record %lu: line longer than %d bytes",
				    in->count, MAX_LINE);
			}
			len = (size_t)n;
			cut = cut_bytes(in->line, &len);
			if (in->depth > 0 && !in->instr &&
			    (in->line[0] == '{' || in->line[0] == '[')) {
				/* Resync: hold the new line, give up the old
				 * value. */
				in->held = in->line;
				in->heldlen = len;
				in->heldcap = in->cap;
				in->heldcut = cut;
				in->line = NULL;
				in->cap = 0;
				in->count++;
				reset(in);
				return mi_err_set(err, EX_DATAERR,
				    "record %lu: unfinished JSON value",
				    in->count);
			}
		}
		n = (ssize_t)scan(in, in->line, len);
		if ((size_t)n < len)
			cut = NO_SEPARATOR;
		in->cut = cut;
		jv_parser_set_buf(in->p, in->line, (int)n, 1);
	}
}

void
mi_json_write(FILE *fp, jv v)
{
	jv_dumpf(v, fp, 0);
	putc('\n', fp);
	/* Keep the cause for mi_close_stdout: errno will not last. */
	if ((fflush(fp) != 0 || ferror(fp)) && fp == stdout)
		mi_note_write_error(errno);
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
