/*
 * db.h - the PostgreSQL connection (libpq), one per process.
 *
 * Queries take text parameters ($1...) only.  Rows come back as JSON: the
 * convention is that a query selects one json/jsonb column per row (for
 * example "SELECT to_jsonb(j) FROM app.generation_jobs j WHERE ...") and
 * mi_db_json returns a jv array of those values, so records flow from the
 * database to stdout without column-by-column copying.
 *
 * Statements with parameters are prepared on their first use.  A
 * serialization failure or deadlock (40001, 40P01) is run again after a
 * short random pause, a transaction from its BEGIN (as after a lost
 * connection, below), up to 8 times.
 *
 * Error codes: connection failure 69 (EX_UNAVAILABLE); a serialization
 * failure or deadlock that persists, and connection loss, 75
 * (EX_TEMPFAIL); other SQL errors 70 (EX_SOFTWARE) with the SQLSTATE in
 * msg.
 *
 * A connection lost after mi_db_open is made again with backoff for up to
 * $MI_DB_RETRY_MS (default 60000) ms, and the statement run again when
 * it was not inside a transaction; only then does it fail (75), with the
 * cause's message (the server's, e.g. "terminating connection due to
 * administrator command"), never the reconnect attempt's.  A
 * transaction under way is run again from its BEGIN on the new
 * connection, and holds when each statement gives the rows it first gave;
 * else the statement fails with mi_db_tx_lost.
 */
#ifndef MI_DB_H
#define MI_DB_H

#include <jv.h>

#include "err.h"

struct mi_db;

/* conninfo NULL: $DATABASE_URL (error 78 when unset). */
struct mi_db *mi_db_open(const char *conninfo, struct mi_err *err);
void mi_db_close(struct mi_db *db);

/* Runs a statement; *affected (may be NULL) gets the row count. */
int mi_db_exec(struct mi_db *db, const char *sql, int n,
    const char *const *params, long *affected, struct mi_err *err);
/* Runs a query; returns an array of the first column of each row parsed as
 * JSON (NULL column -> null).  jv_invalid on error. */
jv mi_db_json(struct mi_db *db, const char *sql, int n,
    const char *const *params, struct mi_err *err);
/* First column of the first row as JSON, or jv_null() when no row. */
jv mi_db_json1(struct mi_db *db, const char *sql, int n,
    const char *const *params, struct mi_err *err);
/* Runs a multi-statement script with no parameters (migrations). */
int mi_db_script(struct mi_db *db, const char *sql, struct mi_err *err);

/*
 * mi_db_begin sends nothing: the BEGIN goes with the transaction's first
 * statement, in one round trip ($MI_DB_PIPELINE=0: at once).
 */
int mi_db_begin(struct mi_db *db, struct mi_err *err);
/*
 * Runs a statement of the transaction under way whose result is not
 * needed: it is sent with the next statement, in one round trip, and a
 * failure of it is that statement's (or the commit's) error.  Outside a
 * transaction it runs at once.
 */
int mi_db_defer(struct mi_db *db, const char *sql, int n,
    const char *const *params, struct mi_err *err);
int mi_db_commit(struct mi_db *db, struct mi_err *err);
void mi_db_rollback(struct mi_db *db);

/*
 * A batch: one transaction around the transactions of many requests.
 * Inside it mi_db_begin, mi_db_commit and mi_db_rollback are a savepoint,
 * its release (sent with the next statement) and a rollback to it, so a
 * request that fails undoes its own statements only, and the batch
 * commits once.  A deadlock, a serialization failure or a lost connection
 * loses the whole batch (mi_db_batch_lost; nothing more runs in it):
 * mi_db_batch_end then fails with mi_db_tx_lost set, for the caller to
 * undo what it did on the batch's account and run its requests again.
 * mi_db_batch_end(db, 0, ...) rolls the batch back.
 */
int mi_db_batch_begin(struct mi_db *db, struct mi_err *err);
int mi_db_batch_lost(const struct mi_db *db);
int mi_db_batch_end(struct mi_db *db, int commit, struct mi_err *err);

/*
 * What to do while waiting to connect again (default: sleep): wait(arg,
 * ms) must return within about ms and must not use the database.
 */
void mi_db_set_wait(struct mi_db *db, void (*wait)(void *arg, long ms),
    void *arg);
/* Whether the last failure lost the transaction under way (the
 * connection is back): the whole transaction may be run again. */
int mi_db_tx_lost(const struct mi_db *db);
/* Counts the connections made again (the socket may have changed). */
int mi_db_generation(const struct mi_db *db);

/* LISTEN support: socket fd to poll, and draining notifications.
 * mi_db_notified returns 1 if any notification on channel arrived. */
int mi_db_listen(struct mi_db *db, const char *channel, struct mi_err *err);
int mi_db_socket(struct mi_db *db);
int mi_db_notified(struct mi_db *db, const char *channel);
/*
 * Group commit.  mi_db_group_commit makes this session's commits return
 * before their WAL is flushed (synchronous_commit off): other sessions
 * see them at once, and a crash of this process loses none of them; only
 * a crash of the server can.  mi_db_durable is then the barrier to run
 * before anything leaves the process that depends on those writes (a
 * record on stdout, a paid provider request): one flushed commit makes
 * every earlier one durable.  It fails (75) when the server went through
 * crash recovery after writes it had not made durable, since whether
 * they survived is unknown (a clean restart flushes them all: the
 * barrier then holds).  Inside an open transaction it refuses (70):
 * the transaction's writes are not committed, so nothing can be let out
 * on their account yet.  mi_db_unflushed tells whether a barrier is due.
 */
int mi_db_group_commit(struct mi_db *db, struct mi_err *err);
int mi_db_durable(struct mi_db *db, struct mi_err *err);
/* Commits the open transaction (not a batch's savepoint) and waits for
 * its WAL flush, which makes every earlier write durable too: the commit
 * is then the barrier, and mi_db_unflushed is 0 until the next write.
 * Without group commit, or when the server restarted after unflushed
 * writes (mi_db_durable tells what became of them), a plain commit. */
int mi_db_commit_durable(struct mi_db *db, struct mi_err *err);
int mi_db_unflushed(const struct mi_db *db);
/* Drains the notifications that arrived: an array of [channel, payload]. */
jv mi_db_notifications(struct mi_db *db);

#endif
