/*
 * db.c - the PostgreSQL connection.  Foreign error detail (the server's
 * message and SQLSTATE) goes into err->msg; the SQLSTATE picks the code.
 *
 * Statements with parameters are prepared on their first use and run by
 * name afterwards (see struct prepared).  A deadlock or serialization
 * failure is run again, a transaction from its BEGIN, up to
 * CONFLICT_TRIES times.
 *
 * A lost connection (the server restarted or stopped, the socket broke)
 * is made again here, with backoff, for up to MI_DB_RETRY_MS; meanwhile
 * the caller's wait hook runs instead of a plain sleep, so a program
 * keeps its HTTP exchanges going.  A statement outside a transaction is
 * then run again: when the server ends a session it rolls back whatever
 * that session was running, so the statement did not happen.  (The one
 * exception, a commit whose reply is lost on the wire, is not told apart
 * by libpq; the statements mi runs twice that way are idempotent updates
 * or inserts a unique key guards.)  A statement inside a transaction
 * fails with the transaction lost (mi_db_tx_lost), for the caller to run
 * the whole transaction again.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db.h"
#include "json.h"
#include "banned.h"

#define MAX_CHANNELS	4
#define MAX_TX_LOG	64
#define MAX_QUEUED	16	/* statements sent with the next one */
#define MAX_PREPARED	256	/* a power of two */
#define CONFLICT_TRIES	8	/* deadlocks and serialization failures */

/*
 * The statements prepared on this connection, by their text: mi's SQL is
 * a few dozen fixed texts with parameters, each run many times, and a
 * prepared statement skips parsing and planning (with PostgreSQL's plan
 * cache) every time after the first.  Names are "mi<slot>"; the table is
 * forgotten with the connection.
 */
struct prepared {
	unsigned long long hash;
	char *sql;
};

/* A statement of the transaction under way, to run again after a lost
 * connection, with the number of rows it gave. */
struct logged {
	char *sql;
	char **params;
	int n, script;
	long rows;
};

struct mi_db {
	struct logged log[MAX_TX_LOG];
	int nlog, log_full;
	/* Statements of the transaction whose results nobody waits for
	 * (its BEGIN, mi_db_defer): sent in one pipeline with the next
	 * statement, then logged. */
	struct logged queue[MAX_QUEUED];
	int nqueue, pipeline;
	PGconn *conn;
	int in_tx, tx_lost, generation;
	/* A batch (mi_db_batch_begin): requests' transactions are savepoints
	 * of one; batch_lost: it can no longer commit (a conflict, a lost
	 * connection, a savepoint that could not be rolled back to). */
	int batch, batch_lost;
	char lost[200];		/* why the connection went, seen idle */
	long retry_ms;
	void (*wait)(void *arg, long ms);
	void *wait_arg;
	char *channels[MAX_CHANNELS];
	int nchannels;
	struct prepared prep[MAX_PREPARED];
	int nprep;
	/* Group commit: commits do not wait for the WAL flush; one
	 * durability barrier (mi_db_durable) covers all of them. */
	int async, unflushed;
	char server_start[64];	/* the server's pg_postmaster_start_time */
	char unflushed_start[64];	/* ... when the first unflushed write ran */
};

/* The server's start time into db->server_start ("" when unknown). */
static void
read_server_start(struct mi_db *db)
{
	PGresult *res = PQexec(db->conn,
	    "SELECT pg_postmaster_start_time()::text");

	db->server_start[0] = '\0';
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		snprintf(db->server_start, sizeof(db->server_start), "%s",
		    PQgetvalue(res, 0, 0));
	PQclear(res);
}

static void
prep_forget(struct mi_db *db)
{
	int i;

	for (i = 0; i < MAX_PREPARED; i++) {
		free(db->prep[i].sql);
		db->prep[i].sql = NULL;
	}
	db->nprep = 0;
}

static unsigned long long
text_hash(const char *s)
{
	unsigned long long h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

/*
 * The name of sql's prepared statement into name, preparing it on its
 * first use: 1; 0 when it runs unprepared (a full table), -1 with *res
 * the error when preparing failed.
 */
static int
prep_name(struct mi_db *db, const char *sql, int n, char name[16],
    PGresult **res)
{
	unsigned long long h = text_hash(sql);
	unsigned i = (unsigned)h & (MAX_PREPARED - 1), k;
	PGresult *r;

	*res = NULL;
	if (n <= 0)
		return 0;
	for (k = 0; k < MAX_PREPARED; k++, i = (i + 1) & (MAX_PREPARED - 1)) {
		struct prepared *p = &db->prep[i];

		if (p->sql == NULL)
			break;
		if (p->hash == h && strcmp(p->sql, sql) == 0) {
			snprintf(name, 16, "mi%u", i);
			return 1;
		}
	}
	if (k == MAX_PREPARED || db->nprep >= MAX_PREPARED / 2)
		return 0;
	if ((db->prep[i].sql = strdup(sql)) == NULL)
		return 0;
	snprintf(name, 16, "mi%u", i);
	r = PQprepare(db->conn, name, sql, n, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		free(db->prep[i].sql);
		db->prep[i].sql = NULL;
		*res = r;	/* the error, as running it would give */
		return -1;
	}
	PQclear(r);
	db->prep[i].hash = h;
	db->nprep++;
	return 1;
}

/*
 * Runs sql with parameters as a prepared statement, preparing it on its
 * first use; a full table runs it unprepared.  The result, as
 * PQexecParams gives it.
 */
static PGresult *
exec_prepared(struct mi_db *db, const char *sql, int n,
    const char *const *params)
{
	char name[16];
	PGresult *res;
	int k = prep_name(db, sql, n, name, &res);

	if (k == -1)
		return res;
	if (k == 1)
		return PQexecPrepared(db->conn, name, n, params, NULL, NULL, 0);
	return PQexecParams(db->conn, sql, n, NULL, params, NULL, NULL, 0);
}

/* Whether a failed result is a deadlock or a serialization failure. */
static int
conflict(PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) :
	    NULL;

	return state && (strcmp(state, "40001") == 0 ||
	    strcmp(state, "40P01") == 0);
}

struct mi_db *
mi_db_open(const char *conninfo, struct mi_err *err)
{
	const char *keys[] = { "dbname", "fallback_application_name", NULL };
	const char *vals[] = { NULL, NULL, NULL };
	struct mi_db *db;
	char *msg, *nl;
	const char *s;
	unsigned long long v;

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
	db->retry_ms = 60000;
	s = getenv("MI_DB_PIPELINE");
	db->pipeline = s == NULL || strcmp(s, "0") != 0;
	if ((s = getenv("MI_DB_RETRY_MS")) != NULL &&
	    mi_parse_uint(s, 0, 86400000ULL, &v) == 0)
		db->retry_ms = (long)v;
	return db;
}

void
mi_db_set_wait(struct mi_db *db, void (*wait)(void *arg, long ms),
    void *arg)
{
	db->wait = wait;
	db->wait_arg = arg;
}

int
mi_db_tx_lost(const struct mi_db *db)
{
	return db->tx_lost;
}

int
mi_db_generation(const struct mi_db *db)
{
	return db->generation;
}

static void lost_text(char *out, size_t outsz, const char *s);
static void log_clear(struct mi_db *db);
static void queue_clear(struct mi_db *db);

/*
 * Notices are dropped, except the server's last word on a connection it
 * ends while idle ("FATAL:  terminating connection due to administrator
 * command"), which libpq hands over as a notice: it is kept as the
 * cause for the next statement, which only sees the socket closed.
 */
static void
on_notice(void *arg, const char *msg)
{
	struct mi_db *db = arg;

	if (db && strncmp(msg, "FATAL:", 6) == 0 && db->lost[0] == '\0')
		lost_text(db->lost, sizeof(db->lost), msg);
}

void
mi_db_close(struct mi_db *db)
{
	int i;

	if (db == NULL)
		return;
	PQfinish(db->conn);
	log_clear(db);
	queue_clear(db);
	prep_forget(db);
	for (i = 0; i < db->nchannels; i++)
		free(db->channels[i]);
	free(db);
}

/* The first line of s into out. */
static void
first_line(char *out, size_t outsz, const char *s)
{
	snprintf(out, outsz, "%s", s && *s ? s : "no message");
	out[strcspn(out, "\n")] = '\0';
}

/* libpq's message of a connection that went, lines joined, its
 * "FATAL:  " prefix dropped: the server's reason comes first. */
static void
lost_text(char *out, size_t outsz, const char *s)
{
	size_t o = 0;

	if (s == NULL || *s == '\0')
		s = "the connection to the server was lost";
	if (strncmp(s, "FATAL:  ", 8) == 0)
		s += 8;
	for (; *s && o + 3 < outsz; s++) {
		if (*s == '\n') {
			if (s[1] == '\0')
				break;
			out[o++] = ';';
			out[o++] = ' ';
		} else
			out[o++] = *s;
	}
	out[o] = '\0';
}

/* Whether a failed result means the session is gone. */
static int
session_lost(struct mi_db *db, PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) :
	    NULL;

	if (PQstatus(db->conn) != CONNECTION_OK)
		return 1;
	return state && (strncmp(state, "08", 2) == 0 ||
	    strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
	    strcmp(state, "57P03") == 0);
}

static void
pause_ms(struct mi_db *db, long ms)
{
	if (db->wait)
		db->wait(db->wait_arg, ms);
	else
		mi_sleep_ms(ms);
}

/*
 * Connects again, with backoff, for up to db->retry_ms; LISTENs again on
 * the channels listened on.  0, or -1 with the last attempt's message in
 * why.
 */
static int
reconnect(struct mi_db *db, char *why, size_t whysz)
{
	long long start = mi_now_ms(), now;
	long delay = 50;
	int i;

	for (;;) {
		PQreset(db->conn);
		PQexitPipelineMode(db->conn);
		prep_forget(db);
		if (PQstatus(db->conn) == CONNECTION_OK) {
			db->generation++;
			db->lost[0] = '\0';
			if (db->async) {
				PQclear(PQexec(db->conn,
				    "SET synchronous_commit = off"));
				read_server_start(db);
			}
			for (i = 0; i < db->nchannels; i++) {
				char *id = PQescapeIdentifier(db->conn,
				    db->channels[i], strlen(db->channels[i]));
				char sql[300];

				if (id == NULL)
					continue;
				snprintf(sql, sizeof(sql), "LISTEN %s", id);
				PQfreemem(id);
				PQclear(PQexec(db->conn, sql));
			}
			return 0;
		}
		first_line(why, whysz, PQerrorMessage(db->conn));
		now = mi_now_ms();
		if (now - start >= db->retry_ms)
			return -1;
		if (delay > db->retry_ms - (now - start))
			delay = (long)(db->retry_ms - (now - start));
		pause_ms(db, delay);
		delay = delay * 2 > 500 ? 500 : delay * 2;
	}
}

/* Maps a failed result to err (the cause, copied before anything else
 * can overwrite libpq's message); returns -1. */
static int
fail(struct mi_db *db, PGresult *res, struct mi_err *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorField(res,
	    PG_DIAG_MESSAGE_PRIMARY) : NULL;
	int code = EX_SOFTWARE;

	if (msg == NULL || *msg == '\0')
		msg = PQerrorMessage(db->conn);
	if (msg == NULL || *msg == '\0')
		msg = "the connection to the server was lost";
	if (strncmp(msg, "FATAL:  ", 8) == 0)
		msg += 8;
	if (session_lost(db, res))
		code = EX_TEMPFAIL;
	else if (state && (strcmp(state, "40001") == 0 ||
	    strcmp(state, "40P01") == 0))
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

static void
log_clear(struct mi_db *db)
{
	int i, k;

	for (i = 0; i < db->nlog; i++) {
		for (k = 0; k < db->log[i].n; k++)
			free(db->log[i].params[k]);
		free(db->log[i].params);
		free(db->log[i].sql);
	}
	db->nlog = 0;
	db->log_full = 0;
}

static long
rows_of(PGresult *res)
{
	return PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) :
	    strtol(PQcmdTuples(res), NULL, 10);
}

/* Keeps a statement of the transaction under way. */
static void
log_add(struct mi_db *db, const char *sql, int n, const char *const *params,
    int script, PGresult *res)
{
	struct logged *l;
	int k;

	if (db->nlog >= MAX_TX_LOG) {
		db->log_full = 1;
		return;
	}
	l = &db->log[db->nlog];
	memset(l, 0, sizeof(*l));
	if ((l->sql = strdup(sql)) == NULL ||
	    (n > 0 && (l->params = calloc((size_t)n, sizeof(char *))) ==
	    NULL)) {
		free(l->sql);
		db->log_full = 1;
		return;
	}
	for (k = 0; k < n; k++)
		if (params[k] && (l->params[k] = strdup(params[k])) == NULL)
			db->log_full = 1;
	l->n = n;
	l->script = script;
	l->rows = rows_of(res);
	db->nlog++;
}

/*
 * After a new connection: the transaction that was under way is run
 * again from its BEGIN, and holds only if every statement gives as many
 * rows as it first did (else another session changed what it read, and
 * it is lost).  0, or -1.
 */
static int
replay(struct mi_db *db)
{
	PGresult *res;
	int i, ok = !db->log_full;

	for (i = 0; ok && i < db->nlog; i++) {
		struct logged *l = &db->log[i];
		ExecStatusType st;

		res = l->script ? PQexec(db->conn, l->sql) :
		    PQexecParams(db->conn, l->sql, l->n, NULL,
		    (const char *const *)l->params, NULL, NULL, 0);
		st = PQresultStatus(res);
		ok = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) &&
		    (i == 0 || rows_of(res) == l->rows);
		PQclear(res);
	}
	if (!ok && PQstatus(db->conn) == CONNECTION_OK)
		PQclear(PQexec(db->conn, "ROLLBACK"));
	return ok ? 0 : -1;
}

/* A copy of a statement, for the queue: 0, or -1 (out of memory). */
static int
stmt_copy(struct logged *l, const char *sql, int n,
    const char *const *params)
{
	int k;

	memset(l, 0, sizeof(*l));
	if ((l->sql = strdup(sql)) == NULL)
		return -1;
	if (n > 0 && (l->params = calloc((size_t)n, sizeof(char *))) == NULL) {
		free(l->sql);
		return -1;
	}
	l->n = n;
	for (k = 0; k < n; k++)
		if (params[k] && (l->params[k] = strdup(params[k])) == NULL) {
			while (k-- > 0)
				free(l->params[k]);
			free(l->params);
			free(l->sql);
			return -1;
		}
	return 0;
}

static void
stmt_free(struct logged *l)
{
	int k;

	for (k = 0; k < l->n; k++)
		free(l->params[k]);
	free(l->params);
	free(l->sql);
	memset(l, 0, sizeof(*l));
}

static void
queue_clear(struct mi_db *db)
{
	int i;

	for (i = 0; i < db->nqueue; i++)
		stmt_free(&db->queue[i]);
	db->nqueue = 0;
}

static int
result_ok(PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	return res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

/*
 * Sends the queued statements, then sql (when not NULL), in one pipeline
 * and one round trip.  The queued statements that succeeded are logged
 * and leave the queue.  Returns the first failed statement's result (the
 * queue then starts with that statement; the rest were not run), else
 * sql's result, else the last queued statement's.
 */
static PGresult *
pipe_run(struct mi_db *db, const char *sql, int n, const char *const *params)
{
	PGresult *res[MAX_QUEUED + 1], *perr = NULL, *out;
	char names[MAX_QUEUED + 1][16];
	int prep[MAX_QUEUED + 1], total, sent = 0, got = 0, bad = -1, i, k;

	total = db->nqueue + (sql != NULL);
	for (i = 0; i < total; i++) {
		const struct logged *q = i < db->nqueue ? &db->queue[i] : NULL;

		prep[i] = prep_name(db, q ? q->sql : sql, q ? q->n : n,
		    names[i], &perr);
		if (prep[i] == -1)
			break;
	}
	total = i;	/* a statement that cannot be prepared ends it */
	memset(res, 0, sizeof(res));
	if (total > 0 && PQenterPipelineMode(db->conn)) {
		for (sent = 0; sent < total; sent++) {
			const struct logged *q = sent < db->nqueue ?
			    &db->queue[sent] : NULL;
			const char *t = q ? q->sql : sql;
			const char *const *pv = q ?
			    (const char *const *)q->params : params;
			int pn = q ? q->n : n, ok;

			ok = prep[sent] == 1 ? PQsendQueryPrepared(db->conn,
			    names[sent], pn, pv, NULL, NULL, 0) :
			    PQsendQueryParams(db->conn, t, pn, NULL, pv, NULL,
			    NULL, 0);
			if (!ok)
				break;
		}
		if (PQpipelineSync(db->conn)) {
			for (got = 0; got < sent; got++) {
				PGresult *x;

				if ((res[got] = PQgetResult(db->conn)) == NULL)
					break;
				while ((x = PQgetResult(db->conn)) != NULL)
					PQclear(x);
			}
			if (got == sent) {
				PGresult *x = PQgetResult(db->conn);

				PQclear(x);	/* the sync */
			}
		}
		if (!PQexitPipelineMode(db->conn)) {
			PGresult *x;

			while ((x = PQgetResult(db->conn)) != NULL)
				PQclear(x);
			PQexitPipelineMode(db->conn);
		}
	}
	for (i = 0; i < total; i++)
		if (i >= got || !result_ok(res[i])) {
			bad = i;
			break;
		}
	if (bad == -1 && total < db->nqueue + (sql != NULL))
		bad = total;	/* the statement that could not be prepared */
	k = bad == -1 ? db->nqueue : bad < db->nqueue ? bad : db->nqueue;
	for (i = 0; i < k; i++) {
		if (db->async && !db->unflushed) {
			db->unflushed = 1;
			memcpy(db->unflushed_start, db->server_start,
			    sizeof(db->unflushed_start));
		}
		log_add(db, db->queue[i].sql, db->queue[i].n,
		    (const char *const *)db->queue[i].params, 0, res[i]);
		stmt_free(&db->queue[i]);
	}
	memmove(db->queue, db->queue + k, (size_t)(db->nqueue - k) *
	    sizeof(db->queue[0]));
	db->nqueue -= k;
	if (bad == -1)
		out = res[total - 1];
	else if (bad == total)
		out = perr;
	else if (bad < got && res[bad])
		out = res[bad];
	else
		out = PQmakeEmptyPGresult(db->conn, PGRES_FATAL_ERROR);
	for (i = 0; i < total; i++)
		if (res[i] != out)
			PQclear(res[i]);
	if (perr != out)
		PQclear(perr);
	return out;
}

/*
 * Runs a statement, making a lost connection again (and running the
 * transaction under way again, see replay).  Returns the result (status
 * ok), or NULL with err.  script: a multi-statement text without
 * parameters.
 */
static PGresult *
run(struct mi_db *db, const char *sql, int n, const char *const *params,
    int script, struct mi_err *err)
{
	struct mi_err cause = MI_ERR_INIT;
	char why[200];
	PGresult *res;
	ExecStatusType st;

	int conflicts = 0;

	db->tx_lost = 0;
	for (;;) {
		PQsetNoticeProcessor(db->conn, on_notice, db);
		res = NULL;
		if (db->nqueue > 0) {
			/* The queued statements go first, sql with them. */
			res = pipe_run(db, script ? NULL : sql, n, params);
			if (script && result_ok(res)) {
				PQclear(res);
				res = NULL;
			}
		}
		if (res == NULL)
			res = script ? PQexec(db->conn, sql) :
			    n > 0 ? exec_prepared(db, sql, n, params) :
			    PQexecParams(db->conn, sql, n, NULL, params, NULL,
			    NULL, 0);
		st = PQresultStatus(res);
		if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
			break;
		if (conflict(res) && db->batch && db->in_tx) {
			/* Undone as a whole: the caller runs it again. */
			PQclear(res);
			PQclear(PQexec(db->conn, "ROLLBACK"));
			db->in_tx = 0;
			db->tx_lost = 1;
			db->batch_lost = 1;
			log_clear(db);
			queue_clear(db);
			mi_err_set(err, EX_TEMPFAIL, "database: a deadlock; the "
			    "batch's transaction is lost");
			return NULL;
		}
		if (conflict(res) && ++conflicts < CONFLICT_TRIES &&
		    !db->log_full) {
			/*
			 * A deadlock or serialization failure rolled the
			 * statement (and any transaction) back: after a short
			 * random pause it runs again, a transaction from its
			 * BEGIN (see replay).
			 */
			PQclear(res);
			pause_ms(db, 1 + (long)(mi_now_ms() % 7) * conflicts);
			if (db->in_tx) {
				PQclear(PQexec(db->conn, "ROLLBACK"));
				if (replay(db) == -1) {
					db->in_tx = 0;
					db->tx_lost = 1;
					log_clear(db);
					queue_clear(db);
					mi_err_set(err, EX_TEMPFAIL, "database: "
					    "a deadlock; run again, the "
					    "transaction is lost");
					return NULL;
				}
			}
			continue;
		}
		if (!session_lost(db, res)) {
			queue_clear(db);	/* the transaction failed */
			fail(db, res, err);
			return NULL;
		}
		fail(db, res, &cause);
		if (db->lost[0]) {
			mi_err_set(&cause, EX_TEMPFAIL, "database: %s",
			    db->lost);
			db->lost[0] = '\0';
		}
		if (reconnect(db, why, sizeof(why)) == -1) {
			queue_clear(db);
			mi_err_set(err, EX_TEMPFAIL, "%s; no connection again "
			    "within %.1f s: %s", cause.msg,
			    db->retry_ms / 1000.0, why);
			return NULL;
		}
		if (db->in_tx && replay(db) == -1) {
			db->in_tx = 0;
			db->tx_lost = 1;
			log_clear(db);
			queue_clear(db);
			mi_err_set(err, EX_TEMPFAIL, "%s; connected again, the "
			    "transaction is lost", cause.msg);
			return NULL;
		}
	}
	if (db->async && !db->unflushed) {
		db->unflushed = 1;
		memcpy(db->unflushed_start, db->server_start,
		    sizeof(db->unflushed_start));
	}
	if (strcmp(sql, "BEGIN") == 0) {
		log_clear(db);
		db->in_tx = 1;
	} else if (strcmp(sql, "COMMIT") == 0 ||
	    strcmp(sql, "ROLLBACK") == 0) {
		db->in_tx = 0;
		log_clear(db);
	}
	if (db->in_tx)
		log_add(db, sql, n, params, script, res);
	return res;
}

int
mi_db_exec(struct mi_db *db, const char *sql, int n,
    const char *const *params, long *affected, struct mi_err *err)
{
	PGresult *res = run(db, sql, n, params, 0, err);

	if (res == NULL)
		return -1;
	if (affected)
		*affected = strtol(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return 0;
}

jv
mi_db_json(struct mi_db *db, const char *sql, int n,
    const char *const *params, struct mi_err *err)
{
	PGresult *res = run(db, sql, n, params, 0, err);
	jv out;
	int i, rows;

	if (res == NULL)
		return jv_invalid();
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		PQclear(res);
		mi_err_set(err, EX_SOFTWARE, "database: the statement "
		    "returned no rows");
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
	PGresult *res = run(db, sql, 0, NULL, 1, err);

	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

/* Queues a statement of the transaction under way: 0, or -1 when it
 * must run at once (no transaction, no pipelining, a full queue). */
static int
queue_add(struct mi_db *db, const char *sql, int n,
    const char *const *params)
{
	if (!db->pipeline || db->nqueue >= MAX_QUEUED ||
	    stmt_copy(&db->queue[db->nqueue], sql, n, params) == -1)
		return -1;
	db->nqueue++;
	return 0;
}

static void mi_db_rollback_all(struct mi_db *db);

/* In a batch whose transaction is gone: nothing more runs in it. */
static int
batch_gone(struct mi_db *db, struct mi_err *err)
{
	db->tx_lost = 1;
	db->batch_lost = 1;
	return mi_err_set(err, EX_TEMPFAIL, "database: the batch's "
	    "transaction is lost");
}

int
mi_db_batch_begin(struct mi_db *db, struct mi_err *err)
{
	if (db->in_tx || db->batch)
		return mi_err_set(err, EX_SOFTWARE, "database: a batch inside "
		    "a transaction");
	if (mi_db_begin(db, err) == -1)
		return -1;
	db->batch = 1;
	db->batch_lost = 0;
	return 0;
}

int
mi_db_batch_lost(const struct mi_db *db)
{
	return db->batch && (db->batch_lost || !db->in_tx);
}

int
mi_db_batch_end(struct mi_db *db, int commit, struct mi_err *err)
{
	int r = 0;

	if (commit && (mi_db_batch_lost(db) ||
	    PQtransactionStatus(db->conn) == PQTRANS_INERROR))
		r = batch_gone(db, err);
	else if (commit)
		/* Still a batch: a conflict at the commit loses it whole. */
		r = mi_db_exec(db, "COMMIT", 0, NULL, NULL, err);
	db->batch = 0;
	db->batch_lost = 0;
	if (db->in_tx)
		mi_db_rollback_all(db);
	return r;
}

int
mi_db_begin(struct mi_db *db, struct mi_err *err)
{
	if (db->batch) {
		if (!db->in_tx || db->batch_lost)
			return batch_gone(db, err);
		return mi_db_defer(db, "SAVEPOINT mi_request", 0, NULL, err);
	}
	/* Sent with the transaction's first statement. */
	if (!db->in_tx && db->pipeline) {
		log_clear(db);
		queue_clear(db);
		if (queue_add(db, "BEGIN", 0, NULL) == 0) {
			db->in_tx = 1;
			db->tx_lost = 0;
			return 0;
		}
	}
	return mi_db_exec(db, "BEGIN", 0, NULL, NULL, err);
}

int
mi_db_defer(struct mi_db *db, const char *sql, int n,
    const char *const *params, struct mi_err *err)
{
	if (db->in_tx && queue_add(db, sql, n, params) == 0)
		return 0;
	return mi_db_exec(db, sql, n, params, NULL, err);
}

int
mi_db_commit(struct mi_db *db, struct mi_err *err)
{
	if (db->batch) {
		if (!db->in_tx || db->batch_lost)
			return batch_gone(db, err);
		return mi_db_defer(db, "RELEASE SAVEPOINT mi_request", 0, NULL,
		    err);
	}
	return mi_db_exec(db, "COMMIT", 0, NULL, NULL, err);
}

void
mi_db_rollback(struct mi_db *db)
{
	if (db->batch) {
		struct mi_err e = MI_ERR_INIT;

		/* Back to the request's savepoint; the batch goes on. */
		if (db->in_tx && !db->batch_lost && mi_db_exec(db,
		    "ROLLBACK TO SAVEPOINT mi_request", 0, NULL, NULL, &e) == 0)
			return;
		db->batch_lost = 1;
		return;
	}
	mi_db_rollback_all(db);
}

static void
mi_db_rollback_all(struct mi_db *db)
{
	/* A BEGIN still queued never reached the server. */
	int begun = !(db->nqueue > 0 && strcmp(db->queue[0].sql, "BEGIN") == 0);

	db->in_tx = 0;
	log_clear(db);
	queue_clear(db);
	if (begun && PQstatus(db->conn) == CONNECTION_OK)
		PQclear(PQexec(db->conn, "ROLLBACK"));
}

int
mi_db_listen(struct mi_db *db, const char *channel, struct mi_err *err)
{
	char *id = PQescapeIdentifier(db->conn, channel, strlen(channel));
	char sql[300];
	int r, i;

	if (id == NULL)
		return mi_err_set(err, EX_SOFTWARE, "database: bad channel");
	if ((size_t)snprintf(sql, sizeof(sql), "LISTEN %s", id) >= sizeof(sql)) {
		PQfreemem(id);
		return mi_err_set(err, EX_SOFTWARE, "database: channel too long");
	}
	PQfreemem(id);
	if ((r = mi_db_script(db, sql, err)) == -1)
		return -1;
	/* Listened on again after a new connection. */
	for (i = 0; i < db->nchannels; i++)
		if (strcmp(db->channels[i], channel) == 0)
			return 0;
	if (db->nchannels < MAX_CHANNELS &&
	    (db->channels[db->nchannels] = strdup(channel)) != NULL)
		db->nchannels++;
	return 0;
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

	/* The server's last word on a connection it ends ("terminating
	 * connection due to administrator command") arrives here while
	 * idle: kept as the cause for the next statement's error. */
	if ((!PQconsumeInput(db->conn) ||
	    PQstatus(db->conn) != CONNECTION_OK) && db->lost[0] == '\0')
		lost_text(db->lost, sizeof(db->lost),
		    PQerrorMessage(db->conn));
	while ((n = PQnotifies(db->conn)) != NULL) {
		if (channel == NULL || strcmp(n->relname, channel) == 0)
			hit = 1;
		PQfreemem(n);
	}
	return hit;
}

/*
 * What makes a commit wait for the WAL flush (mi_db_durable): the session
 * asks for it, and the transaction writes WAL of its own before its
 * commit record.
 */
#define SYNC_ON "SET LOCAL synchronous_commit = on"
#define OWN_WAL "SELECT pg_logical_emit_message(true, 'mi', 'durable')"

int
mi_db_commit_durable(struct mi_db *db, struct mi_err *err)
{
	if (db->batch || !db->async || !db->in_tx || (db->unflushed &&
	    strcmp(db->server_start, db->unflushed_start) != 0))
		return mi_db_commit(db, err);
	/* WAL of its own before the commit, whatever else it wrote: only
	 * such a commit waits for the flush (mi_db_durable). */
	if (mi_db_defer(db, SYNC_ON, 0, NULL, err) == -1 ||
	    mi_db_defer(db, OWN_WAL, 0, NULL, err) == -1 ||
	    mi_db_exec(db, "COMMIT", 0, NULL, NULL, err) == -1)
		return -1;
	/* A server that restarted meanwhile may have lost the writes before
	 * this transaction: mi_db_durable is still to tell. */
	if (strcmp(db->server_start, db->unflushed_start) == 0)
		db->unflushed = 0;
	return 0;
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

int
mi_db_group_commit(struct mi_db *db, struct mi_err *err)
{
	if (mi_db_exec(db, "SET synchronous_commit = off", 0, NULL, NULL,
	    err) == -1)
		return -1;
	read_server_start(db);
	db->async = 1;
	db->unflushed = 0;
	return 0;
}

int
mi_db_unflushed(const struct mi_db *db)
{
	return db->async && db->unflushed;
}

/*
 * Whether the server went through crash recovery since the start of the
 * one that took the unflushed writes (1; -1 when it cannot tell).  A
 * clean shutdown flushes the whole WAL, so the writes survived it; crash
 * recovery resets the shared statistics, so pg_stat_bgwriter's
 * stats_reset is then later than that start.  (An operator's
 * pg_stat_reset_shared looks the same: the program then stops, which is
 * safe.)
 */
static int
crashed_since(struct mi_db *db, struct mi_err *err)
{
	const char *params[1] = { db->unflushed_start };
	jv v;
	int r;

	if (db->unflushed_start[0] == '\0')
		return -1;
	v = mi_db_json1(db, "SELECT to_jsonb(coalesce(b.stats_reset >"
	    " $1::timestamptz, true)) FROM pg_stat_bgwriter b", 1, params,
	    err);
	if (!jv_is_valid(v))
		return -1;
	r = jv_get_kind(v) == JV_KIND_FALSE ? 0 : 1;
	jv_free(v);
	return r;
}

int
mi_db_durable(struct mi_db *db, struct mi_err *err)
{
	/*
	 * Inside a transaction the writes are not committed yet: no barrier
	 * can make them durable, and whatever the caller is about to let out
	 * would report writes that a rollback can still undo.
	 */
	if (db->in_tx)
		return mi_err_set(err, EX_SOFTWARE, "database: a durability "
		    "barrier inside an open transaction (commit it first)");
	if (!db->async || !db->unflushed)
		return 0;
	if (strcmp(db->server_start, db->unflushed_start) != 0 &&
	    crashed_since(db, err) != 0) {
		db->unflushed = 0;
		return mi_err_set(err, EX_TEMPFAIL, "database: the server "
		    "restarted after a crash before the last writes were known "
		    "durable");
	}
	/*
	 * A commit that waits for the WAL flush: the flush reaches past
	 * every earlier commit of this session (and of every other), so all
	 * of them are durable when it returns.  The server waits only for a
	 * transaction that wrote WAL of its own before its commit record (a
	 * transaction id alone writes none, and its commit is then as
	 * asynchronous as the rest): the transactional message is that WAL,
	 * a few bytes that touch no table and need no privilege.
	 */
	if (mi_db_script(db, "BEGIN; " SYNC_ON "; " OWN_WAL "; COMMIT",
	    err) == -1)
		return -1;
	if (strcmp(db->server_start, db->unflushed_start) != 0 &&
	    crashed_since(db, err) != 0) {
		db->unflushed = 0;
		return mi_err_set(err, EX_TEMPFAIL, "database: the server "
		    "restarted after a crash before the last writes were known "
		    "durable");
	}
	db->unflushed = 0;
	return 0;
}
