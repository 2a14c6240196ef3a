/*
 * mi-cancel - cancels open jobs: those named by job id, --step, --run
 * and --tenant (all given must match), or by the records on stdin (job
 * records or {"run_step_id"|"run_id"|"tenant_id"} selectors).  Each job
 * ends failed with error code CANCELLED, its slot freed, and is cancelled
 * at its provider where the definition has a cancel; one record per job
 * is written.  Exits 0, 1 (some error records), 64, 69 (no database) or
 * 75 (the database failed).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "db.h"
#include "err.h"
#include "json.h"
#include "provider.h"
#include "transport.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-cancel [-nv] [--step id] [--run id] [--tenant id] [job-id ...]"
    "\n"
    "  -n, --dry-run    write the jobs that would be cancelled, change nothing\n"
    "      --run ID     the jobs of a run\n"
    "      --step ID    the jobs of a run step (run_step_id)\n"
    "      --tenant ID  the jobs of a tenant\n"
    "  -v, --verbose    say more on stderr\n"
    "      --help       this text\n"
    "      --version    print the version\n"
    "With no job id and no selector, selectors are read from stdin.";

struct remote {
	jv row;
	int done;
	int *failed;
	struct mi_db *db;
};

static void
on_cancelled(void *arg, jv outcome)
{
	struct remote *x = arg;
	struct mi_err err = MI_ERR_INIT;
	const char *id = NULL;
	jv note;

	mi_json_str(x->row, "id", &id, 0, NULL);
	note = mi_cancel_record(x->db, id, outcome, &err);
	if (!jv_is_valid(note)) {
		jv_free(note);
		mi_warn("job %s: unable to record the cancel: %s", id, err.msg);
		*x->failed = 1;
		note = jv_null();
	}
	x->row = jv_object_set(x->row, jv_string("cancel"), note);
	x->done = 1;
}

/* Cancels the jobs of one selector f (consumed) and writes them. */
static void
cancel(struct mi_db *db, struct mi_loop *l, jv f, int dry_run, int *failed)
{
	struct mi_err err = MI_ERR_INIT;
	struct remote *x;
	jv rows;
	int i, n, left = 0;

	rows = mi_cancel_mark(db, jv_copy(f), dry_run, "cancelled by "
	    "mi-cancel", &err);
	if (!jv_is_valid(rows)) {
		if (err.code != EX_DATAERR)
			mi_die_err(&err);
		mi_warn("%s", err.msg);
		mi_json_write(stdout, mi_json_error(f, "VALIDATION_ERROR",
		    err.msg, 0));
		*failed = 1;
		return;
	}
	jv_free(f);
	n = jv_array_length(jv_copy(rows));
	if ((x = calloc((size_t)n + 1, sizeof(*x))) == NULL)
		mi_die(EX_OSERR, "out of memory");
	for (i = 0; i < n; i++) {
		const char *prov = NULL, *pjid = NULL;
		struct mi_provider *p;
		int k;

		x[i].row = jv_array_get(jv_copy(rows), i);
		x[i].db = db;
		x[i].failed = failed;
		x[i].done = 1;
		if (dry_run) {
			x[i].row = jv_object_set(x[i].row,
			    jv_string("dry_run"), jv_true());
			continue;
		}
		mi_json_str(x[i].row, "provider_id", &prov, 0, NULL);
		mi_json_str(x[i].row, "provider_job_id", &pjid, 0, NULL);
		if (pjid == NULL || prov == NULL ||
		    (p = mi_provider_get(prov, &err)) == NULL ||
		    !mi_transport_of(p)->polled)
			continue;
		x[i].done = 0;
		k = mi_cancel_start(l, p, mi_cancel_input(x[i].row),
		    on_cancelled, &x[i], &err);
		if (k == 1)
			left++;
		else {
			x[i].done = 1;
			if (k == -1)
				mi_warn("job %s: %s", pjid, err.msg);
		}
	}
	jv_free(rows);
	while (left > 0) {
		if (mi_loop_wait(l, NULL, 0, 1000, &err) == -1)
			mi_die_err(&err);
		for (left = 0, i = 0; i < n; i++)
			left += !x[i].done;
	}
	for (i = 0; i < n; i++) {
		const char *id = "";

		mi_json_str(x[i].row, "id", &id, 0, NULL);
		mi_verbose("job %s: %s", id, dry_run ? "would be cancelled" :
		    "cancelled");
		mi_json_write(stdout, dry_run ? x[i].row :
		    mi_json_error(x[i].row, "CANCELLED", "cancelled by "
		    "mi-cancel", 0));
	}
	free(x);
}

static jv
copy_key(jv f, jv rec, const char *key)
{
	jv v = jv_object_get(jv_copy(rec), jv_string(key));

	if (jv_get_kind(v) == JV_KIND_STRING)
		return jv_object_set(f, jv_string(key), v);
	jv_free(v);
	return f;
}

/* A record on stdin as a selector. */
static jv
selector(jv rec)
{
	jv f = jv_object(), v;
	const char *id = NULL;

	if (jv_get_kind(rec) != JV_KIND_OBJECT) {
		jv_free(rec);
		return f;
	}
	/* A job record names its job; a selector names steps, runs or
	 * tenants. */
	if (mi_json_str(rec, "status", &id, 0, NULL) == 1 &&
	    mi_json_str(rec, "id", &id, 0, NULL) == 1)
		f = jv_object_set(f, jv_string("ids"), jv_array_append(
		    jv_array(), jv_string(id)));
	else {
		if ((v = jv_object_get(jv_copy(rec), jv_string("job_id")),
		    jv_get_kind(v) == JV_KIND_STRING))
			f = jv_object_set(f, jv_string("ids"),
			    jv_array_append(jv_array(), v));
		else
			jv_free(v);
		f = copy_key(f, rec, "run_step_id");
		f = copy_key(f, rec, "run_id");
		f = copy_key(f, rec, "tenant_id");
	}
	jv_free(rec);
	return f;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "run", required_argument, NULL, 'r' },
		{ "step", required_argument, NULL, 's' },
		{ "tenant", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct mi_err err = MI_ERR_INIT;
	jv f = jv_object(), ids = jv_array();
	int ch, dry_run = 0, failed = 0, args = 0;
	struct mi_json_in *in;
	struct mi_loop *l;
	struct mi_db *db;
	jv v;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "nv", opts, NULL)) != -1) {
		switch (ch) {
		case 'h': mi_usage(usage, 0);
		case 'n': dry_run = 1; break;
		case 'r':
			f = jv_object_set(f, jv_string("run_id"),
			    jv_string(optarg));
			args = 1;
			break;
		case 's':
			f = jv_object_set(f, jv_string("run_step_id"),
			    jv_string(optarg));
			args = 1;
			break;
		case 't':
			f = jv_object_set(f, jv_string("tenant_id"),
			    jv_string(optarg));
			args = 1;
			break;
		case 'v': mi_verbosity++; break;
		case 'V': mi_version();
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	for (; optind < argc; optind++, args = 1)
		ids = jv_array_append(ids, jv_string(argv[optind]));
	if (jv_array_length(jv_copy(ids)) > 0)
		f = jv_object_set(f, jv_string("ids"), ids);
	else
		jv_free(ids);
	signal(SIGPIPE, SIG_IGN);
	if ((db = mi_db_open(NULL, &err)) == NULL ||
	    (l = mi_loop_new(&err)) == NULL)
		mi_die_err(&err);
	if (args)
		cancel(db, l, f, dry_run, &failed);
	else {
		jv_free(f);
		if ((in = mi_json_in_new(stdin)) == NULL)
			mi_die(EX_OSERR, "out of memory");
		while ((ch = mi_json_next(in, &v, &err)) != 0) {
			if (ch == -2)
				mi_die_err(&err);
			if (ch == -1) {
				mi_warn("%s", err.msg);
				mi_json_write(stdout, mi_json_error(jv_object(),
				    "INVALID_JSON", err.msg, 0));
				failed = 1;
				continue;
			}
			if (mi_json_has_error(v)) {
				mi_json_write(stdout, v);
				continue;
			}
			cancel(db, l, selector(v), dry_run, &failed);
		}
		mi_json_in_free(in);
	}
	mi_loop_free(l);
	mi_provider_free_all();
	mi_db_close(db);
	mi_close_stdout();
	return failed ? 1 : 0;
}
