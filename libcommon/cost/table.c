/*
 * cost/table.c - the columns of a report, its --by list, and its rows
 * written as JSON lines, CSV or an aligned table.
 */
#include <stdio.h>
#include <string.h>

#include "cost/cost.h"
#include "json.h"
#include "banned.h"

static const char *const budget_cols[] = { "tenant_id", "provider_id",
    "month", "monthly_limit_usd", "spent_usd", "remaining_usd" };

void
mi_cost_cols_add(struct mi_cost_cols *c, const char *name)
{
	if (c->n < MI_COST_MAX_COLS)
		c->name[c->n++] = name;
}

void
mi_cost_budget_cols(struct mi_cost_cols *c)
{
	size_t i;

	for (i = 0; i < sizeof(budget_cols) / sizeof(budget_cols[0]); i++)
		mi_cost_cols_add(c, budget_cols[i]);
}

int
mi_cost_parse_by(const char *by, const struct mi_cost_key *keys,
    struct mi_cost_cols *c, const struct mi_cost_key **sel,
    struct mi_err *err)
{
	char word[64];
	const char *p = by;
	int i, j, n = 0;

	while (*p) {
		size_t len = strcspn(p, ",");

		if (len == 0 || len >= sizeof(word))
			goto bad;
		memcpy(word, p, len);
		word[len] = '\0';
		for (i = 0; keys[i].word; i++)
			if (strcmp(word, keys[i].word) == 0 ||
			    strcmp(word, keys[i].col) == 0)
				break;
		if (keys[i].word == NULL)
			goto bad;
		for (j = 0; j < n; j++)
			if (sel[j] == &keys[i])
				goto bad;
		sel[n++] = &keys[i];
		mi_cost_cols_add(c, keys[i].col);
		p += len;
		if (*p == ',' && *++p == '\0')
			goto bad;
	}
	sel[n] = NULL;
	return 0;
bad:
	return mi_err_set(err, EX_USAGE, "invalid --by '%s'", by);
}

int
mi_cost_format_parse(const char *s, enum mi_cost_format *fmt)
{
	if (strcmp(s, "json") == 0)
		*fmt = MI_COST_JSON;
	else if (strcmp(s, "csv") == 0)
		*fmt = MI_COST_CSV;
	else if (strcmp(s, "table") == 0)
		*fmt = MI_COST_TABLE;
	else
		return -1;
	return 0;
}

/* A cell as text: usd columns with 4 decimals in tables, null empty. */
static void
cell(jv v, const char *col, enum mi_cost_format fmt, char *out,
    size_t outsz, int *num)
{
	size_t n = strlen(col);

	*num = jv_get_kind(v) == JV_KIND_NUMBER;
	if (jv_get_kind(v) == JV_KIND_STRING)
		snprintf(out, outsz, "%s", jv_string_value(v));
	else if (*num && fmt == MI_COST_TABLE && n > 4 &&
	    strcmp(col + n - 4, "_usd") == 0)
		snprintf(out, outsz, "%.4f", jv_number_value(v));
	else if (*num || jv_get_kind(v) == JV_KIND_TRUE ||
	    jv_get_kind(v) == JV_KIND_FALSE) {
		jv s = jv_dump_string(jv_copy(v), 0);

		snprintf(out, outsz, "%s", jv_string_value(s));
		jv_free(s);
	} else
		out[0] = '\0';
	jv_free(v);
}

static void
csv_field(FILE *fp, const char *s)
{
	if (strpbrk(s, ",\"\r\n") == NULL) {
		fputs(s, fp);
		return;
	}
	putc('"', fp);
	for (; *s; s++) {
		if (*s == '"')
			putc('"', fp);
		putc(*s, fp);
	}
	putc('"', fp);
}

void
mi_cost_print(FILE *fp, jv rows, const struct mi_cost_cols *c,
    enum mi_cost_format fmt)
{
	int i, k, n = jv_array_length(jv_copy(rows)), num[MI_COST_MAX_COLS];
	size_t w[MI_COST_MAX_COLS];
	char buf[512];

	if (fmt == MI_COST_JSON) {
		for (i = 0; i < n; i++)
			mi_json_write(fp, jv_array_get(jv_copy(rows), i));
		jv_free(rows);
		return;
	}
	for (k = 0; k < c->n; k++) {
		w[k] = strlen(c->name[k]);
		num[k] = 0;
	}
	/* A table's widths and alignments come from every row first. */
	for (i = 0; fmt == MI_COST_TABLE && i < n; i++) {
		jv r = jv_array_get(jv_copy(rows), i);

		for (k = 0; k < c->n; k++) {
			int isnum;

			cell(jv_object_get(jv_copy(r), jv_string(c->name[k])),
			    c->name[k], fmt, buf, sizeof(buf), &isnum);
			num[k] |= isnum;
			if (strlen(buf) > w[k])
				w[k] = strlen(buf);
		}
		jv_free(r);
	}
	for (i = -1; i < n; i++) {
		jv r = i < 0 ? jv_null() : jv_array_get(jv_copy(rows), i);

		for (k = 0; k < c->n; k++) {
			int isnum, last = k == c->n - 1;

			if (i < 0)
				snprintf(buf, sizeof(buf), "%s", c->name[k]);
			else
				cell(jv_object_get(jv_copy(r),
				    jv_string(c->name[k])), c->name[k], fmt,
				    buf, sizeof(buf), &isnum);
			if (k)
				fputs(fmt == MI_COST_CSV ? "," : "  ", fp);
			if (fmt == MI_COST_CSV)
				csv_field(fp, buf);
			else if (num[k])
				fprintf(fp, "%*s", (int)w[k], buf);
			else
				fprintf(fp, "%-*s", last ? 0 : (int)w[k], buf);
		}
		putc('\n', fp);
		jv_free(r);
	}
	jv_free(rows);
}
