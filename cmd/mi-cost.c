/*
 * mi-cost - spend and storage reports per tenant, and monthly budgets.
 * Reads app.generation_jobs (cost report), app.run_steps (--by step:
 * each step's jobs, creates, costs and cache savings), app.artifacts and
 * the store (--storage) or app.tenant_budgets (--budgets, --set-budget);
 * writes one JSON record per group, CSV or an aligned table on stdout.
 * Exits 0, 64, 69 (no database), 70, 74 or 78 (no DATABASE_URL or store
 * directory).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "budget.h"
#include "buf.h"
#include "db.h"
#include "err.h"
#include "json.h"
#include "names.h"
#include "store.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-cost [-t tenant] [-p provider] [-s since] [-u until]"
    " [-b keys] [-f format]\n"
    "       mi-cost --storage [-t tenant] [-b tenant,type] [-f format]\n"
    "       mi-cost --budgets [-t tenant] [-p provider] [-f format]\n"
    "       mi-cost --set-budget [-p provider] tenant usd|none\n"
    "  -b, --by KEYS       group by a comma list of tenant, provider,\n"
    "                      media_type, model, day, run, or by step alone\n"
    "                      (--storage: tenant, type); default: tenant\n"
    "  -f, --format F      json (default), csv or table\n"
    "  -p, --provider P    only jobs (budgets) of provider P\n"
    "  -s, --since DATE    jobs created at or after DATE\n"
    "  -t, --tenant T      only tenant T\n"
    "  -u, --until DATE    jobs created before DATE (a day: through it)\n"
    "      --budgets       list budgets with this month's spend\n"
    "      --set-budget    set (or with none, remove) a monthly budget\n"
    "      --storage       report artifacts and bytes in the store\n"
    "      --help          this text\n"
    "      --version       print the version\n"
    "DATE: 2025-06-01, 2025-06, 2025-06-01T12:00:00Z, today, yesterday,\n"
    "now, or N[hdw] ago (7d); days are UTC unless PGTZ names a zone.";

enum format { FMT_JSON, FMT_CSV, FMT_TABLE };
enum verb { V_REPORT, V_STORAGE, V_BUDGETS, V_SET_BUDGET };

struct opts {
	enum verb verb;
	enum format fmt;
	const char *tenant, *provider, *since, *until, *by;
};

#define MAX_COLS 32

struct cols {
	const char *name[MAX_COLS];
	int n;
};

/* Grouping keys of the cost report: option word, column, SQL. */
static const struct key {
	const char *word, *col, *sql;
} report_keys[] = {
	{ "tenant", "tenant_id", "tenant_id" },
	{ "provider", "provider_id", "provider_id" },
	{ "media_type", "media_type", "media_type" },
	{ "model", "model", "model" },
	{ "day", "day", "day" },
	{ "run", "run_id", "run_id" },
	{ NULL, NULL, NULL }
}, storage_keys[] = {
	{ "tenant", "tenant_id", NULL },
	{ "type", "type", NULL },
	{ NULL, NULL, NULL }
};

/*
 * The figures of each group.  A failed or timed-out job that another job
 * replaced (previous_job_id) is a fallen-back attempt; its cost is shown
 * apart from that of failures that ended their chain.
 */
static const struct metric {
	const char *col, *sql;
} metrics[] = {
	{ "jobs", "count(*)" },
	{ "completed", "count(*) FILTER (WHERE status = 'completed')" },
	{ "failed", "count(*) FILTER (WHERE status = 'failed')" },
	{ "timed_out", "count(*) FILTER (WHERE status = 'timed_out')" },
	{ "open", "count(*) FILTER (WHERE status IN ('pending', 'processing'))" },
	{ "fallen_back", "count(*) FILTER (WHERE fell_back)" },
	{ "cost_usd", "coalesce(sum(cost_usd), 0)" },
	{ "cost_completed_usd", "coalesce(sum(cost_usd)"
	    " FILTER (WHERE status = 'completed'), 0)" },
	{ "cost_failed_usd", "coalesce(sum(cost_usd) FILTER (WHERE status IN"
	    " ('failed', 'timed_out') AND NOT fell_back), 0)" },
	{ "cost_fallback_usd", "coalesce(sum(cost_usd)"
	    " FILTER (WHERE fell_back), 0)" },
	{ "cost_open_usd", "coalesce(sum(cost_usd) FILTER (WHERE status IN"
	    " ('pending', 'processing')), 0)" },
	{ "cost_provider_usd", "coalesce(sum(cost_usd)"
	    " FILTER (WHERE cost_source = 'provider'), 0)" },
	{ "cost_estimate_usd", "coalesce(sum(cost_usd)"
	    " FILTER (WHERE cost_source IS DISTINCT FROM 'provider'), 0)" },
	{ "video_sec", "coalesce(sum(dur) FILTER (WHERE status = 'completed'"
	    " AND media_type = 'video'), 0)" },
	{ "audio_sec", "coalesce(sum(dur) FILTER (WHERE status = 'completed'"
	    " AND media_type IN ('audio_sfx', 'audio_bgm')), 0)" },
	{ "models", "count(*) FILTER (WHERE status = 'completed'"
	    " AND media_type = 'model_3d')" },
	{ "images", "count(*) FILTER (WHERE status = 'completed'"
	    " AND media_type IN ('image', 'texture', 'environment_map'))" },
	{ NULL, NULL }
};

static const char *const storage_cols[] = { "artifacts", "files",
    "logical_bytes", "physical_bytes", "allocated_bytes", "saved_bytes",
    "saved_pct" };
static const char *const budget_cols[] = { "tenant_id", "provider_id",
    "month", "monthly_limit_usd", "spent_usd", "remaining_usd" };

/* The jobs in range, with the derived columns the report groups on. */
static const char jobs_sql[] =
    "WITH j AS (SELECT g.tenant_id, g.provider_id, g.media_type, g.run_id,"
    " g.status, g.cost_usd, g.cost_source,"
    " to_char(g.created_at, 'YYYY-MM-DD') AS day,"
    " coalesce(g.input_params->>'model', g.request->>'model',"
    "  g.request->'params'->>'model', g.provider_id) AS model,"
    " (g.status IN ('failed', 'timed_out') AND r.previous_job_id IS NOT NULL)"
    "  AS fell_back,"
    " coalesce(CASE WHEN jsonb_typeof(g.input_params->'duration_sec')"
    "  = 'number' THEN (g.input_params->>'duration_sec')::numeric END,"
    "  CASE WHEN jsonb_typeof(g.input_params->'params'->'duration_sec')"
    "  = 'number' THEN (g.input_params->'params'->>'duration_sec')::numeric"
    "  END, 0) AS dur"
    " FROM app.generation_jobs g"
    " LEFT JOIN (SELECT DISTINCT previous_job_id FROM app.generation_jobs"
    "  WHERE previous_job_id IS NOT NULL) r ON r.previous_job_id = g.id"
    " WHERE ($1::text IS NULL OR g.tenant_id = $1)"
    " AND ($2::text IS NULL OR g.provider_id = $2)"
    " AND ($3::timestamptz IS NULL OR g.created_at >= $3::timestamptz)"
    " AND ($4::timestamptz IS NULL OR g.created_at < $4::timestamptz))"
    " SELECT json_build_object(";

static void
add_col(struct cols *c, const char *name)
{
	if (c->n < MAX_COLS)
		c->name[c->n++] = name;
}

/* Parses the --by list against keys; fills the key columns of c. */
static void
parse_by(const char *by, const struct key *keys, struct cols *c,
    const struct key **sel)
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
		add_col(c, keys[i].col);
		p += len;
		if (*p == ',' && *++p == '\0')
			goto bad;
	}
	sel[n] = NULL;
	return;
bad:
	fprintf(stderr, "mi-cost: invalid --by '%s'\n", by);
	mi_usage(usage, EX_USAGE);
}

static int
is_relative(const char *s, const char **unit)
{
	size_t n = strspn(s, "0123456789");

	if (n == 0 || n > 6 || s[n + 1] != '\0')
		return 0;
	switch (s[n]) {
	case 'h': *unit = "hours"; return 1;
	case 'd': *unit = "days"; return 1;
	case 'w': *unit = "weeks"; return 1;
	}
	return 0;
}

/* A day, month or PostgreSQL's day words: as an upper bound, a whole one. */
static int
is_day(const char *s, int *month)
{
	size_t n = strlen(s);

	*month = n == 7 && strspn(s, "0123456789-") == 7 && s[4] == '-';
	if (*month)
		return 1;
	if (n == 10 && strspn(s, "0123456789-") == 10 && s[4] == '-' &&
	    s[7] == '-')
		return 1;
	return strcmp(s, "today") == 0 || strcmp(s, "yesterday") == 0 ||
	    strcmp(s, "tomorrow") == 0;
}

/*
 * Resolves a --since/--until DATE to a timestamp text, letting PostgreSQL
 * parse ISO 8601 in the session's time zone.  Returns a malloc'd string.
 */
static char *
resolve_date(struct mi_db *db, const char *s, int upper)
{
	struct mi_err err = MI_ERR_INIT;
	char text[128];
	const char *unit, *sql, *params[1];
	jv v;
	char *out;
	int month;

	params[0] = text;
	if (strlen(s) > 64)
		goto bad;
	if (is_relative(s, &unit)) {
		snprintf(text, sizeof(text), "%.*s %s", (int)strlen(s) - 1, s,
		    unit);
		sql = "SELECT to_json(now() - $1::interval)";
	} else if (is_day(s, &month)) {
		snprintf(text, sizeof(text), "%s%s", s, month ? "-01" : "");
		if (!upper)
			sql = "SELECT to_json($1::date::timestamptz)";
		else if (month)
			sql = "SELECT to_json(($1::date + interval '1 month')"
			    "::timestamptz)";
		else
			sql = "SELECT to_json(($1::date + 1)::timestamptz)";
	} else {
		snprintf(text, sizeof(text), "%s", s);
		sql = "SELECT to_json($1::timestamptz)";
	}
	v = mi_db_json1(db, sql, 1, params, &err);
	if (!jv_is_valid(v)) {
		if (err.code == EX_UNAVAILABLE || err.code == EX_TEMPFAIL)
			mi_die_err(&err);
		goto bad;
	}
	if (jv_get_kind(v) != JV_KIND_STRING)
		goto bad;
	out = strdup(jv_string_value(v));
	jv_free(v);
	if (out == NULL)
		mi_die(EX_OSERR, "out of memory");
	return out;
bad:
	fprintf(stderr, "mi-cost: invalid date '%s'\n", s);
	mi_usage(usage, EX_USAGE);
}

/* A cell as text: usd columns with 4 decimals in tables, null empty. */
static void
cell(jv v, const char *col, enum format fmt, char *out, size_t outsz,
    int *num)
{
	size_t n = strlen(col);

	*num = jv_get_kind(v) == JV_KIND_NUMBER;
	if (jv_get_kind(v) == JV_KIND_STRING)
		snprintf(out, outsz, "%s", jv_string_value(v));
	else if (*num && fmt == FMT_TABLE && n > 4 &&
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
csv_field(const char *s)
{
	if (strpbrk(s, ",\"\r\n") == NULL) {
		fputs(s, stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
}

/*
 * Prints rows (consumed) as JSON lines, CSV with a header, or a table
 * whose numeric columns are right-aligned, header included.
 */
static void
print_rows(jv rows, const struct cols *c, enum format fmt)
{
	int i, k, n = jv_array_length(jv_copy(rows)), num[MAX_COLS];
	size_t w[MAX_COLS];
	char buf[512];

	if (fmt == FMT_JSON) {
		for (i = 0; i < n; i++)
			mi_json_write(stdout, jv_array_get(jv_copy(rows), i));
		jv_free(rows);
		return;
	}
	for (k = 0; k < c->n; k++) {
		w[k] = strlen(c->name[k]);
		num[k] = 0;
	}
	for (i = 0; fmt == FMT_TABLE && i < n; i++) {
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
				fputs(fmt == FMT_CSV ? "," : "  ", stdout);
			if (fmt == FMT_CSV)
				csv_field(buf);
			else if (num[k])
				printf("%*s", (int)w[k], buf);
			else
				printf("%-*s", last ? 0 : (int)w[k], buf);
		}
		putchar('\n');
		jv_free(r);
	}
	jv_free(rows);
}

static jv
query(struct mi_db *db, const char *sql, int n, const char *const *params)
{
	struct mi_err err = MI_ERR_INIT;
	jv rows = mi_db_json(db, sql, n, params, &err);

	if (!jv_is_valid(rows))
		mi_die_err(&err);
	return rows;
}

/*
 * The step report (--by step): one row per app.run_steps row, with its
 * jobs' counts, creates and costs, and for a step served from the step
 * cache what the hit saved: the cost of the job that made the artifact.
 */
static const char *const step_cols[] = { "tenant_id", "run_id",
    "workflow_name", "step_id", "run_step_id", "status", "attempt",
    "jobs", "creates", "completed", "failed", "timed_out", "open",
    "fallen_back", "cost_usd", "cost_fallback_usd", "cost_provider_usd",
    "cost_estimate_usd", "cache_hits", "cache_saved_usd" };

static const char steps_sql[] =
    "WITH s AS (SELECT s.* FROM app.run_steps s"
    "  WHERE ($1::text IS NULL OR s.tenant_id = $1)"
    "  AND ($3::timestamptz IS NULL OR s.created_at >= $3::timestamptz)"
    "  AND ($4::timestamptz IS NULL OR s.created_at < $4::timestamptz)"
    "  AND ($2::text IS NULL OR s.debug->>'provider' = $2 OR EXISTS ("
    "   SELECT 1 FROM app.generation_jobs g WHERE g.run_step_id = s.id"
    "   AND g.provider_id = $2))),"
    " j AS (SELECT g.run_step_id, g.id, g.status, g.cost_usd,"
    "  g.cost_source, g.submit_count,"
    "  g.status IN ('failed', 'timed_out') AND EXISTS (SELECT 1"
    "   FROM app.generation_jobs n WHERE n.previous_job_id = g.id)"
    "   AS fell_back"
    "  FROM app.generation_jobs g WHERE g.run_step_id IN (SELECT id FROM s)"
    "  AND ($2::text IS NULL OR g.provider_id = $2))"
    " SELECT json_build_object('tenant_id', s.tenant_id,"
    "  'run_id', s.run_id, 'workflow_name', s.workflow_name,"
    "  'step_id', s.step_id, 'run_step_id', s.id, 'status', s.status,"
    "  'attempt', s.attempt, 'jobs', count(j.id),"
    "  'creates', coalesce(sum(j.submit_count), 0),"
    "  'completed', count(j.id) FILTER (WHERE j.status = 'completed'),"
    "  'failed', count(j.id) FILTER (WHERE j.status = 'failed'),"
    "  'timed_out', count(j.id) FILTER (WHERE j.status = 'timed_out'),"
    "  'open', count(j.id) FILTER (WHERE j.status IN ('pending',"
    "   'processing')),"
    "  'fallen_back', count(j.id) FILTER (WHERE j.fell_back),"
    "  'cost_usd', coalesce(sum(j.cost_usd), 0),"
    "  'cost_fallback_usd', coalesce(sum(j.cost_usd)"
    "   FILTER (WHERE j.fell_back), 0),"
    "  'cost_provider_usd', coalesce(sum(j.cost_usd)"
    "   FILTER (WHERE j.cost_source = 'provider'), 0),"
    "  'cost_estimate_usd', coalesce(sum(j.cost_usd)"
    "   FILTER (WHERE j.cost_source IS DISTINCT FROM 'provider'), 0),"
    "  'cache_hits', CASE WHEN s.cache_hit THEN 1 ELSE 0 END,"
    "  'cache_saved_usd', CASE WHEN s.cache_hit THEN coalesce((SELECT"
    "   g.cost_usd FROM app.artifacts a JOIN app.generation_jobs g"
    "   ON g.id = a.job_id WHERE jsonb_typeof(s.output_artifact_ids) ="
    "   'array' AND a.id = (s.output_artifact_ids->>0)::uuid),"
    "   (s.debug->'cache'->>'saved_usd')::numeric, 0) ELSE 0 END)"
    " FROM s LEFT JOIN j ON j.run_step_id = s.id"
    " GROUP BY s.id, s.tenant_id, s.run_id, s.workflow_name, s.step_id,"
    "  s.status, s.attempt, s.cache_hit, s.output_artifact_ids, s.debug,"
    "  s.created_at"
    " ORDER BY s.tenant_id, s.run_id, s.created_at, s.step_id";

static void
steps_report(struct mi_db *db, const struct opts *o)
{
	struct cols c = { { NULL }, 0 };
	const char *params[4];
	char *since = NULL, *until = NULL;
	size_t i;

	for (i = 0; i < sizeof(step_cols) / sizeof(step_cols[0]); i++)
		add_col(&c, step_cols[i]);
	if (o->since)
		since = resolve_date(db, o->since, 0);
	if (o->until)
		until = resolve_date(db, o->until, 1);
	params[0] = o->tenant;
	params[1] = o->provider;
	params[2] = since;
	params[3] = until;
	print_rows(query(db, steps_sql, 4, params), &c, o->fmt);
	free(since);
	free(until);
}

static void
report(struct mi_db *db, const struct opts *o)
{
	const struct key *sel[8];
	struct mi_buf sql = MI_BUF_INIT;
	struct cols c = { { NULL }, 0 };
	const char *params[4];
	char *since = NULL, *until = NULL;
	int i;

	parse_by(o->by ? o->by : "tenant", report_keys, &c, sel);
	if (o->since)
		since = resolve_date(db, o->since, 0);
	if (o->until)
		until = resolve_date(db, o->until, 1);
	mi_buf_adds(&sql, jobs_sql);
	for (i = 0; sel[i]; i++)
		mi_buf_addf(&sql, "'%s', %s, ", sel[i]->col, sel[i]->sql);
	for (i = 0; metrics[i].col; i++) {
		mi_buf_addf(&sql, "%s'%s', %s", i ? ", " : "", metrics[i].col,
		    metrics[i].sql);
		add_col(&c, metrics[i].col);
	}
	mi_buf_adds(&sql, ") FROM j");
	/* No keys: one total row, even over no jobs at all. */
	for (i = 0; sel[i]; i++)
		mi_buf_addf(&sql, "%s%s", i ? ", " : " GROUP BY ", sel[i]->sql);
	for (i = 0; sel[i]; i++)
		mi_buf_addf(&sql, "%s%s", i ? ", " : " ORDER BY ", sel[i]->sql);
	params[0] = o->tenant;
	params[1] = o->provider;
	params[2] = since;
	params[3] = until;
	print_rows(query(db, sql.buf, 4, params), &c, o->fmt);
	mi_buf_release(&sql);
	free(since);
	free(until);
}

/* The distinct inodes seen in one storage group (open addressing). */
struct inoset {
	struct ino_ent { dev_t dev; ino_t ino; int used; } *tab;
	size_t cap, n;
};

static int
inoset_add(struct inoset *s, dev_t dev, ino_t ino)
{
	size_t i;

	if (2 * (s->n + 1) > s->cap) {
		struct inoset t = { NULL, s->cap ? 2 * s->cap : 64, 0 };

		if ((t.tab = calloc(t.cap, sizeof(*t.tab))) == NULL)
			mi_die(EX_OSERR, "out of memory");
		for (i = 0; i < s->cap; i++)
			if (s->tab[i].used)
				inoset_add(&t, s->tab[i].dev, s->tab[i].ino);
		free(s->tab);
		*s = t;
	}
	i = ((size_t)ino * 0x9e3779b97f4a7c15ULL ^ (size_t)dev) & (s->cap - 1);
	for (; s->tab[i].used; i = (i + 1) & (s->cap - 1))
		if (s->tab[i].ino == ino && s->tab[i].dev == dev)
			return 0;
	s->tab[i].dev = dev;
	s->tab[i].ino = ino;
	s->tab[i].used = 1;
	s->n++;
	return 1;
}

/* One tenant (type "") or one tenant's artifact type. */
struct sgroup {
	char tenant[256], type[256];
	long long artifacts, logical, files, physical, allocated;
	struct inoset set;
};

struct sgroups {
	struct sgroup *g;
	size_t n, cap;
};

static struct sgroup *
sgroup(struct sgroups *gs, const char *tenant, const char *type)
{
	size_t i;

	for (i = 0; i < gs->n; i++)
		if (strcmp(gs->g[i].tenant, tenant) == 0 &&
		    strcmp(gs->g[i].type, type) == 0)
			return &gs->g[i];
	if (gs->n == gs->cap) {
		gs->cap = gs->cap ? 2 * gs->cap : 16;
		gs->g = reallocarray(gs->g, gs->cap, sizeof(*gs->g));
		if (gs->g == NULL)
			mi_die(EX_OSERR, "out of memory");
	}
	memset(&gs->g[gs->n], 0, sizeof(gs->g[0]));
	snprintf(gs->g[gs->n].tenant, sizeof(gs->g[0].tenant), "%s", tenant);
	snprintf(gs->g[gs->n].type, sizeof(gs->g[0].type), "%s", type);
	return &gs->g[gs->n++];
}

static void
count_file(struct sgroup *g, const struct stat *sb)
{
	if (inoset_add(&g->set, sb->st_dev, sb->st_ino)) {
		g->files++;
		g->physical += sb->st_size;
		g->allocated += (long long)sb->st_blocks * 512;
	}
}

/*
 * Walks a tenant's directory: every regular file counts once per inode
 * for the tenant, and for its type when it lies under {run}/{type}/.
 */
static void
walk(struct sgroups *gs, int dfd, const char *path, const char *tenant,
    int depth, const char *type)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;
	struct stat sb;

	if (d == NULL) {
		mi_warn("unable to read '%s': %s", path, strerror(errno));
		close(dfd);
		return;
	}
	while ((errno = 0, e = readdir(d)) != NULL) {
		char sub[4096];
		int fd;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) ==
		    -1) {
			mi_warn("unable to stat '%s': %s", sub,
			    strerror(errno));
			continue;
		}
		if (S_ISREG(sb.st_mode)) {
			count_file(sgroup(gs, tenant, ""), &sb);
			if (type != NULL && depth == 2)
				count_file(sgroup(gs, tenant, type), &sb);
		} else if (S_ISDIR(sb.st_mode)) {
			fd = openat(dirfd(d), e->d_name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd == -1) {
				mi_warn("unable to open '%s': %s", sub,
				    strerror(errno));
				continue;
			}
			/* {tenant}/{run}/{type}/: .objects is no run. */
			walk(gs, fd, sub, tenant, depth + 1,
			    depth == 0 ? (e->d_name[0] == '.' ? NULL : "") :
			    depth == 1 && type ? e->d_name : type);
		}
	}
	if (errno)
		mi_warn("unable to read '%s': %s", path, strerror(errno));
	closedir(d);
}

static void
walk_store(struct sgroups *gs, const char *root, const char *tenant)
{
	DIR *d = opendir(root);
	struct dirent *e;

	if (d == NULL)
		mi_die(EX_CONFIG, "unable to read store '%s': %s", root,
		    strerror(errno));
	while ((e = readdir(d)) != NULL) {
		char path[4096];
		int fd;

		/* Only directories named like tenants are tenants. */
		if (!mi_name_tenant_ok(e->d_name) ||
		    (tenant && strcmp(tenant, e->d_name) != 0))
			continue;
		fd = openat(dirfd(d), e->d_name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1)
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, e->d_name);
		sgroup(gs, e->d_name, "");
		walk(gs, fd, path, e->d_name, 0, NULL);
	}
	closedir(d);
}

static long long
num_at(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));
	long long n = jv_get_kind(v) == JV_KIND_NUMBER ?
	    (long long)jv_number_value(v) : 0;

	jv_free(v);
	return n;
}

static void
storage(struct mi_db *db, const struct opts *o)
{
	static const char sql[] =
	    "SELECT json_build_object('tenant_id', tenant_id, 'type', type,"
	    " 'artifacts', count(*), 'logical_bytes', sum(size_bytes))"
	    " FROM app.artifacts WHERE ($1::text IS NULL OR tenant_id = $1)"
	    " GROUP BY tenant_id, type";
	const struct key *sel[4];
	struct cols c = { { NULL }, 0 };
	struct sgroups gs = { NULL, 0, 0 }, out = { NULL, 0, 0 };
	struct mi_err err = MI_ERR_INIT;
	struct mi_store *st;
	const char *params[1] = { o->tenant };
	int by_tenant = 0, by_type = 0, i;
	size_t k;
	jv rows, res, order;

	parse_by(o->by ? o->by : "tenant", storage_keys, &c, sel);
	for (i = 0; sel[i]; i++)
		*(sel[i] == &storage_keys[0] ? &by_tenant : &by_type) = 1;
	if ((st = mi_store_open(NULL, &err)) == NULL)
		mi_die_err(&err);
	walk_store(&gs, mi_store_root(st), o->tenant);
	rows = query(db, sql, 1, params);
	for (i = 0; i < jv_array_length(jv_copy(rows)); i++) {
		jv r = jv_array_get(jv_copy(rows), i);
		jv t = jv_object_get(jv_copy(r), jv_string("tenant_id"));
		jv y = jv_object_get(jv_copy(r), jv_string("type"));
		struct sgroup *a = sgroup(&gs, jv_string_value(t), "");
		struct sgroup *b = sgroup(&gs, jv_string_value(t),
		    jv_string_value(y));

		a->artifacts += num_at(r, "artifacts");
		a->logical += num_at(r, "logical_bytes");
		b->artifacts += num_at(r, "artifacts");
		b->logical += num_at(r, "logical_bytes");
		jv_free(t);
		jv_free(y);
		jv_free(r);
	}
	jv_free(rows);
	/*
	 * Inodes are counted per tenant and per type; rows that merge groups
	 * add them up (no file is shared between tenants).  Without type,
	 * a tenant's total is its own: a file linked under two types once.
	 */
	for (k = 0; k < gs.n; k++) {
		struct sgroup *g = &gs.g[k], *r;

		if ((g->type[0] != '\0') != by_type)
			continue;
		r = sgroup(&out, by_tenant ? g->tenant : "",
		    by_type ? g->type : "");
		r->artifacts += g->artifacts;
		r->logical += g->logical;
		r->files += g->files;
		r->physical += g->physical;
		r->allocated += g->allocated;
	}
	res = jv_array();
	order = jv_array();
	for (k = 0; k < out.n; k++) {
		struct sgroup *g = &out.g[k];
		long long saved = g->logical - g->physical;
		jv r = jv_object();

		if (by_tenant)
			r = jv_object_set(r, jv_string("tenant_id"),
			    jv_string(g->tenant));
		if (by_type)
			r = jv_object_set(r, jv_string("type"),
			    jv_string(g->type));
		r = jv_object_set(r, jv_string("artifacts"),
		    jv_number(g->artifacts));
		r = jv_object_set(r, jv_string("files"), jv_number(g->files));
		r = jv_object_set(r, jv_string("logical_bytes"),
		    jv_number(g->logical));
		r = jv_object_set(r, jv_string("physical_bytes"),
		    jv_number(g->physical));
		r = jv_object_set(r, jv_string("allocated_bytes"),
		    jv_number(g->allocated));
		r = jv_object_set(r, jv_string("saved_bytes"),
		    jv_number(saved));
		r = jv_object_set(r, jv_string("saved_pct"),
		    jv_number(g->logical > 0 ?
		    round(10000.0 * saved / g->logical) / 100 : 0));
		res = jv_array_append(res, r);
		order = jv_array_append(order, jv_array_append(jv_array_append(
		    jv_array(), jv_string(g->tenant)), jv_string(g->type)));
	}
	for (k = 0; k < sizeof(storage_cols) / sizeof(storage_cols[0]); k++)
		add_col(&c, storage_cols[k]);
	print_rows(jv_sort(res, order), &c, o->fmt);
	for (k = 0; k < gs.n; k++)
		free(gs.g[k].set.tab);
	free(gs.g);
	free(out.g);
	mi_store_close(st);
}

static void
print_budgets(jv rows, enum format fmt)
{
	struct cols c = { { NULL }, 0 };
	size_t i;

	for (i = 0; i < sizeof(budget_cols) / sizeof(budget_cols[0]); i++)
		add_col(&c, budget_cols[i]);
	print_rows(rows, &c, fmt);
}

static void
budgets(struct mi_db *db, const struct opts *o)
{
	struct mi_err err = MI_ERR_INIT;
	jv rows = mi_budget_list(db, o->tenant, o->provider, &err);

	if (!jv_is_valid(rows))
		mi_die_err(&err);
	print_budgets(rows, o->fmt);
}

static void
set_budget(struct mi_db *db, const struct opts *o, const char *tenant,
    const char *usd)
{
	struct mi_err err = MI_ERR_INIT;
	jv b;

	if (!mi_name_tenant_ok(tenant)) {
		fprintf(stderr, "mi-cost: invalid tenant '%s'\n", tenant);
		mi_usage(usage, EX_USAGE);
	}
	b = mi_budget_set(db, tenant, o->provider,
	    strcmp(usd, "none") == 0 ? NULL : usd, &err);
	if (!jv_is_valid(b)) {
		if (err.code == EX_USAGE) {
			fprintf(stderr, "mi-cost: %s\n", err.msg);
			mi_usage(usage, EX_USAGE);
		}
		mi_die_err(&err);
	}
	if (jv_get_kind(b) == JV_KIND_OBJECT)
		print_budgets(jv_array_append(jv_array(), b), o->fmt);
	else
		jv_free(b);
}

static enum format
parse_format(const char *s)
{
	if (strcmp(s, "json") == 0)
		return FMT_JSON;
	if (strcmp(s, "csv") == 0)
		return FMT_CSV;
	if (strcmp(s, "table") == 0)
		return FMT_TABLE;
	fprintf(stderr, "mi-cost: unknown format '%s'\n", s);
	mi_usage(usage, EX_USAGE);
}

/* Refuses options that mean nothing in the chosen mode. */
static void
check_combination(const struct opts *o, int nargs)
{
	const char *bad = NULL;

	if (o->verb != V_REPORT && (o->since || o->until))
		bad = "--since and --until go with the cost report";
	else if ((o->verb == V_BUDGETS || o->verb == V_SET_BUDGET) && o->by)
		bad = "--by goes with the cost and storage reports";
	else if (o->verb == V_STORAGE && o->provider)
		bad = "--provider does not go with --storage";
	else if (o->verb == V_SET_BUDGET && (nargs != 2 || o->tenant))
		bad = "--set-budget takes a tenant and an amount";
	else if (o->verb != V_SET_BUDGET && nargs != 0)
		bad = "unexpected argument";
	if (bad) {
		fprintf(stderr, "mi-cost: %s\n", bad);
		mi_usage(usage, EX_USAGE);
	}
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "budgets", no_argument, NULL, 'B' },
		{ "by", required_argument, NULL, 'b' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "provider", required_argument, NULL, 'p' },
		{ "set-budget", no_argument, NULL, 'X' },
		{ "since", required_argument, NULL, 's' },
		{ "storage", no_argument, NULL, 'S' },
		{ "tenant", required_argument, NULL, 't' },
		{ "until", required_argument, NULL, 'u' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct opts o = { V_REPORT, FMT_JSON, NULL, NULL, NULL, NULL, NULL };
	struct mi_err err = MI_ERR_INIT;
	struct mi_db *db;
	int ch, modes = 0;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "b:f:hp:s:t:u:", lopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'B': o.verb = V_BUDGETS; modes++; break;
		case 'b': o.by = optarg; break;
		case 'f': o.fmt = parse_format(optarg); break;
		case 'h': mi_usage(usage, 0);
		case 'p': o.provider = optarg; break;
		case 'S': o.verb = V_STORAGE; modes++; break;
		case 's': o.since = optarg; break;
		case 't': o.tenant = optarg; break;
		case 'u': o.until = optarg; break;
		case 'V': mi_version();
		case 'X': o.verb = V_SET_BUDGET; modes++; break;
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (modes > 1) {
		fprintf(stderr, "mi-cost: choose one of --storage, --budgets,"
		    " --set-budget\n");
		mi_usage(usage, EX_USAGE);
	}
	check_combination(&o, argc - optind);
	if ((db = mi_db_open(NULL, &err)) == NULL)
		mi_die_err(&err);
	/* Days and dates in UTC unless the user's PGTZ says otherwise. */
	if (getenv("PGTZ") == NULL &&
	    mi_db_exec(db, "SET TIME ZONE 'UTC'", 0, NULL, NULL, &err) == -1)
		mi_die_err(&err);
	switch (o.verb) {
	case V_REPORT:
		if (o.by && strcmp(o.by, "step") == 0)
			steps_report(db, &o);
		else
			report(db, &o);
		break;
	case V_STORAGE: storage(db, &o); break;
	case V_BUDGETS: budgets(db, &o); break;
	case V_SET_BUDGET: set_budget(db, &o, argv[optind], argv[optind + 1]);
		break;
	}
	mi_db_close(db);
	mi_close_stdout();
	return 0;
}
