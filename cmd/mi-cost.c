/*
 * mi-cost - spend and storage reports per tenant, and monthly budgets.
 * Reads app.generation_jobs (cost report), app.run_steps (--by step:
 * each step's jobs, creates, costs and cache savings), app.artifacts and
 * the store (--storage) or app.tenant_budgets (--budgets, --set-budget);
 * writes one JSON record per group, CSV or an aligned table on stdout.
 * Exits 0, 64, 69 (no database), 70, 74 or 78 (no DATABASE_URL or store
 * directory).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "cost/cost.h"
#include "db.h"
#include "err.h"
#include "names.h"
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


enum verb { V_REPORT, V_STORAGE, V_BUDGETS, V_SET_BUDGET };

struct opts {
	enum verb verb;
	enum mi_cost_format fmt;
	struct mi_cost_query q;
};

/* A bad --by, date or amount is bad usage; anything else is fatal. */
static void __attribute__((noreturn))
fail(const struct mi_err *err)
{
	if (err->code == EX_USAGE) {
		fprintf(stderr, "mi-cost: %s\n", err->msg);
		mi_usage(usage, EX_USAGE);
	}
	mi_die_err(err);
}

static void
warn_store(const char *msg)
{
	mi_warn("%s", msg);
}

static void
print_budgets(jv rows, enum mi_cost_format fmt)
{
	struct mi_cost_cols c = { { NULL }, 0 };

	mi_cost_budget_cols(&c);
	mi_cost_print(stdout, rows, &c, fmt);
}

/* The cost report (also by step) or the storage report. */
static void
report(struct mi_db *db, const struct opts *o)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_cost_cols c = { { NULL }, 0 };
	jv rows;

	if (o->verb == V_STORAGE)
		rows = mi_cost_storage(db, o->q.tenant, o->q.by, warn_store, &c,
		    &err);
	else
		rows = mi_cost_report(db, &o->q, &c, &err);
	if (!jv_is_valid(rows))
		fail(&err);
	mi_cost_print(stdout, rows, &c, o->fmt);
}

static void
budgets(struct mi_db *db, const struct opts *o)
{
	struct mi_err err = MI_ERR_INIT;
	jv rows = mi_budget_list(db, o->q.tenant, o->q.provider, &err);

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
	b = mi_budget_set(db, tenant, o->q.provider,
	    strcmp(usd, "none") == 0 ? NULL : usd, &err);
	if (!jv_is_valid(b))
		fail(&err);
	if (jv_get_kind(b) == JV_KIND_OBJECT)
		print_budgets(jv_array_append(jv_array(), b), o->fmt);
	else
		jv_free(b);
}

static enum mi_cost_format
parse_format(const char *s)
{
	enum mi_cost_format fmt;

	if (mi_cost_format_parse(s, &fmt) == -1) {
		fprintf(stderr, "mi-cost: unknown format '%s'\n", s);
		mi_usage(usage, EX_USAGE);
	}
	return fmt;
}

/* Refuses options that mean nothing in the chosen mode. */
static void
check_combination(const struct opts *o, int nargs)
{
	const char *bad = NULL;

	if (o->verb != V_REPORT && (o->q.since || o->q.until))
		bad = "--since and --until go with the cost report";
	else if ((o->verb == V_BUDGETS || o->verb == V_SET_BUDGET) && o->q.by)
		bad = "--by goes with the cost and storage reports";
	else if (o->verb == V_STORAGE && o->q.provider)
		bad = "--provider does not go with --storage";
	else if (o->verb == V_SET_BUDGET && (nargs != 2 || o->q.tenant))
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
	struct opts o = { V_REPORT, MI_COST_JSON, { NULL, NULL, NULL, NULL, NULL } };
	struct mi_err err = MI_ERR_INIT;
	struct mi_db *db;
	int ch, modes = 0;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "b:f:hp:s:t:u:", lopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'B': o.verb = V_BUDGETS; modes++; break;
		case 'b': o.q.by = optarg; break;
		case 'f': o.fmt = parse_format(optarg); break;
		case 'h': mi_usage(usage, 0);
		case 'p': o.q.provider = optarg; break;
		case 'S': o.verb = V_STORAGE; modes++; break;
		case 's': o.q.since = optarg; break;
		case 't': o.q.tenant = optarg; break;
		case 'u': o.q.until = optarg; break;
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
	case V_STORAGE: report(db, &o); break;
	case V_BUDGETS: budgets(db, &o); break;
	case V_SET_BUDGET: set_budget(db, &o, argv[optind], argv[optind + 1]);
		break;
	}
	mi_db_close(db);
	mi_close_stdout();
	return 0;
}
