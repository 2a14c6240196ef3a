/*
 * recover/sweep.c - finding the work: leases taken over, the worker's
 * heartbeat, and files nobody needs any more.
 *
 * A scan leases at most the room left (max_jobs less what is in hand),
 * oldest first, skipping rows other workers lock; --once takes only jobs
 * older than its start or already its own, and leaves a job taken
 * MAX_TAKES times.  The next scan is due when the first lease of an open
 * job lapses.  Spool files are removed once their job is final, stored
 * or gone, and the store's temporary files after an hour.
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "jobs.h"
#include "json.h"
#include "names.h"
#include "recover/worker.h"
#include "banned.h"

/* Scanning. */

/*
 * Leases up to n jobs whose lease is free: not final, or completed and
 * not stored; oldest first, skipping rows other workers are locking.  A
 * job that had an owner gets a "taken over" event.  --once takes only
 * jobs older than its start, or jobs it has had in hand.
 */
static const char take_sql[] =
    "WITH c AS (SELECT q.id, q.status, q.lease_owner, q.lease_expires_at,"
    "  q.updated_at"
    "  FROM app.generation_jobs q"
    "  WHERE (q.status IN ('pending', 'processing') OR"
    "   (q.status = 'completed' AND q.artifact_id IS NULL))"
    "  AND (q.lease_expires_at IS NULL OR q.lease_expires_at < now())"
    "  AND ($4 = '' OR q.created_at <= $4::timestamptz"
    "   OR q.id = ANY($5::uuid[]))"
    "  AND NOT q.id = ANY($6::uuid[])"
    "  ORDER BY q.created_at LIMIT $3::int FOR UPDATE SKIP LOCKED)"
    " UPDATE app.generation_jobs j SET lease_owner = $1::text,"
    " lease_expires_at = now() + $2::int * interval '1 ms',"
    " updated_at = now(),"
    " recovery = CASE WHEN c.lease_owner IS NOT NULL OR"
    "  c.status <> 'pending' THEN j.recovery || jsonb_build_array("
    "  jsonb_build_object('at', now(), 'by', $1::text, 'event',"
    "  'taken over', 'from', c.lease_owner, 'status', c.status,"
    "  'lease_expired_at', c.lease_expires_at,"
    "  'last_update', c.updated_at)) ELSE j.recovery END"
    " FROM c WHERE j.id = c.id"
    " RETURNING to_jsonb(j)";

/* An array literal of the keys of o (borrowed): all of them, or those
 * whose number is at least over. */
static char *
id_array(jv o, int over)
{
	struct mi_buf b = MI_BUF_INIT;
	int first = 1;

	mi_buf_adds(&b, "{");
	jv_object_foreach(o, k, v) {
		if (over == 0 || (jv_get_kind(v) == JV_KIND_NUMBER &&
		    jv_number_value(v) >= over)) {
			mi_buf_addf(&b, "%s%s", first ? "" : ",",
			    jv_string_value(k));
			first = 0;
		}
		jv_free(k);
		jv_free(v);
	}
	mi_buf_adds(&b, "}");
	return mi_buf_detach(&b, NULL);
}

/*
 * The jobs not to take now: those taken MAX_TAKES times in this --once
 * run, and those whose result could not be stored, until their backoff
 * ends.
 */
static char *
skip_array(struct mi_recover *c)
{
	long long now = mi_now_ms();
	jv ids = jv_object(), keep = jv_object();
	char *out;

	jv_object_foreach(c->seen, k, v) {
		if (c->once && jv_get_kind(v) == JV_KIND_NUMBER &&
		    jv_number_value(v) >= MAX_TAKES)
			ids = jv_object_set(ids, jv_copy(k), jv_true());
		jv_free(k);
		jv_free(v);
	}
	jv_object_foreach(c->backoff, k, v) {
		jv until = jv_array_get(jv_copy(v), 0);

		if (jv_number_value(until) > now)
			ids = jv_object_set(ids, jv_copy(k), jv_true());
		if (c->once || jv_number_value(until) > now - 3600000)
			keep = jv_object_set(keep, jv_copy(k), jv_copy(v));
		jv_free(until);
		jv_free(k);
		jv_free(v);
	}
	jv_free(c->backoff);
	c->backoff = keep;
	out = id_array(ids, 0);
	jv_free(ids);
	return out;
}

int
rec_in_hand(struct mi_recover *c)
{
	int i, n = mi_runner_count(c->r) + jv_array_length(jv_copy(c->fq)) +
	    jv_object_length(jv_copy(c->later));

	for (i = 0; i < c->nfetch; i++)
		n += jv_array_length(jv_copy(c->f[i].sent));
	return n;
}

static void
dispatch(struct mi_recover *c, jv row)
{
	const char *id = NULL, *st = NULL, *pjid = NULL;
	int unknown = 0;
	double sc = 0;

	mi_json_str(row, "id", &id, 0, NULL);
	mi_json_str(row, "status", &st, 0, NULL);
	if (id == NULL || st == NULL) {
		jv_free(row);
		return;
	}
	if (mi_runner_holds(c->r, id)) {
		/* This worker drives it already; under load its lease
		 * lapsed before the runner renewed it, and the scan took it
		 * again.  Looked up or created a second time, its create
		 * would be made twice. */
		jv_free(row);
		return;
	}
	c->reclaim = jv_object_delete(c->reclaim, jv_string(id));
	rec_set_state(c, id, "taken");
	if (strcmp(st, "completed") == 0) {
		c->fq = jv_array_append(c->fq, row);
		return;
	}
	mi_json_str(row, "provider_job_id", &pjid, 0, NULL);
	mi_json_bool(row, "submit_unknown", &unknown, 0, NULL);
	mi_json_num(row, "submit_count", &sc, 0, NULL);
	if (strcmp(st, "processing") == 0 && unknown) {
		rec_unknown_create(c, row);
		return;
	}
	/* The last create was refused (it was to be tried again). */
	if (strcmp(st, "processing") == 0 && pjid == NULL && sc > 0) {
		rec_resubmit(c, row, rec_ev1("create again"));
		return;
	}
	mi_runner_job(c->r, row);
}

/* Milliseconds until the first lease of an open job expires (capped). */
static long
next_expiry(struct mi_recover *c, long cap)
{
	struct mi_err err = MI_ERR_INIT;
	jv v = mi_db_json1(c->db, "SELECT to_jsonb(ceil(extract(epoch FROM"
	    " min(j.lease_expires_at) - now()) * 1000))"
	    " FROM app.generation_jobs j"
	    " WHERE (j.status IN ('pending', 'processing') OR"
	    "  (j.status = 'completed' AND j.artifact_id IS NULL))"
	    " AND j.lease_expires_at >= now()", 0, NULL, &err);
	long ms = cap;

	if (!jv_is_valid(v))
		rec_die(c, &err);
	if (jv_get_kind(v) == JV_KIND_NUMBER && jv_number_value(v) < cap)
		ms = (long)jv_number_value(v);
	jv_free(v);
	return ms < 0 ? 0 : ms;
}

void
rec_scan(struct mi_recover *c)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[6];
	char lease[32], lim[16], *mine, *skip;
	int i, n, room = c->max_jobs - rec_in_hand(c);
	long interval = c->lease_ms / 2 < 1000 ? c->lease_ms / 2 : 1000;
	jv rows;

	c->last_found = 0;
	if (room > 0) {
		snprintf(lease, sizeof(lease), "%ld", c->lease_ms);
		snprintf(lim, sizeof(lim), "%d", room);
		mine = id_array(c->seen, 0);
		skip = skip_array(c);
		params[0] = mi_jobs_owner();
		params[1] = lease;
		params[2] = lim;
		params[3] = c->start;
		params[4] = mine;
		params[5] = skip;
		rows = mi_db_json(c->db, take_sql, 6, params, &err);
		free(mine);
		free(skip);
		if (!jv_is_valid(rows))
			rec_die(c, &err);
		n = c->last_found = jv_array_length(jv_copy(rows));
		for (i = 0; i < n; i++) {
			jv row = jv_array_get(jv_copy(rows), i), t;
			const char *id = NULL;

			mi_json_str(row, "id", &id, 0, NULL);
			t = jv_object_get(jv_copy(c->seen), jv_string(id));
			if (c->once)
				c->seen = jv_object_set(c->seen, jv_string(id),
				    jv_number(jv_get_kind(t) == JV_KIND_NUMBER ?
				    jv_number_value(t) + 1 : 1));
			jv_free(t);
			c->taken++;
			dispatch(c, row);
		}
		jv_free(rows);
	}
	/* Take a lapsing lease over as soon as it lapses. */
	c->next_scan = mi_now_ms() + next_expiry(c, interval) + 20;
}

/* The heartbeat of this worker (app.recovery_workers). */
void
rec_heartbeat(struct mi_recover *c, int alive)
{
	struct mi_err err = MI_ERR_INIT;
	const char *params[2];
	char lease[32];

	snprintf(lease, sizeof(lease), "%ld", c->lease_ms);
	params[0] = mi_jobs_owner();
	params[1] = lease;
	if (mi_db_exec(c->db, alive ?
	    "INSERT INTO app.recovery_workers (owner, lease_ms, expires_at)"
	    " VALUES ($1, $2::int, now() + $2::int * interval '1 ms')"
	    " ON CONFLICT (owner) DO UPDATE SET expires_at ="
	    " EXCLUDED.expires_at" :
	    "DELETE FROM app.recovery_workers WHERE owner = $1 OR"
	    " expires_at < now() - interval '1 day'",
	    alive ? 2 : 1, params, NULL, &err) == -1)
		rec_die(c, &err);
}

/* Spool files (results of synchronous and local providers) whose job
 * is final, stored, or gone. */
void
rec_clean_spool(struct mi_recover *c)
{
	struct mi_err err = MI_ERR_INIT;
	char dir[PATH_MAX], path[PATH_MAX + 300], id[40];
	const char *params[1];
	struct mi_buf b = MI_BUF_INIT;
	struct dirent *de;
	jv rows, names = jv_object();
	DIR *d;
	int i, n, first = 1;

	if (getenv("MI_SPOOL_DIR") == NULL &&
	    getenv("ASSET_STORAGE_DIR") == NULL)
		return;
	if (mi_spool_dir(dir, sizeof(dir), &err) == -1 ||
	    (d = opendir(dir)) == NULL)
		return;
	mi_buf_adds(&b, "{");
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) < 37 || de->d_name[36] != '.')
			continue;
		snprintf(id, sizeof(id), "%.36s", de->d_name);
		if (!mi_name_uuid_ok(id))
			continue;
		names = jv_object_set(names, jv_string(de->d_name),
		    jv_string(id));
		mi_buf_addf(&b, "%s%s", first ? "" : ",", id);
		first = 0;
	}
	closedir(d);
	mi_buf_adds(&b, "}");
	if (first) {
		mi_buf_release(&b);
		jv_free(names);
		return;
	}
	params[0] = b.buf;
	rows = mi_db_json(c->db, "SELECT jsonb_build_object('id', j.id,"
	    " 'keep', (j.lease_expires_at > now()) OR"
	    "  j.status IN ('pending', 'processing') OR"
	    "  (j.status = 'completed' AND j.artifact_id IS NULL),"
	    " 'result_uri', j.result_uri)"
	    " FROM app.generation_jobs j WHERE j.id = ANY($1::uuid[])",
	    1, params, &err);
	mi_buf_release(&b);
	if (!jv_is_valid(rows))
		rec_die(c, &err);
	jv_object_foreach(names, name, jid) {
		int keep = 0, known = 0;
		struct stat sb;

		n = jv_array_length(jv_copy(rows));
		for (i = 0; i < n && !known; i++) {
			jv row = jv_array_get(jv_copy(rows), i);
			const char *rid = NULL;

			mi_json_str(row, "id", &rid, 0, NULL);
			if (rid && strcmp(rid, jv_string_value(jid)) == 0) {
				known = 1;
				mi_json_bool(row, "keep", &keep, 0, NULL);
			}
			jv_free(row);
		}
		snprintf(path, sizeof(path), "%s/%s", dir,
		    jv_string_value(name));
		/* A file without a job: removed once surely abandoned. */
		if (!known && (stat(path, &sb) == -1 ||
		    sb.st_mtime > time(NULL) - 600))
			keep = 1;
		if (!keep && unlink(path) == 0)
			rec_note(c, MI_NOTE_VERBOSE,
			    "removed the spool file '%s'", path);
		jv_free(name);
		jv_free(jid);
	}
	jv_free(names);
	jv_free(rows);
}

/*
 * Named temporary files of the store: where O_TMPFILE is not supported
 * the store writes {root}/{tenant}/.objects/.tmp.XXXXXX, which a killed
 * writer leaves behind.  One untouched for an hour has no writer left.
 */
void
rec_clean_store(struct mi_recover *c)
{
	const char *root = getenv("ASSET_STORAGE_DIR");
	char dir[PATH_MAX], path[PATH_MAX + 300];
	struct dirent *te, *oe;
	struct stat sb;
	DIR *d, *od;

	if (root == NULL || (d = opendir(root)) == NULL)
		return;
	while ((te = readdir(d)) != NULL) {
		if (te->d_name[0] == '.' || (size_t)snprintf(dir, sizeof(dir),
		    "%s/%s/.objects", root, te->d_name) >= sizeof(dir) ||
		    (od = opendir(dir)) == NULL)
			continue;
		while ((oe = readdir(od)) != NULL) {
			if (strncmp(oe->d_name, ".tmp.", 5) != 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, oe->d_name);
			if (stat(path, &sb) == 0 &&
			    sb.st_mtime < time(NULL) - 3600 &&
			    unlink(path) == 0)
				rec_note(c, MI_NOTE_VERBOSE,
				    "removed the temporary file '%s'", path);
		}
		closedir(od);
	}
	closedir(d);
}
