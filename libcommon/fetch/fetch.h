/*
 * fetch/fetch.h - the inside of the download pool behind fetch/pool.h,
 * shared by its modules and by nothing else (cmd/ includes pool.h only):
 *   pool.c  the queue of slots in input order, the public API, timers,
 *           lease renewal, the group commit before records leave, the
 *           stop; and what leaves the pool: records, notes, fatal errors
 *   job.c   one record's way to its artifact: its job's lease, the
 *           download into the store, tries again, the probe, the
 *           artifact row and its link to the job
 *   rows.c  the job and artifact rows and the provider asked again for a
 *           fresh result URL, each for job.c
 *
 * A slot is owned by the pool from slot_add until it is written (flush)
 * or the pool stops; its jv values (job, out) are owned by the slot, and
 * fetch_done() and fetch_error() consume the record they are given.
 * Database failures go to fetch_fatal(), which does not return.
 */
#ifndef MI_FETCH_FETCH_H
#define MI_FETCH_FETCH_H

#include <jv.h>

#include "db.h"
#include "err.h"
#include "fetch/pool.h"
#include "http.h"
#include "provider.h"
#include "store.h"
#include "transport.h"

/* Records read ahead of the one written next, per download slot. */
#define AHEAD	8

/* Where a job record is on its way to its artifact. */
enum {
	S_TAKING,	/* waiting for another worker's lease */
	S_LOADING,	/* its download is under way */
	S_LOADED,	/* the download ended: r, err */
	S_STORED,	/* in the store and probed: res, extra; rows next */
	S_BACKOFF,	/* waiting to download again */
	S_DONE		/* out is the record to write */
};

/* One input record, in the order of the input. */
struct slot {
	struct slot *next;
	struct mi_fetch_pool *c;
	int state;
	jv job;			/* the record read, then the job's row */
	jv out;
	struct mi_provider *p;
	struct mi_store_req req;
	struct mi_store_tx *tx;
	struct mi_fetch fetch;
	char id[40], ext[16], tenant[256], run[40], type[128];
	int held;		/* this worker holds the job's lease */
	int checked;		/* the first chunk was looked at */
	long long wake;		/* S_TAKING, S_BACKOFF: when to go on */
	long long take_until;
	int tries, gone, refreshed;
	int r;			/* S_LOADED: the download's outcome */
	long long received, content_length;
	struct mi_err err;
	struct mi_store_result *res;	/* S_STORED */
	jv extra;			/* S_STORED: the artifact's fields */
};

struct mi_fetch_pool {
	struct mi_db *db;
	struct mi_store *st;
	struct mi_http_multi *m;
	struct slot *head, **tail;
	int failed, config, jobs;
	long long max_size, renewed;
	long backoff_ms;
	struct mi_fetch_pool_opts o;
};

/* pool.c */
void fetch_note(struct mi_fetch_pool *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fetch_fatal(struct mi_fetch_pool *c, const struct mi_err *err)
    __attribute__((noreturn));
/* The slot's record to write is out (consumed). */
void fetch_done(struct slot *s, jv out);
/* The slot's record is an error record made of rec (consumed). */
void fetch_error(struct slot *s, jv rec, const char *code, const char *msg,
    int retryable);
void fetch_renew(struct mi_fetch_pool *c, int soon);

/* job.c */
void fetch_begin(struct slot *s);
/* Takes the leases of the jobs due in one statement; how many it tried. */
int fetch_take_due(struct mi_fetch_pool *c);
void fetch_start(struct slot *s);
void fetch_after_load(struct slot *s);
/* The rows of every S_STORED slot, after one fsync of the directories
 * their files were linked into (mi_store_sync), in one transaction. */
void fetch_record_stored(struct mi_fetch_pool *c);

/* rows.c */
jv fetch_input(jv job);
jv fetch_refresh(struct mi_fetch_pool *c, struct mi_provider *p, jv job);
jv fetch_artifact_meta(jv job, struct mi_provider *p);
jv fetch_fail_job(struct mi_fetch_pool *c, const char *id, const char *code,
    const char *msg);
jv fetch_linked_artifact(struct mi_fetch_pool *c, const char *artifact_id);
void fetch_release(struct mi_fetch_pool *c, struct slot *s);
/* The artifact of job id, when it has one (stored by another worker
 * meanwhile), else null; *found (may be NULL): whether the job's row is
 * there at all. */
jv fetch_stored_meanwhile(struct mi_fetch_pool *c, const char *id,
    int *found);

#endif
