/*
 * mi-migrate - brings the database at DATABASE_URL to the current schema.
 * Applies each migrations/NNNN_*.sql not yet recorded in
 * app.schema_migrations, each in one transaction, under an advisory lock so
 * concurrent runs wait for each other.  Writes one JSON record per
 * migration; exits 0, 65 (bad file), 69 (no database) or 70.
 */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "db.h"
#include "err.h"
#include "hash.h"
#include "json.h"
#include "paths.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-migrate [-nq] [-d dir]\n"
    "  -d, --dir DIR   migrations directory (default: $MI_MIGRATIONS_DIR or\n"
    "                  the share directory's migrations/)\n"
    "  -n, --dry-run   list what would be applied, apply nothing\n"
    "  -q, --quiet     no summary on stderr\n"
    "      --help      this text\n"
    "      --version   print the version";

static const char setup_sql[] =
    "SELECT pg_advisory_lock(7243121);"
    "CREATE SCHEMA IF NOT EXISTS app;"
    "CREATE TABLE IF NOT EXISTS app.schema_migrations ("
    " version varchar(255) PRIMARY KEY,"
    " sha256 char(64) NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

static int
cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
read_file(const char *path, struct mi_buf *b, struct mi_err *err)
{
	FILE *fp = fopen(path, "r");
	char chunk[8192];
	size_t n;

	if (fp == NULL)
		return mi_err_set_errno(err, EX_NOINPUT, "unable to open '%s'",
		    path);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		mi_buf_add(b, chunk, n);
	fclose(fp);
	return 0;
}

/* Applies or checks one file; returns 0 or -1. */
static int
migrate(struct mi_db *db, const char *dir, const char *name, int dry,
    int *applied, struct mi_err *err)
{
	struct mi_buf sql = MI_BUF_INIT;
	char path[4096], hex[65], version[256];
	const char *params[2];
	jv have, rec;
	int r = -1;

	snprintf(version, sizeof(version), "%.*s",
	    (int)(strlen(name) - 4), name);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    sizeof(path))
		return mi_err_set(err, EX_USAGE, "path too long");
	if (read_file(path, &sql, err) == -1)
		return -1;
	mi_sha256_hex(sql.buf, sql.len, hex);
	params[0] = version;
	params[1] = hex;
	have = mi_db_json1(db, "SELECT to_jsonb(sha256) FROM"
	    " app.schema_migrations WHERE version = $1", 1, params, err);
	if (!jv_is_valid(have))
		goto out;
	rec = jv_object_set(jv_object(), jv_string("version"),
	    jv_string(version));
	if (jv_get_kind(have) == JV_KIND_STRING) {
		if (strcmp(jv_string_value(have), hex) != 0)
			mi_warn("'%s' changed since it was applied", name);
		rec = jv_object_set(rec, jv_string("status"),
		    jv_string("present"));
	} else if (dry) {
		rec = jv_object_set(rec, jv_string("status"),
		    jv_string("pending"));
	} else {
		if (mi_db_begin(db, err) == -1 ||
		    mi_db_script(db, sql.buf, err) == -1 ||
		    mi_db_exec(db, "INSERT INTO app.schema_migrations"
		    " (version, sha256) VALUES ($1, $2)", 2, params, NULL,
		    err) == -1 || mi_db_commit(db, err) == -1) {
			mi_db_rollback(db);
			mi_err_prefix(err, "migration '%s'", name);
			jv_free(rec);
			goto out;
		}
		(*applied)++;
		rec = jv_object_set(rec, jv_string("status"),
		    jv_string("applied"));
	}
	mi_json_write(stdout, rec);
	r = 0;
out:
	jv_free(have);
	mi_buf_release(&sql);
	return r;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct mi_err err = MI_ERR_INIT;
	char defdir[4096], **names = NULL;
	const char *dir = getenv("MI_MIGRATIONS_DIR");
	struct dirent *de;
	struct mi_db *db;
	size_t n = 0, i;
	int c, dry = 0, quiet = 0, applied = 0;
	DIR *d;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "d:hnq", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'h': mi_usage(usage, 0);
		case 'n': dry = 1; break;
		case 'q': quiet = 1; break;
		case 'V': mi_version();
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if (optind != argc)
		mi_usage(usage, EX_USAGE);
	if (dir == NULL || *dir == '\0') {
		if (mi_share_path("migrations", defdir, sizeof(defdir)) == -1)
			mi_die(EX_CONFIG, "share directory path too long");
		dir = defdir;
	}
	if ((d = opendir(dir)) == NULL)
		mi_die(EX_CONFIG, "unable to open migrations directory '%s'",
		    dir);
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (l > 4 && strcmp(de->d_name + l - 4, ".sql") == 0) {
			names = realloc(names, (n + 1) * sizeof(*names));
			if (names == NULL || (names[n++] = strdup(de->d_name)) ==
			    NULL)
				mi_die(EX_OSERR, "out of memory");
		}
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmpstr);
	if ((db = mi_db_open(NULL, &err)) == NULL)
		mi_die_err(&err);
	if (mi_db_script(db, setup_sql, &err) == -1)
		mi_die_err(&err);
	for (i = 0; i < n; i++)
		if (migrate(db, dir, names[i], dry, &applied, &err) == -1)
			mi_die_err(&err);
	mi_db_close(db);
	if (!quiet)
		fprintf(stderr, "mi-migrate: %d applied, %zu present%s\n",
		    applied, n - (size_t)applied, dry ? " (dry run)" : "");
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	mi_close_stdout();
	return 0;
}
