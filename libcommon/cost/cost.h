/*
 * cost/cost.h - the spend and storage reports behind mi-cost: the cost
 * report over app.generation_jobs grouped by a --by list (or, by step,
 * one row per app.run_steps row), the storage report over app.artifacts
 * and the files of the store, the columns of the budget list, and the
 * three ways of writing rows (JSON lines, CSV, an aligned table).
 *
 * The modules:
 *   report.c   --since/--until dates and the two cost queries
 *   storage.c  the walk of the store (each inode counted once per group)
 *   table.c    columns, --by lists, formats and mi_cost_print
 *
 * A report reads and never writes: it returns its rows as a JSON array
 * that belongs to the caller, with the columns to print in the order to
 * print them (c is filled, names static, at most MI_COST_MAX_COLS).  On
 * failure it returns an invalid jv and fills err: EX_USAGE for a bad
 * --by or date (msg names it: "invalid --by 'x'", "invalid date 'x'"),
 * the database's code for a failed query, EX_CONFIG for a store that
 * cannot be read, EX_OSERR when memory runs out.  Nothing is printed;
 * what the storage walk cannot read is passed to warn and skipped.
 * mi_cost_print consumes its rows and writes only to fp.
 */
#ifndef MI_COST_H
#define MI_COST_H

#include <stdio.h>

#include <jv.h>

#include "db.h"
#include "err.h"

#define MI_COST_MAX_COLS 32

enum mi_cost_format { MI_COST_JSON, MI_COST_CSV, MI_COST_TABLE };

struct mi_cost_cols {
	const char *name[MI_COST_MAX_COLS];
	int n;
};

/* What a cost report covers: each NULL means no limit. */
struct mi_cost_query {
	const char *tenant, *provider;
	const char *since, *until;	/* DATE texts, resolved by the db */
	const char *by;			/* NULL: "tenant" */
};

/*
 * The cost report: one row per group of the --by keys (one total row
 * when none), or with by "step" one row per run step with its jobs,
 * creates, costs and cache savings.  The dates are resolved in the
 * session's time zone; an upper bound that is a day or month covers it.
 */
jv mi_cost_report(struct mi_db *db, const struct mi_cost_query *q,
    struct mi_cost_cols *c, struct mi_err *err);

/*
 * The storage report of tenant (NULL: all) grouped by "tenant", "type"
 * or both (by NULL: "tenant"): artifacts and logical bytes from the
 * database, files, physical and allocated bytes from the store opened
 * from the environment (store.h), each inode once per group.
 */
jv mi_cost_storage(struct mi_db *db, const char *tenant, const char *by,
    void (*warn)(const char *msg), struct mi_cost_cols *c,
    struct mi_err *err);

/* The columns of mi_budget_list's rows (budget.h). */
void mi_cost_budget_cols(struct mi_cost_cols *c);

/* Appends a column (static text); past MI_COST_MAX_COLS, nothing. */
void mi_cost_cols_add(struct mi_cost_cols *c, const char *name);

/* A grouping key: its --by word, its column, its SQL (or NULL). */
struct mi_cost_key {
	const char *word, *col, *sql;
};

/*
 * Parses a comma list of words or columns of keys (ended by a NULL word)
 * into sel (NULL-ended, room for every key plus one), adding each one's
 * column to c.  Returns -1 and EX_USAGE for an unknown, empty or
 * repeated word.
 */
int mi_cost_parse_by(const char *by, const struct mi_cost_key *keys,
    struct mi_cost_cols *c, const struct mi_cost_key **sel,
    struct mi_err *err);

/* "json", "csv" or "table"; -1 for anything else. */
int mi_cost_format_parse(const char *s, enum mi_cost_format *fmt);

/*
 * Writes rows (consumed) to fp as JSON lines, as CSV with a header line,
 * or as a table whose numeric columns are right-aligned, header included
 * (usd columns with 4 decimals, null as an empty cell).
 */
void mi_cost_print(FILE *fp, jv rows, const struct mi_cost_cols *c,
    enum mi_cost_format fmt);

#endif
