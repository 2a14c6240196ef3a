/*
 * engine/engine.h - the inside of the job engine behind runner.h, shared
 * by its modules and by nothing else (cmd/ includes runner.h only).
 *
 * Each job in hand is a struct rjob (texts of its request and provider
 * state, not parsed values, so ten thousand jobs fit in a few megabytes)
 * in the runner's hash table by id, and, while it waits for a time, in
 * its binary heap by due time (heap is its index there, -1 when out).
 * Jobs waiting for a slot sit in their (tenant, provider) group instead,
 * oldest first, and in no heap.  Per-poll bookkeeping (attempts,
 * progress, next poll time) is written in batches; every state change is
 * written at once, before the next step that depends on it (a create is
 * recorded as sent before it is sent).
 *
 * A job is owned by the runner from eng_job_new() (it is in the table)
 * until eng_drop(); a job with an exchange under way (busy) is freed by
 * the callback that ends it.  Every record leaves through eng_emit(),
 * which consumes it.  A database failure that is not an outage is kept
 * by eng_fatal() and ends mi_runner_run(); an outcome that comes during
 * an outage is kept by eng_hold() and replayed when the database is back.
 *
 * The modules, each calling only those below it:
 *   runner.c    the public API (runner.h) and the loop of mi_runner_run
 *   takeover.c  jobs of other workers (follow, adopt, take over),
 *               webhook deliveries, and the lease and batch bookkeeping
 *   step.c      create and poll, their outcomes (held during an outage),
 *               fallback, backoff, time-outs and cancels
 *   admit.c     a request becomes a job: routing, validation, a provider
 *   claim.c     claims of free slots for a group's waiting jobs
 *   job.c       a job's struct and its row (new, free, drop, patch), and
 *               what leaves the runner: records, notes, the fatal error
 *   sched.c     where jobs wait: the table by id, the heap of due times,
 *               the groups' waiting lists
 */
#ifndef MI_ENGINE_H
#define MI_ENGINE_H

#include <jv.h>

#include "db.h"
#include "err.h"
#include "runner.h"
#include "transport.h"

enum phase {
	P_WAIT,			/* for a slot */
	P_CREATE,		/* create due */
	P_CREATING,
	P_POLL,			/* poll due */
	P_POLLING
};

struct group {
	char *tenant;
	struct mi_provider *p;
	char media[24];		/* of the oldest waiting job: sets the limit */
	struct rjob *head, *tail;	/* waiting jobs, oldest first */
	int want;		/* a claim is due */
	int capped;		/* the last claim took only the runner's room */
	int missed;		/* a webhook did not come: poll as usual */
	struct group *next;
};

struct rjob {
	char id[40];
	struct group *g;
	struct mi_provider *p;
	const struct mi_transport *t;
	char media[24];
	char *request;		/* JSON texts */
	char *state;
	char *fallback;
	char *pjid;
	char *followup;		/* a follow-up create's request */
	int phase, busy, lost, tries, attempts, progress, dirty, accepted;
	int step_attempt;	/* of its step (fallbacks keep it) */
	int last_look;		/* the poll at the deadline is under way */
	int hooked;		/* asked for a webhook (webhook.h) */
	int hinted;		/* a delivery asked for this poll */
	int state_unsaved;	/* state holds a step not yet written (a poll
				 * at once: eng_with_state) */
	long long due, deadline;	/* monotonic ms; deadline 0: none */
	long interval, timeout;
	int heap;
	int linked;		/* in the runner's table */
	struct mi_poll_memo memo;
	struct rjob *hnext;	/* hash chain */
	struct rjob *wnext;	/* group's waiting list */
	struct mi_runner *r;
};

/* An outcome that came while the database was away, kept for later. */
struct held {
	struct rjob *j;
	jv out;
	void (*cb)(void *, jv);
	struct held *next;
};

/* A completion waiting for the next batch (eng_complete): its job is out
 * of the runner already; its row changes with the batch's one statement,
 * and its record leaves after that. */
struct done {
	char id[40];
	char provider[128];
	jv patch;
	double cost;		/* the provider's, when have_cost */
	int have_cost, late;
	int handed;		/* handed on, not completed (eng_hand_on) */
	struct done *next;
};

/* A record emitted under group commit, waiting for its barrier. */
struct outrec {
	jv rec;
	int passed;
	int order;		/* in a batch: its request's arrival */
	struct outrec *next;
};

struct mi_runner {
	struct mi_db *db;
	/* Group commit (unless $MI_GROUP_COMMIT=0): records wait here until one
	 * durability barrier covers the writes they report (eng_deliver). */
	int group;
	struct outrec *outq, **outq_tail;
	struct held *held, **held_tail;
	struct done *done, **done_tail;	/* completions to write */
	int ndone;
	int db_waiting, dbgen;
	struct mi_loop *loop;
	struct mi_runner_opts o;
	struct rjob **tab;
	size_t nbuck, n;
	int ncreating;		/* jobs in the table whose create is due or
				 * under way (eng_set_phase) */
	size_t room_n;		/* n when eng_claim_room last counted */
	struct rjob **heap;
	size_t hn, hcap;
	struct group *groups;
	struct group *claim_next;	/* the group whose claim goes first */
	jv take;		/* [id, owner] pairs to take over */
	jv takerec;		/* their records, by id */
	jv follow;		/* jobs other workers run for a step this
				 * runner was asked for: id -> answers owed */
	long long next_follow;
	long follow_ms;
	long long next_flush, next_renew, next_backstop;
	long lease_ms, backstop_ms;
	int parallel, create_retries, poll_retries, listening;
	long coalesce_ms, batch_ms;
	long hook_backstop_ms;	/* poll interval while a webhook is due */
	jv hooks;		/* ids of jobs with deliveries to take */
	int cancels;		/* remote cancels under way */
	int closing;
	int input_ready;
	jv routing;
	/* Admission of an input batch in one transaction (admit.c): the
	 * jobs it made, undone with it when the batch is lost. */
	int admitting, batch_max, batch_order;
	struct rjob **batch_jobs;
	int nbatch_jobs, batch_cap;
	jv *reqs;		/* the requests read for the next batch */
	long finished;
	long polls, polls_read;	/* polls made; answers the definitions read */
	int fatal, eof;
	struct mi_err ferr;
};

/* The provider chosen for a request (admit.c), or why none is. */
struct choice {
	struct mi_provider *p;
	jv rest;		/* the providers after it */
	char code[32];		/* when none: why */
	char msg[512];
};

/* sched.c */
struct rjob *eng_find(struct mi_runner *r, const char *id);
void eng_tab_add(struct mi_runner *r, struct rjob *j);
void eng_tab_del(struct mi_runner *r, struct rjob *j);
void eng_heap_down(struct mi_runner *r, size_t i);
void eng_heap_remove(struct mi_runner *r, struct rjob *j);
/* Moves j to phase, keeping the runner's count of creates current: every
 * change of a job's phase goes through here. */
void eng_set_phase(struct rjob *j, int phase);
void eng_schedule(struct mi_runner *r, struct rjob *j, int phase,
    long long due);
struct group *eng_group_of(struct mi_runner *r, const char *tenant,
    struct mi_provider *p);
void eng_wait_add(struct group *g, struct rjob *j);
void eng_wait_del(struct group *g, struct rjob *j);

/* job.c */
void eng_job_free(struct rjob *j);
void eng_drop(struct mi_runner *r, struct rjob *j);
struct rjob *eng_job_new(struct mi_runner *r, jv row, struct mi_err *err);
void eng_set_str(char **dst, const char *s);
jv eng_job_input(struct rjob *j);
void eng_note(struct mi_runner *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void eng_fatal(struct mi_runner *r, const struct mi_err *err);
void eng_emit(struct mi_runner *r, jv rec);
void eng_pass(struct mi_runner *r, jv rec);
void eng_deliver(struct mi_runner *r);
jv eng_with_error(jv row, int retryable);
/* Every write of a job's row goes through eng_patch, eng_complete or a
 * patch built with eng_with_state, so a state kept unwritten (a poll at
 * once) goes with the next write. */
jv eng_with_state(struct rjob *j, jv p);
jv eng_patch(struct mi_runner *r, struct rjob *j, jv p);
/* j completed: p (consumed) is written with the next batch of completions
 * (eng_flush_done: at the latest before the next records leave, or when
 * ENG_DONE_BATCH wait), and j is dropped now. */
#define ENG_DONE_BATCH 256
void eng_complete(struct mi_runner *r, struct rjob *j, jv p, int have_cost,
    double cost);
/* j's create was accepted and its part in this runner ends (mi-submit):
 * like eng_complete, p goes with the next batch and j is dropped now. */
void eng_hand_on(struct mi_runner *r, struct rjob *j, jv p);
void eng_flush_done(struct mi_runner *r);
jv eng_field(jv o, const char *key);
jv eng_obj1(const char *k, jv v);

/* claim.c */
void eng_claim_due(struct mi_runner *r);
int eng_creating(const struct mi_runner *r);
void eng_claim_room(struct mi_runner *r);

/* admit.c */
int eng_choose(struct mi_runner *r, jv req, jv cand, int strict,
    struct choice *c);
double eng_estimate(struct mi_provider *p, jv req);
int eng_enqueue(struct mi_runner *r, jv req, struct choice *c,
    const char *previous, int attempt);

/* step.c */
void eng_release_held(struct mi_runner *r);
void eng_on_polled(void *arg, jv out);
void eng_do_create(struct mi_runner *r, struct rjob *j);
/* The creates of js[0..n-1] (n <= ENG_CREATE_BATCH), their intents
 * written in one statement. */
#define ENG_CREATE_BATCH 64
/* The most requests admitted in one transaction (MI_ADMIT_BATCH). */
#define ENG_ADMIT_MAX 1024
void eng_do_creates(struct mi_runner *r, struct rjob **js, int n);
void eng_do_poll(struct mi_runner *r, struct rjob *j);
/* The wait before j's next poll (ms): its interval, or the backstop
 * interval while it waits for a webhook. */
long long eng_next_poll(struct mi_runner *r, struct rjob *j);

/* takeover.c */
void eng_check_follow(struct mi_runner *r);
void eng_take_over(struct mi_runner *r);
/* The per-poll counters of the jobs whose progress changed (all: of
 * every job); a renewal carries every job's. */
void eng_flush(struct mi_runner *r, int all);
void eng_renew(struct mi_runner *r);
void eng_notified(struct mi_runner *r);
void eng_take_hooks(struct mi_runner *r);

#endif
