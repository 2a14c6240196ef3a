/*
 * db.c - the PostgreSQL connection.  Foreign error detail (the server's
 * message and SQLSTATE) goes into err->msg; the SQLSTATE picks the code.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db.h"
#include "json.h"
#include "banned.h"

struct mi_db {
	PGconn *conn;
};

struct mi_db *
mi_db_open(const char *conninfo, struct mi_err *err)
{
	const char *keys[] = { "dbname", "fallback_application_name", NULL };
	const char *vals[] = { NULL, NULL, NULL };
	struct mi_db *db;
	char *msg, *nl;

	if (conninfo == NULL)
		conninfo = getenv("DATABASE_URL");
	if (conninfo == NULL || *conninfo == '\0') {
		mi_err_set(err, EX_CONFIG, "DATABASE_URL is not set");
		return NULL;
	}
	vals[0] = conninfo;
	vals[1] = mi_getprogname();
	db = calloc(1, sizeof(*db));
	if (db == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	/* expand_dbname: conninfo may be a URI or "key=value" string. */
	db->conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(db->conn) != CONNECTION_OK) {
		msg = strdup(PQerrorMessage(db->conn));
		if (msg && (nl = strchr(msg, '\n')) != NULL && nl[1] == '\0')
			*nl = '\0';
		mi_err_set(err, EX_UNAVAILABLE,
		    "unable to connect to the database: %s",
		    msg ? msg : "out of memory");
		free(msg);
		PQfinish(db->conn);
		free(db);
		return NULL;
	}
	return db;
}

static void
quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

void
mi_db_close(struct mi_db *db)
{
	if (db == NULL)
		return;
	PQfinish(db->conn);
	free(db);
}

/* Maps a failed result to err; returns -1. */
static int
fail(struct mi_db *db, PGresult *res, struct mi_err *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res,
	    PG_DIAG_MESSAGE_PRIMARY) : NULL;
	int code = EX_SOFTWARE;

	if (msg == NULL)
		msg = PQerrorMessage(db->conn);
	if (PQstatus(db->conn) != CONNECTION_OK) {
		code = EX_TEMPFAIL;
		PQreset(db->conn);
	} else if (state && (strcmp(state, "40001") == 0 ||
	    strcmp(state, "40P01") == 0 || strncmp(state, "08", 2) == 0 ||
	    strcmp(state, "57P01") == 0))
		code = EX_TEMPFAIL;
	else if (state && strncmp(state, "22", 2) == 0)
		code = EX_DATAERR;
	mi_err_set(err, code, "database: %s%s%s%s", msg,
	    state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "");
	/* Strip a trailing newline libpq may leave. */
	if (err) {
		char *nl = strchr(err->msg, '\n');

		if (nl)
			*nl = '\0';
	}
	PQclear(res);
	return -1;
}

static PGresult *
run(struct mi_db *db, const char *sql, int n, const char *const *params)
{
	PQsetNoticeProcessor(db->conn, quiet_notice, NULL);
	return PQexecParams(db->conn, sql, n, NULL, params, NULL, NULL, 0);
}

int
mi_db_exec(struct mi_db *db, const char *sql, int n,
    const char *const *params, long *affected, struct mi_err *err)
{
	PGresult *res = run(db, sql, n, params);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		return fail(db, res, err);
	if (affected)
		*affected = strtol(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return 0;
}

jv
mi_db_json(struct mi_db *db, const char *sql, int n,
    const char *const *params, struct mi_err *err)
{
	PGresult *res = run(db, sql, n, params);
	jv out;
	int i, rows;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fail(db, res, err);
		return jv_invalid();
	}
	rows = PQntuples(res);
	out = jv_array_sized(rows);
	for (i = 0; i < rows; i++) {
		jv v;

		if (PQgetisnull(res, i, 0))
			v = jv_null();
		else
			v = jv_parse(PQgetvalue(res, i, 0));
		if (!jv_is_valid(v)) {
			jv_free(v);
			jv_free(out);
			PQclear(res);
			mi_err_set(err, EX_SOFTWARE,
			    "database: column is not JSON");
			return jv_invalid();
		}
		out = jv_array_append(out, v);
	}
	PQclear(res);
	return out;
}

jv
mi_db_json1(struct mi_db *db, const char *sql, int n,
    const char *const *params, struct mi_err *err)
{
	jv rows = mi_db_json(db, sql, n, params, err);

	if (!jv_is_valid(rows))
		return rows;
	if (jv_array_length(jv_copy(rows)) == 0) {
		jv_free(rows);
		return jv_null();
	}
	return jv_array_get(rows, 0);
}

int
mi_db_script(struct mi_db *db, const char *sql, struct mi_err *err)
{
	PGresult *res;

	PQsetNoticeProcessor(db->conn, quiet_notice, NULL);
	res = PQexec(db->conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		return fail(db, res, err);
	PQclear(res);
	return 0;
}

int
mi_db_begin(struct mi_db *db, struct mi_err *err)
{
	return mi_db_exec(db, "BEGIN", 0, NULL, NULL, err);
}

int
mi_db_commit(struct mi_db *db, struct mi_err *err)
{
	return mi_db_exec(db, "COMMIT", 0, NULL, NULL, err);
}

void
mi_db_rollback(struct mi_db *db)
{
	PQclear(PQexec(db->conn, "ROLLBACK"));
}

int
mi_db_listen(struct mi_db *db, const char *channel, struct mi_err *err)
{
	char *id = PQescapeIdentifier(db->conn, channel, strlen(channel));
	char sql[300];
	int r;

	if (id == NULL)
		return mi_err_set(err, EX_SOFTWARE, "database: bad channel");
	if ((size_t)snprintf(sql, sizeof(sql), "LISTEN %s", id) >= sizeof(sql)) {
		PQfreemem(id);
		return mi_err_set(err, EX_SOFTWARE, "database: channel too long");
	}
	PQfreemem(id);
	r = mi_db_script(db, sql, err);
	return r;
}

int
mi_db_socket(struct mi_db *db)
{
	return PQsocket(db->conn);
}

int
mi_db_notified(struct mi_db *db, const char *channel)
{
	PGnotify *n;
	int hit = 0;

	PQconsumeInput(db->conn);
	while ((n = PQnotifies(db->conn)) != NULL) {
		if (channel == NULL || strcmp(n->relname, channel) == 0)
			hit = 1;
		PQfreemem(n);
	}
	return hit;
}

jv
mi_db_notifications(struct mi_db *db)
{
	jv out = jv_array();
	PGnotify *n;

	PQconsumeInput(db->conn);
	while ((n = PQnotifies(db->conn)) != NULL) {
		out = jv_array_append(out, jv_array_append(jv_array_append(
		    jv_array(), jv_string(n->relname)),
		    jv_string(n->extra ? n->extra : "")));
		PQfreemem(n);
	}
	return out;
}
