/*
 * runner.c - the job engine behind mi-submit and mi-poll (runner.h).
 *
 * Each job in hand is a small struct (texts of its request and provider
 * state, not parsed values, so ten thousand jobs fit in a few
 * megabytes) in a hash table by id, and, while it waits for a time, in a
 * binary heap by due time.  Jobs waiting for a slot sit in their (tenant,
 * provider) group instead, oldest first.  Per-poll bookkeeping (attempts,
 * progress, next poll time) is written in batches; every state change is
 * written at once, before the next step that depends on it (a create is
 * recorded as sent before it is sent).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cancel.h"
#include "inq.h"
#include "jobs.h"
#include "mime.h"
#include "json.h"
#include "names.h"
#include "paths.h"
#include "provider.h"
#include "runner.h"
#include "steps.h"
#include "transport.h"
#include "webhook.h"
#include "banned.h"

#define REF_MAX		(20 * 1024 * 1024)
/* How long after its deadline a job still gets its last poll. */
#define LAST_LOOK_MS	(5 * 60 * 1000LL)

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
	long long due, deadline;	/* monotonic ms; deadline 0: none */
	long interval, timeout;
	int heap;
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

struct mi_runner {
	struct mi_db *db;
	struct held *held, **held_tail;
	int db_waiting, dbgen;
	struct mi_loop *loop;
	struct mi_runner_opts o;
	struct rjob **tab;
	size_t nbuck, n;
	struct rjob **heap;
	size_t hn, hcap;
	struct group *groups;
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
	long finished;
	int fatal, eof;
	struct mi_err ferr;
};

static void note(struct mi_runner *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
note(struct mi_runner *r, int level, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	if (r->o.note == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->o.note(r->o.arg, level, msg);
}

/*
 * While the database is away (db.c connecting again), the loop goes on
 * so that exchanges under way end, but their outcomes are held: each is
 * written once the database is back, so an answer that came is never
 * asked for again (a create never sent twice) because of the outage.
 */
static int
hold(struct rjob *j, jv out, void (*cb)(void *, jv))
{
	struct mi_runner *r = j->r;
	struct held *h;

	if (!r->db_waiting || (h = calloc(1, sizeof(*h))) == NULL)
		return 0;
	h->j = j;
	h->out = out;
	h->cb = cb;
	*r->held_tail = h;
	r->held_tail = &h->next;
	return 1;
}

static void
db_wait(void *arg, long ms)
{
	struct mi_runner *r = arg;
	struct mi_err err = MI_ERR_INIT;
	long long until = mi_now_ms() + ms, left;

	if (r->db_waiting) {
		mi_sleep_ms(ms);
		return;
	}
	r->db_waiting = 1;
	while ((left = until - mi_now_ms()) > 0) {
		if (mi_loop_busy(r->loop) == 0)
			mi_sleep_ms(left);
		else if (mi_loop_wait(r->loop, NULL, 0, (long)left,
		    &err) == -1)
			mi_sleep_ms(left > 10 ? 10 : left);
	}
	r->db_waiting = 0;
}

/* Runs the outcomes held while the database was away. */
static void
release_held(struct mi_runner *r)
{
	struct held *h;

	while ((h = r->held) != NULL && !r->db_waiting) {
		r->held = h->next;
		if (r->held == NULL)
			r->held_tail = &r->held;
		h->cb(h->j, h->out);
		free(h);
	}
}

static void
fatal(struct mi_runner *r, const struct mi_err *err)
{
	if (!r->fatal) {
		r->fatal = 1;
		r->ferr = *err;
	}
}

static long
env_num(const char *name, long dflt, long min, long max)
{
	const char *s = getenv(name);
	unsigned long long v;

	if (s == NULL || mi_parse_uint(s, (unsigned long long)min,
	    (unsigned long long)max, &v) == -1)
		return dflt;
	return (long)v;
}

/* Hash table of jobs by id. */

static size_t
hash_id(const char *s, size_t n)
{
	size_t h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h & (n - 1);
}

static struct rjob *
find(struct mi_runner *r, const char *id)
{
	struct rjob *j;

	for (j = r->tab[hash_id(id, r->nbuck)]; j; j = j->hnext)
		if (strcmp(j->id, id) == 0)
			return j;
	return NULL;
}

static void
tab_add(struct mi_runner *r, struct rjob *j)
{
	size_t h;

	if (r->n + 1 > r->nbuck) {
		size_t nb = r->nbuck * 2, i;
		struct rjob **t = calloc(nb, sizeof(*t)), *x, *nx;

		if (t != NULL) {
			for (i = 0; i < r->nbuck; i++)
				for (x = r->tab[i]; x; x = nx) {
					nx = x->hnext;
					h = hash_id(x->id, nb);
					x->hnext = t[h];
					t[h] = x;
				}
			free(r->tab);
			r->tab = t;
			r->nbuck = nb;
		}
	}
	h = hash_id(j->id, r->nbuck);
	j->hnext = r->tab[h];
	r->tab[h] = j;
	r->n++;
}

static void
tab_del(struct mi_runner *r, struct rjob *j)
{
	struct rjob **p = &r->tab[hash_id(j->id, r->nbuck)];

	for (; *p; p = &(*p)->hnext)
		if (*p == j) {
			*p = j->hnext;
			r->n--;
			return;
		}
}

/* Binary heap by due time. */

static void
heap_swap(struct mi_runner *r, size_t a, size_t b)
{
	struct rjob *t = r->heap[a];

	r->heap[a] = r->heap[b];
	r->heap[b] = t;
	r->heap[a]->heap = (int)a;
	r->heap[b]->heap = (int)b;
}

static void
heap_up(struct mi_runner *r, size_t i)
{
	while (i > 0 && r->heap[(i - 1) / 2]->due > r->heap[i]->due) {
		heap_swap(r, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
heap_down(struct mi_runner *r, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;

		if (l < r->hn && r->heap[l]->due < r->heap[m]->due)
			m = l;
		if (l + 1 < r->hn && r->heap[l + 1]->due < r->heap[m]->due)
			m = l + 1;
		if (m == i)
			return;
		heap_swap(r, i, m);
		i = m;
	}
}

static void
heap_remove(struct mi_runner *r, struct rjob *j)
{
	size_t i = (size_t)j->heap;

	if (j->heap < 0)
		return;
	j->heap = -1;
	if (i == --r->hn)
		return;
	r->heap[i] = r->heap[r->hn];
	r->heap[i]->heap = (int)i;
	heap_down(r, i);
	heap_up(r, i);
}

static void
schedule(struct mi_runner *r, struct rjob *j, int phase, long long due)
{
	j->phase = phase;
	if (j->deadline && due > j->deadline && phase == P_POLL)
		due = j->deadline;
	j->due = due;
	if (j->heap >= 0) {
		heap_down(r, (size_t)j->heap);
		heap_up(r, (size_t)j->heap);
		return;
	}
	if (r->hn == r->hcap) {
		size_t nc = r->hcap ? 2 * r->hcap : 256;
		struct rjob **h = realloc(r->heap, nc * sizeof(*h));

		if (h == NULL)
			return;		/* left unscheduled: the lease lapses */
		r->heap = h;
		r->hcap = nc;
	}
	r->heap[r->hn] = j;
	j->heap = (int)r->hn++;
	heap_up(r, (size_t)j->heap);
}

/* Jobs. */

static char *
dump_key(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));
	char *s = NULL;

	if (jv_get_kind(v) == JV_KIND_STRING)
		s = strdup(jv_string_value(v));
	else if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL)
		s = mi_json_dump(v);
	jv_free(v);
	return s;
}

static struct group *
group_of(struct mi_runner *r, const char *tenant, struct mi_provider *p)
{
	struct group *g;

	for (g = r->groups; g; g = g->next)
		if (g->p == p && strcmp(g->tenant, tenant) == 0)
			return g;
	if ((g = calloc(1, sizeof(*g))) == NULL ||
	    (g->tenant = strdup(tenant)) == NULL) {
		free(g);
		return NULL;
	}
	g->p = p;
	g->next = r->groups;
	r->groups = g;
	return g;
}

static void
wait_add(struct group *g, struct rjob *j)
{
	j->wnext = NULL;
	if (g->tail)
		g->tail->wnext = j;
	else {
		g->head = j;
		snprintf(g->media, sizeof(g->media), "%s", j->media);
	}
	g->tail = j;
	g->want = 1;
}

static void
wait_del(struct group *g, struct rjob *j)
{
	struct rjob **p, *prev = NULL;

	for (p = &g->head; *p; prev = *p, p = &(*p)->wnext)
		if (*p == j) {
			*p = j->wnext;
			if (g->tail == j)
				g->tail = prev;
			j->wnext = NULL;
			break;
		}
	if (g->head)
		snprintf(g->media, sizeof(g->media), "%s", g->head->media);
}

static void
job_free(struct rjob *j)
{
	mi_poll_memo_clear(&j->memo);
	free(j->request);
	free(j->state);
	free(j->fallback);
	free(j->pjid);
	free(j->followup);
	free(j);
}

/* Takes a job out of the runner; frees it unless an operation still
 * refers to it (then it is freed when the operation ends). */
static void
drop(struct mi_runner *r, struct rjob *j)
{
	if (j->phase == P_WAIT && j->g)
		wait_del(j->g, j);
	heap_remove(r, j);
	tab_del(r, j);
	if (j->busy)
		j->lost = 1;
	else
		job_free(j);
}

static jv job_input(struct rjob *j);

static jv
memo_input(void *arg)
{
	return job_input(arg);
}

/* A job from its row (borrowed); NULL when the row is unusable. */
static struct rjob *
job_new(struct mi_runner *r, jv row, struct mi_err *err)
{
	const char *id, *tenant, *prov, *media, *started = NULL, *s;
	struct rjob *j;
	double d;

	if (mi_json_str(row, "id", &id, 1, err) == -1 ||
	    mi_json_str(row, "tenant_id", &tenant, 1, err) == -1 ||
	    mi_json_str(row, "provider_id", &prov, 1, err) == -1 ||
	    mi_json_str(row, "media_type", &media, 1, err) == -1)
		return NULL;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	j->r = r;
	j->heap = -1;
	j->memo.progress = -1;
	j->memo.input = memo_input;
	j->memo.input_arg = j;
	snprintf(j->id, sizeof(j->id), "%s", id);
	snprintf(j->media, sizeof(j->media), "%s", media);
	if ((j->p = mi_provider_get(prov, err)) == NULL) {
		free(j);
		return NULL;
	}
	j->t = mi_transport_of(j->p);
	if ((j->g = group_of(r, tenant, j->p)) == NULL) {
		free(j);
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	j->request = dump_key(row, "request");
	j->state = dump_key(row, "provider_state");
	j->fallback = dump_key(row, "fallback");
	if (mi_json_str(row, "provider_job_id", &s, 0, NULL) == 1)
		j->pjid = strdup(s);
	if (mi_json_num(row, "attempts", &d, 0, NULL) == 1)
		j->attempts = (int)d;
	j->step_attempt = mi_json_num(row, "step_attempt", &d, 0, NULL) == 1 &&
	    d >= 1 ? (int)d : 1;
	if (mi_json_num(row, "progress", &d, 0, NULL) == 1)
		j->progress = (int)d;
	j->interval = mi_json_num(row, "poll_interval_ms", &d, 0, NULL) == 1 &&
	    d > 0 ? (long)d : mi_provider_poll_interval_ms(j->p, media);
	j->accepted = j->pjid != NULL;
	j->hooked = j->state && strstr(j->state, "\"webhook\":true") != NULL;
	if (mi_json_num(row, "timeout_ms", &d, 0, NULL) != 1 || d <= 0)
		d = (double)mi_provider_timeout_ms(j->p, media);
	j->timeout = (long)d;
	mi_json_str(row, "started_at", &started, 0, NULL);
	if (started) {
		long long t0 = mi_jobs_time_ms(started);

		if (t0 > 0)
			j->deadline = mi_now_ms() + (t0 + (long long)d -
			    mi_wall_ms());
	}
	if (j->request == NULL)
		j->request = strdup("{}");
	tab_add(r, j);
	return j;
}

static void
set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = s ? strdup(s) : NULL;
}

/* The input of the definition's functions. */
static jv
job_input(struct rjob *j)
{
	jv job = jv_object(), in = jv_object(), req, st;

	req = j->request ? jv_parse(j->request) : jv_object();
	st = j->state ? jv_parse(j->state) : jv_object();
	if (!jv_is_valid(req)) {
		jv_free(req);
		req = jv_object();
	}
	if (!jv_is_valid(st)) {
		jv_free(st);
		st = jv_object();
	}
	job = jv_object_set(job, jv_string("id"), jv_string(j->id));
	job = jv_object_set(job, jv_string("media_type"),
	    jv_string(j->media));
	job = jv_object_set(job, jv_string("provider_job_id"),
	    j->pjid ? jv_string(j->pjid) : jv_null());
	job = jv_object_set(job, jv_string("provider_state"), st);
	job = jv_object_set(job, jv_string("attempts"),
	    jv_number(j->attempts));
	in = jv_object_set(in, jv_string("request"), req);
	return jv_object_set(in, jv_string("job"), job);
}

static void
emit(struct mi_runner *r, jv rec)
{
	r->finished++;
	r->o.emit(r->o.arg, rec, 0);
}

/* A record that arrived with an error goes out untouched. */
static void
pass(struct mi_runner *r, jv rec)
{
	r->o.emit(r->o.arg, rec, 1);
}

/* The row with "error" from its error_code and error_message. */
static jv
with_error(jv row, int retryable)
{
	const char *code = "PROVIDER_ERROR", *msg = "job failed";

	mi_json_str(row, "error_code", &code, 0, NULL);
	mi_json_str(row, "error_message", &msg, 0, NULL);
	return mi_json_error(row, code, msg, retryable);
}

/* Applies patch to j's row; on a lost lease drops j and returns null. */
static jv
patch(struct mi_runner *r, struct rjob *j, jv p)
{
	struct mi_err err = MI_ERR_INIT;
	jv row = mi_jobs_patch(r->db, j->id, p, &err);

	if (!jv_is_valid(row)) {
		fatal(r, &err);
		return row;
	}
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		note(r, MI_NOTE_WARN, "job %s: lease lost to another worker",
		    j->id);
		drop(r, j);
	}
	return row;
}

/* o[key] (o borrowed), null when absent. */
static jv
field(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));

	if (!jv_is_valid(v)) {
		jv_free(v);
		return jv_null();
	}
	return v;
}

static jv
obj1(const char *k, jv v)
{
	return jv_object_set(jv_object(), jv_string(k), v);
}

/* Choosing a provider. */

static jv
routing(struct mi_runner *r)
{
	char path[1024];
	const char *file = getenv("MI_ROUTING_FILE");
	FILE *fp;

	if (jv_is_valid(r->routing))
		return jv_copy(r->routing);
	if (file == NULL && mi_share_path("routing.json", path,
	    sizeof(path)) == 0)
		file = path;
	r->routing = jv_object();
	if (file && (fp = fopen(file, "r")) != NULL) {
		struct mi_json_in *in = mi_json_in_new(fp);
		jv v;

		if (in && mi_json_next(in, &v, NULL) == 1) {
			if (jv_get_kind(v) == JV_KIND_OBJECT) {
				jv_free(r->routing);
				r->routing = v;
			} else
				jv_free(v);
		}
		mi_json_in_free(in);
		fclose(fp);
	}
	return jv_copy(r->routing);
}

/* Messages of the definition's validate, joined; NULL when valid. */
static int
validate(struct mi_provider *p, jv req, char *msg, size_t msgsz)
{
	struct mi_err err = MI_ERR_INIT;
	jv in = obj1("request", req), out;
	struct mi_buf b = MI_BUF_INIT;
	int i, n;

	out = mi_provider_call(p, "validate", in, &err);
	if (!jv_is_valid(out)) {
		jv_free(out);
		snprintf(msg, msgsz, "%s", err.msg);
		return -1;
	}
	if (jv_get_kind(out) != JV_KIND_ARRAY ||
	    (n = jv_array_length(jv_copy(out))) == 0) {
		jv_free(out);
		return 0;
	}
	for (i = 0; i < n; i++) {
		jv m = jv_array_get(jv_copy(out), i);

		if (jv_get_kind(m) == JV_KIND_STRING)
			mi_buf_addf(&b, "%s%s", i ? "; " : "",
			    jv_string_value(m));
		jv_free(m);
	}
	jv_free(out);
	snprintf(msg, msgsz, "%s: %s", mi_provider_id(p), b.buf);
	mi_buf_release(&b);
	return -1;
}

struct choice {
	struct mi_provider *p;
	jv rest;		/* the providers after it */
	char code[32];		/* when none: why */
	char msg[512];
};

/*
 * The first usable provider of candidates (an array of ids, consumed) for
 * req (borrowed).  strict: a validation failure of the first candidate
 * ends the search (the request itself is wrong), rather than skipping to
 * the next.  Cooling providers are skipped while another remains.
 */
static int
choose(struct mi_runner *r, jv req, jv cand, int strict, struct choice *c)
{
	const char *media = NULL;
	int i, n = jv_array_length(jv_copy(cand)), cooling_at = -1;
	struct mi_err err = MI_ERR_INIT;

	memset(c, 0, sizeof(*c));
	c->rest = jv_array();
	snprintf(c->code, sizeof(c->code), "PROVIDER_UNAVAILABLE");
	snprintf(c->msg, sizeof(c->msg), "no provider left to try");
	mi_json_str(req, "media_type", &media, 0, NULL);
	for (i = 0; i < n; i++) {
		jv id = jv_array_get(jv_copy(cand), i);
		struct mi_provider *p;
		struct mi_buf key = MI_BUF_INIT;
		int k;

		if (jv_get_kind(id) != JV_KIND_STRING ||
		    (p = mi_provider_get(jv_string_value(id), &err)) == NULL) {
			snprintf(c->code, sizeof(c->code), "%s",
			    err.code == EX_CONFIG ? "CONFIG_ERROR" :
			    "VALIDATION_ERROR");
			snprintf(c->msg, sizeof(c->msg), "%s", err.msg);
			jv_free(id);
			if (strict && i == 0)
				break;
			note(r, MI_NOTE_WARN, "%s", c->msg);
			continue;
		}
		jv_free(id);
		if (media == NULL || !mi_provider_supports(p, media)) {
			snprintf(c->code, sizeof(c->code), "VALIDATION_ERROR");
			snprintf(c->msg, sizeof(c->msg),
			    "provider '%s' does not make %s",
			    mi_provider_id(p), media ? media : "that");
			if (strict && i == 0)
				break;
			continue;
		}
		if (validate(p, jv_copy(req), c->msg, sizeof(c->msg)) == -1) {
			snprintf(c->code, sizeof(c->code), "VALIDATION_ERROR");
			if (strict && i == 0)
				break;
			note(r, MI_NOTE_VERBOSE, "skipping %s", c->msg);
			continue;
		}
		k = mi_provider_auth(p, &key, &err);
		if (key.len)
			explicit_bzero(key.buf, key.len);
		mi_buf_release(&key);
		if (k == -1) {
			snprintf(c->code, sizeof(c->code), "CONFIG_ERROR");
			snprintf(c->msg, sizeof(c->msg), "provider '%s': %s",
			    mi_provider_id(p), err.msg);
			if (i + 1 < n)
				note(r, MI_NOTE_WARN, "%s; trying the next "
				    "provider", c->msg);
			continue;
		}
		if ((k = mi_jobs_cooling(r->db, mi_provider_id(p), &err)) ==
		    -1) {
			fatal(r, &err);
			jv_free(cand);
			return -1;
		}
		if (k == 1 && i + 1 < n) {
			if (cooling_at < 0)
				cooling_at = i;
			note(r, MI_NOTE_INFO, "provider '%s' is cooling down; "
			    "trying the next", mi_provider_id(p));
			continue;
		}
		c->p = p;
		for (i++; i < n; i++)
			c->rest = jv_array_append(c->rest,
			    jv_array_get(jv_copy(cand), i));
		jv_free(cand);
		return 0;
	}
	/* Every other provider failed: a cooling one is better than none. */
	if (cooling_at >= 0) {
		jv id = jv_array_get(jv_copy(cand), cooling_at);

		c->p = mi_provider_get(jv_string_value(id), NULL);
		jv_free(id);
		for (i = cooling_at + 1; i < n; i++)
			c->rest = jv_array_append(c->rest,
			    jv_array_get(jv_copy(cand), i));
		jv_free(cand);
		return c->p ? 0 : -1;
	}
	jv_free(cand);
	return -1;
}

static double
estimate(struct mi_provider *p, jv req)
{
	struct mi_err err = MI_ERR_INIT;
	jv v = mi_provider_call(p, "cost", obj1("request", req), &err);
	double d = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : 0;

	jv_free(v);
	return d < 0 ? 0 : d;
}

/*
 * Writes the job row of req (borrowed) for provider c->p and puts it in
 * the slot queue; previous: the job it replaces, or NULL; attempt: of
 * the step.
 */
static int
enqueue(struct mi_runner *r, jv req, struct choice *c, const char *previous,
    int attempt)
{
	struct mi_err err = MI_ERR_INIT;
	const char *media = NULL;
	struct rjob *j;
	double est;
	jv f, row, params, model;

	mi_json_str(req, "media_type", &media, 1, NULL);
	req = jv_object_set(jv_copy(req), jv_string("provider_id"),
	    jv_string(mi_provider_id(c->p)));
	req = jv_object_set(req, jv_string("fallback"), jv_copy(c->rest));
	est = estimate(c->p, jv_copy(req));
	params = jv_object_get(jv_copy(req), jv_string("params"));
	if (jv_get_kind(params) != JV_KIND_OBJECT) {
		jv_free(params);
		params = jv_object();
	}
	f = jv_object();
	f = jv_object_set(f, jv_string("tenant_id"),
	    field(req, "tenant_id"));
	f = jv_object_set(f, jv_string("run_id"),
	    field(req, "run_id"));
	f = jv_object_set(f, jv_string("run_step_id"),
	    field(req, "run_step_id"));
	f = jv_object_set(f, jv_string("provider_id"),
	    jv_string(mi_provider_id(c->p)));
	f = jv_object_set(f, jv_string("media_type"), jv_string(media));
	f = jv_object_set(f, jv_string("poll_interval_ms"),
	    jv_number((double)mi_provider_poll_interval_ms(c->p, media)));
	f = jv_object_set(f, jv_string("timeout_ms"),
	    jv_number((double)mi_provider_timeout_ms(c->p, media)));
	f = jv_object_set(f, jv_string("input_params"), params);
	f = jv_object_set(f, jv_string("artifact_type"),
	    field(req, "artifact_type"));
	f = jv_object_set(f, jv_string("skill_id"),
	    field(req, "skill_id"));
	f = jv_object_set(f, jv_string("fallback"), jv_copy(c->rest));
	f = jv_object_set(f, jv_string("previous_job_id"),
	    previous ? jv_string(previous) : jv_null());
	f = jv_object_set(f, jv_string("cost_usd"), jv_number(est));
	f = jv_object_set(f, jv_string("step_attempt"), jv_number(attempt));
	model = jv_object_get(mi_provider_meta(c->p), jv_string("model"));
	if (jv_get_kind(model) == JV_KIND_STRING)
		f = jv_object_set(f, jv_string("model"), model);
	else
		jv_free(model);
	f = jv_object_set(f, jv_string("request"), req);
	row = mi_jobs_insert(r->db, f, 1, &err);
	if (!jv_is_valid(row)) {
		fatal(r, &err);
		jv_free(row);
		return -1;
	}
	if ((j = job_new(r, row, &err)) == NULL) {
		fatal(r, &err);
		jv_free(row);
		return -1;
	}
	jv_free(row);
	j->step_attempt = attempt;
	note(r, MI_NOTE_INFO, "job %s: %s %s, estimated cost $%.4f", j->id,
	    mi_provider_id(c->p), media, est);
	j->phase = P_WAIT;
	wait_add(j->g, j);
	return 0;
}

/*
 * Admits req (consumed) as its step: answered with the step's job chain
 * or artifact when it has one, or with a cache hit; else chooses a
 * provider and writes the job, all under the step's lock (steps.h).
 */
static void
admit(struct mi_runner *r, jv req, jv cand)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_step s;
	struct choice c;
	char msg[400];
	jv out;
	int k;

	if (mi_step_parse(req, &s, &err) == -1) {
		jv_free(cand);
		emit(r, mi_json_error(req, "VALIDATION_ERROR", err.msg, 0));
		return;
	}
	mi_step_inputs(&s, req, cand);
	k = mi_step_admit(r->db, &s, req, &out, msg, sizeof(msg), &err);
	if (k == -1) {
		jv_free(cand);
		jv_free(req);
		fatal(r, &err);
		return;
	}
	if (k == -2) {
		jv_free(cand);
		emit(r, mi_json_error(req, "VALIDATION_ERROR", msg, 0));
		return;
	}
	if (k != MI_STEP_NEW) {
		const char *id = "";
		int hit = 0;

		jv_free(cand);
		jv_free(req);
		mi_json_str(out, "id", &id, 0, NULL);
		mi_json_bool(out, "cache_hit", &hit, 0, NULL);
		note(r, MI_NOTE_INFO, "step %s: %s %s", s.step_id,
		    k == MI_STEP_JOB ? "answered with its job" : hit ?
		    "served from the step cache: artifact" :
		    "answered with its artifact", id);
		if (s.other_inputs && !hit)
			note(r, MI_NOTE_WARN, "step %s of run %s was made "
			    "from other inputs; its result stands (a new "
			    "step_id gets a new one)", s.step_id, s.run);
		emit(r, out);
		return;
	}
	req = jv_object_set(req, jv_string("run_step_id"), jv_string(s.id));
	req = jv_object_set(req, jv_string("step_id"), jv_string(s.step_id));
	if (choose(r, req, cand, 1, &c) == -1) {
		jv_free(c.rest);
		if (r->fatal) {
			mi_step_end(r->db, 0, NULL);
			jv_free(req);
			return;
		}
		if (mi_step_fail(r->db, &s, c.code, c.msg, &err) == -1 ||
		    mi_step_end(r->db, 1, &err) == -1) {
			mi_step_end(r->db, 0, NULL);
			jv_free(req);
			fatal(r, &err);
			return;
		}
		emit(r, mi_json_error(req, c.code, c.msg, 0));
		return;
	}
	if (enqueue(r, req, &c, NULL, s.attempt) == -1)
		mi_step_end(r->db, 0, NULL);
	else if (mi_step_end(r->db, 1, &err) == -1)
		fatal(r, &err);
	jv_free(c.rest);
	jv_free(req);
}

void
mi_runner_request(struct mi_runner *r, jv req)
{
	const char *media = NULL, *prov = NULL, *prompt = NULL;
	struct mi_err err = MI_ERR_INIT;
	jv cand, fb, route, params;

	if (mi_json_has_error(req)) {
		pass(r, req);
		return;
	}
	if (jv_get_kind(req) != JV_KIND_OBJECT) {
		emit(r, mi_json_error(jv_object_set(jv_object(),
		    jv_string("request"), req), "VALIDATION_ERROR",
		    "a request is a JSON object", 0));
		return;
	}
	if (mi_json_str(req, "media_type", &media, 1, &err) == -1 ||
	    mi_json_str(req, "provider_id", &prov, 0, &err) == -1 ||
	    mi_json_str(req, "prompt", &prompt, 0, &err) == -1)
		goto invalid;
	params = jv_object_get(jv_copy(req), jv_string("params"));
	if (jv_get_kind(params) != JV_KIND_OBJECT &&
	    jv_get_kind(params) != JV_KIND_NULL && jv_is_valid(params)) {
		jv_free(params);
		mi_err_set(&err, EX_DATAERR, "params is not an object");
		goto invalid;
	}
	jv_free(params);
	route = jv_object_get(routing(r), jv_string(media));
	if (jv_get_kind(route) != JV_KIND_OBJECT) {
		jv_free(route);
		route = jv_object();
	}
	cand = jv_array();
	if (prov)
		cand = jv_array_append(cand, jv_string(prov));
	else {
		jv d = jv_object_get(jv_copy(route), jv_string("provider_id"));

		if (jv_get_kind(d) != JV_KIND_STRING) {
			jv_free(d);
			jv_free(cand);
			jv_free(route);
			mi_err_set(&err, EX_DATAERR, "no provider_id, and no "
			    "default provider for %s", media);
			goto invalid;
		}
		cand = jv_array_append(cand, d);
	}
	fb = jv_object_get(jv_copy(req), jv_string("fallback"));
	if (jv_get_kind(fb) == JV_KIND_NULL || !jv_is_valid(fb)) {
		jv_free(fb);
		fb = jv_object_get(jv_copy(route), jv_string("fallback"));
	}
	jv_free(route);
	if (jv_get_kind(fb) == JV_KIND_ARRAY)
		cand = jv_array_concat(cand, fb);
	else if (jv_get_kind(fb) != JV_KIND_NULL && jv_is_valid(fb)) {
		jv_free(fb);
		jv_free(cand);
		mi_err_set(&err, EX_DATAERR, "fallback is not an array");
		goto invalid;
	} else
		jv_free(fb);
	admit(r, req, cand);
	return;
invalid:
	emit(r, mi_json_error(req, "VALIDATION_ERROR", err.msg, 0));
}

/* Outcomes. */

static void finish_failed(struct mi_runner *r, struct rjob *j, jv outcome,
    const char *status);
static void time_out(struct mi_runner *r, struct rjob *j);
static void remote_cancel(struct mi_runner *r, struct rjob *j);

static int
fallback_eligible(const char *code)
{
	return strcmp(code, "VALIDATION_ERROR") != 0 &&
	    strcmp(code, "BUDGET_EXCEEDED") != 0 &&
	    strcmp(code, "STORAGE_ERROR") != 0;
}

/* Starts the next provider of j's chain; 0 when one took over. */
static int
fall_back(struct mi_runner *r, struct rjob *j, jv row)
{
	jv req = jv_object_get(jv_copy(row), jv_string("request"));
	jv cand = jv_object_get(jv_copy(row), jv_string("fallback"));
	struct choice c;
	int rc = -1;

	if (jv_get_kind(cand) != JV_KIND_ARRAY ||
	    jv_array_length(jv_copy(cand)) == 0 ||
	    jv_get_kind(req) != JV_KIND_OBJECT) {
		jv_free(cand);
		jv_free(req);
		return -1;
	}
	if (choose(r, req, cand, 0, &c) == 0) {
		note(r, MI_NOTE_INFO, "job %s: %s failed; falling back to %s",
		    j->id, mi_provider_id(j->p), mi_provider_id(c.p));
		rc = enqueue(r, req, &c, j->id, j->step_attempt);
	} else if (!r->fatal)
		note(r, MI_NOTE_WARN, "job %s: no fallback left: %s", j->id,
		    c.msg);
	jv_free(c.rest);
	jv_free(req);
	return rc;
}

static void
finish_failed(struct mi_runner *r, struct rjob *j, jv outcome,
    const char *status)
{
	struct mi_err err = MI_ERR_INIT;
	jv e = jv_object_get(jv_copy(outcome), jv_string("error"));
	const char *code = "PROVIDER_ERROR", *msg = "the provider failed";
	jv p = jv_object(), cost, row;
	int retryable = 0, allowed, chain, k;
	long window, cooldown;
	char code_s[40], msg_s[300];

	if (jv_get_kind(e) == JV_KIND_OBJECT) {
		mi_json_str(e, "code", &code, 0, NULL);
		mi_json_str(e, "message", &msg, 0, NULL);
		mi_json_bool(e, "retryable", &retryable, 0, NULL);
	}
	snprintf(code_s, sizeof(code_s), "%s", code);
	snprintf(msg_s, sizeof(msg_s), "%s", msg);
	msg = msg_s;
	p = jv_object_set(p, jv_string("status"), jv_string(status));
	p = jv_object_set(p, jv_string("error_code"), jv_string(code));
	p = jv_object_set(p, jv_string("error_message"), jv_string(msg));
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	p = jv_object_set(p, jv_string("attempts"), jv_number(j->attempts));
	if (j->progress > 0)
		p = jv_object_set(p, jv_string("progress"),
		    jv_number(j->progress));
	p = jv_object_set(p, jv_string("release"), jv_true());
	cost = jv_object_get(jv_copy(outcome), jv_string("cost_usd"));
	if (jv_get_kind(cost) == JV_KIND_NUMBER) {
		p = jv_object_set(p, jv_string("cost_usd"), cost);
		p = jv_object_set(p, jv_string("cost_source"),
		    jv_string("provider"));
	} else if (!j->accepted) {
		/* A refused create was not charged. */
		jv_free(cost);
		p = jv_object_set(p, jv_string("cost_usd"), jv_number(0));
		p = jv_object_set(p, jv_string("cost_source"),
		    jv_string("provider"));
	} else
		jv_free(cost);
	jv_free(e);
	jv_free(outcome);
	if (fallback_eligible(code_s) && strcmp(code_s, "CONFIG_ERROR") != 0 &&
	    strcmp(code_s, "VALIDATION_ERROR") != 0) {
		mi_provider_cooldown(j->p, &allowed, &window, &cooldown);
		if (mi_jobs_provider_failed(r->db, mi_provider_id(j->p),
		    allowed, window, cooldown, msg, &err) == 1)
			note(r, MI_NOTE_WARN, "provider '%s' failed more than "
			    "%d times: cooling down for %ld ms",
			    mi_provider_id(j->p), allowed, cooldown);
		else if (err.code) {
			jv_free(p);
			fatal(r, &err);
			return;
		}
	}
	/*
	 * The failure and the job that replaces it are written together:
	 * nobody who asks for the step in between sees a chain that ended
	 * and starts a second one.
	 */
	chain = fallback_eligible(code_s) && j->fallback != NULL &&
	    strcmp(j->fallback, "[]") != 0;
	if (chain && mi_db_begin(r->db, &err) == -1) {
		jv_free(p);
		fatal(r, &err);
		return;
	}
	row = patch(r, j, p);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		if (chain)
			mi_db_rollback(r->db);
		return;
	}
	note(r, MI_NOTE_VERBOSE, "job %s: %s %s: %s", j->id,
	    mi_provider_id(j->p), status, msg);
	if (chain) {
		k = fall_back(r, j, row);
		if (r->fatal)
			mi_db_rollback(r->db);
		else if (mi_db_commit(r->db, &err) == -1)
			fatal(r, &err);
		if (k == 0 || r->fatal) {
			jv_free(row);
			drop(r, j);
			return;
		}
	}
	drop(r, j);
	emit(r, with_error(row, retryable));
}

static void
finish_completed(struct mi_runner *r, struct rjob *j, jv outcome)
{
	jv res = jv_object_get(jv_copy(outcome), jv_string("result"));
	jv p = jv_object(), st, cost, meta, url, file, exp, row;
	char uri[4200];
	double c = 0;
	int have_cost = 0;

	if (jv_get_kind(res) != JV_KIND_OBJECT) {
		jv_free(res);
		jv_free(outcome);
		finish_failed(r, j, mi_outcome_error("failed",
		    "PROVIDER_ERROR", "completed without a result", 0),
		    "failed");
		return;
	}
	url = jv_object_get(jv_copy(res), jv_string("url"));
	file = jv_object_get(jv_copy(res), jv_string("file"));
	if (jv_get_kind(url) == JV_KIND_STRING)
		snprintf(uri, sizeof(uri), "%s", jv_string_value(url));
	else if (jv_get_kind(file) == JV_KIND_STRING)
		snprintf(uri, sizeof(uri), "file://%s", jv_string_value(file));
	else
		uri[0] = '\0';
	jv_free(url);
	jv_free(file);
	if (uri[0] == '\0') {
		jv_free(res);
		jv_free(outcome);
		finish_failed(r, j, mi_outcome_error("failed",
		    "PROVIDER_ERROR", "the result has no location", 0),
		    "failed");
		return;
	}
	st = jv_object_get(jv_copy(outcome), jv_string("state"));
	if (jv_get_kind(st) != JV_KIND_OBJECT) {
		jv_free(st);
		st = jv_object();
	}
	exp = jv_object_get(jv_copy(res), jv_string("expires_at"));
	if (jv_get_kind(exp) == JV_KIND_NUMBER && jv_number_value(exp) > 0)
		p = jv_object_set(p, jv_string("result_expires_ms"), exp);
	else {
		jv ttl = jv_object_get(mi_provider_meta(j->p),
		    jv_string("result_ttl_s"));

		jv_free(exp);
		if (jv_get_kind(ttl) == JV_KIND_NUMBER)
			p = jv_object_set(p, jv_string("result_expires_ms"),
			    jv_number((double)mi_wall_ms() +
			    jv_number_value(ttl) * 1000));
		jv_free(ttl);
	}
	st = jv_object_set(st, jv_string("result"), res);
	p = jv_object_set(p, jv_string("status"), jv_string("completed"));
	p = jv_object_set(p, jv_string("result_uri"), jv_string(uri));
	p = jv_object_set(p, jv_string("provider_state"), st);
	p = jv_object_set(p, jv_string("progress"), jv_number(100));
	p = jv_object_set(p, jv_string("attempts"), jv_number(j->attempts));
	p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
	if (j->last_look)
		p = jv_object_set(p, jv_string("late"), jv_true());
	cost = jv_object_get(jv_copy(outcome), jv_string("cost_usd"));
	if (jv_get_kind(cost) == JV_KIND_NUMBER) {
		c = jv_number_value(cost);
		have_cost = 1;
		p = jv_object_set(p, jv_string("cost_usd"), cost);
		p = jv_object_set(p, jv_string("cost_source"),
		    jv_string("provider"));
	} else
		jv_free(cost);
	meta = jv_object_get(jv_copy(outcome), jv_string("provider_job_id"));
	if (jv_get_kind(meta) == JV_KIND_STRING)
		p = jv_object_set(p, jv_string("provider_job_id"), meta);
	else
		jv_free(meta);
	jv_free(outcome);
	row = patch(r, j, p);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		return;
	}
	if (!have_cost)
		mi_json_num(row, "cost_usd", &c, 0, NULL);
	note(r, MI_NOTE_INFO, "job %s: completed by %s, cost $%.4f (%s)%s",
	    j->id, mi_provider_id(j->p), c, have_cost ? "provider" :
	    "estimate", j->last_look ? ", found at the deadline (late)" : "");
	drop(r, j);
	emit(r, row);
}

static long long
backoff(struct rjob *j, jv outcome, long base)
{
	jv ra = jv_object_get(jv_copy(outcome), jv_string("retry_after_ms"));
	long long b = (long long)base << (j->tries < 10 ? j->tries : 10);

	if (b > 60000)
		b = 60000;
	if (jv_get_kind(ra) == JV_KIND_NUMBER && jv_number_value(ra) > b)
		b = (long long)jv_number_value(ra);
	jv_free(ra);
	/* Spread the retries of many jobs. */
	return b + (b > 10 ? random() % (b / 10) : 0);
}

static long long
jittered(long interval)
{
	long spread = interval / 10;

	return interval + (spread > 0 ? random() % (2 * spread + 1) - spread :
	    0);
}

static void
error_text(jv outcome, char *out, size_t outsz)
{
	jv e = jv_object_get(jv_copy(outcome), jv_string("error"));
	const char *m = "temporary failure";

	if (jv_get_kind(e) == JV_KIND_OBJECT)
		mi_json_str(e, "message", &m, 0, NULL);
	snprintf(out, outsz, "%s", m);
	jv_free(e);
}

/* Keeps what a processing outcome says (provider job id, state). */
static int
keep_processing(struct mi_runner *r, struct rjob *j, jv outcome, int created)
{
	jv p = jv_object(), v, row;
	int changed = created;
	double d;

	v = jv_object_get(jv_copy(outcome), jv_string("provider_job_id"));
	if (jv_get_kind(v) == JV_KIND_STRING) {
		if (j->pjid == NULL || strcmp(j->pjid, jv_string_value(v)))
			changed = 1;
		set_str(&j->pjid, jv_string_value(v));
		p = jv_object_set(p, jv_string("provider_job_id"), v);
	} else
		jv_free(v);
	v = jv_object_get(jv_copy(outcome), jv_string("state"));
	if (jv_get_kind(v) == JV_KIND_OBJECT &&
	    jv_object_length(jv_copy(v)) > 0) {
		jv cur = j->state ? jv_parse(j->state) : jv_object();
		char *s;

		if (jv_get_kind(cur) != JV_KIND_OBJECT) {
			jv_free(cur);
			cur = jv_object();
		}
		cur = jv_object_merge(cur, jv_copy(v));
		if ((s = mi_json_dump(cur)) != NULL) {
			free(j->state);
			j->state = s;
		}
		jv_free(cur);
		p = jv_object_set(p, jv_string("provider_state"), v);
		changed = 1;
	} else
		jv_free(v);
	if (mi_json_num(outcome, "progress", &d, 0, NULL) == 1 && d >= 0 &&
	    d <= 100 && (int)d != j->progress) {
		j->progress = (int)d;
		j->dirty = 1;
		p = jv_object_set(p, jv_string("progress"), jv_number(d));
	}
	if (created) {
		p = jv_object_set(p, jv_string("status"),
		    jv_string("processing"));
		p = jv_object_set(p, jv_string("submit_unknown"), jv_false());
		p = jv_object_set(p, jv_string("attempts"),
		    jv_number(j->attempts));
	}
	if (!changed) {
		jv_free(p);
		return 0;
	}
	/* The next poll is built afresh from the new state. */
	mi_poll_memo_clear(&j->memo);
	row = patch(r, j, p);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		return -1;
	}
	if (created && !r->o.final && j->followup == NULL) {
		/* mi-submit's part ends: hand the job on. */
		drop(r, j);
		emit(r, row);
		return 1;
	}
	jv_free(row);
	return 0;
}

/* The wait before the next poll: the backstop interval while a webhook
 * is expected and the provider's webhooks have been arriving. */
static long long
next_poll(struct mi_runner *r, struct rjob *j)
{
	if (j->hooked && !j->g->missed && r->hook_backstop_ms > j->interval)
		return jittered(r->hook_backstop_ms);
	return jittered(j->interval);
}

/* A poll, not a webhook, found j's end: the provider's webhooks are not
 * arriving, so its other jobs go back to the usual interval. */
static void
hook_missed(struct mi_runner *r, struct rjob *j)
{
	long long now = mi_now_ms();
	size_t i;

	if (!j->hooked || j->hinted || j->g->missed ||
	    r->hook_backstop_ms <= j->interval)
		return;
	j->g->missed = 1;
	note(r, MI_NOTE_WARN, "job %s: no webhook from %s; polling every "
	    "%ld ms again", j->id, mi_provider_id(j->p), j->interval);
	for (i = 0; i < r->hn; i++) {
		struct rjob *x = r->heap[i];

		if (x->g == j->g && x->phase == P_POLL &&
		    x->due > now + x->interval)
			x->due = now + jittered(x->interval);
	}
	for (i = r->hn / 2 + 1; i-- > 0;)
		heap_down(r, i);
}

/* A follow-up create the outcome asks for, or -1. */
static int
take_followup(struct rjob *j, jv outcome)
{
	jv c = jv_object_get(jv_copy(outcome), jv_string("create"));
	char *s;

	if (jv_get_kind(c) != JV_KIND_OBJECT) {
		jv_free(c);
		return -1;
	}
	s = mi_json_dump(c);
	jv_free(c);
	free(j->followup);
	j->followup = s;
	return s ? 0 : -1;
}

static void
on_created(void *arg, jv out)
{
	struct rjob *j = arg;
	struct mi_runner *r = j->r;
	const char *st = "failed";
	char msg[300];
	jv row;
	int k;

	if (hold(j, out, on_created))
		return;
	j->busy = 0;
	if (j->lost) {
		jv_free(out);
		job_free(j);
		return;
	}
	mi_json_str(out, "status", &st, 0, NULL);
	if (strcmp(st, "processing") == 0) {
		int follow = take_followup(j, out) == 0;

		if (!follow) {
			free(j->followup);
			j->followup = NULL;
		}
		j->accepted = 1;
		j->tries = 0;
		if ((k = keep_processing(r, j, out, 1)) != 0) {
			jv_free(out);
			return;
		}
		if (follow)
			schedule(r, j, P_CREATE, mi_now_ms());
		else {
			int now = 0;

			mi_json_bool(out, "poll_now", &now, 0, NULL);
			schedule(r, j, P_POLL, mi_now_ms() +
			    (now ? 0 : next_poll(r, j)));
		}
		jv_free(out);
		return;
	}
	free(j->followup);
	j->followup = NULL;
	if (strcmp(st, "completed") == 0) {
		finish_completed(r, j, out);
		return;
	}
	if (strcmp(st, "retry") == 0) {
		if (++j->tries > r->create_retries) {
			finish_failed(r, j, out, "failed");
			return;
		}
		error_text(out, msg, sizeof(msg));
		note(r, MI_NOTE_VERBOSE, "job %s: %s; retrying", j->id, msg);
		row = patch(r, j, obj1("submit_unknown", jv_false()));
		if (jv_get_kind(row) == JV_KIND_OBJECT)
			schedule(r, j, P_CREATE, mi_now_ms() + backoff(j, out,
			    j->interval < 1000 ? j->interval : 1000));
		jv_free(row);
		jv_free(out);
		return;
	}
	if (strcmp(st, "unknown") == 0) {
		jv p = jv_object();

		char full[400];

		error_text(out, msg, sizeof(msg));
		jv_free(out);
		snprintf(full, sizeof(full), "%s; the create may have been "
		    "accepted: it is not sent again (mi-recover reconciles "
		    "it)", msg);
		p = jv_object_set(p, jv_string("error_code"),
		    jv_string("TIMEOUT"));
		p = jv_object_set(p, jv_string("error_message"),
		    jv_string(full));
		p = jv_object_set(p, jv_string("release"), jv_true());
		row = patch(r, j, p);
		if (jv_get_kind(row) != JV_KIND_OBJECT) {
			jv_free(row);
			return;
		}
		drop(r, j);
		emit(r, mi_json_error(row, "TIMEOUT", full, 1));
		return;
	}
	finish_failed(r, j, out, "failed");
}

static void
on_polled(void *arg, jv out)
{
	struct rjob *j = arg;
	struct mi_runner *r = j->r;
	const char *st = "failed";
	long long now = mi_now_ms();
	int pnow = 0;

	if (hold(j, out, on_polled))
		return;
	j->busy = 0;
	if (j->lost) {
		jv_free(out);
		job_free(j);
		return;
	}
	mi_json_str(out, "status", &st, 0, NULL);
	if (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0)
		hook_missed(r, j);
	if (strcmp(st, "completed") == 0) {
		finish_completed(r, j, out);
		return;
	}
	if (strcmp(st, "failed") == 0) {
		finish_failed(r, j, out, "failed");
		return;
	}
	if (j->last_look) {
		/* Not done at the deadline: no follow-up is started. */
		jv_free(out);
		time_out(r, j);
		return;
	}
	if (strcmp(st, "processing") == 0) {
		j->tries = 0;
		if (keep_processing(r, j, out, 0) != 0) {
			jv_free(out);
			return;
		}
		if (take_followup(j, out) == 0) {
			jv_free(out);
			schedule(r, j, P_CREATE, now);
			return;
		}
		mi_json_bool(out, "poll_now", &pnow, 0, NULL);
		jv_free(out);
		schedule(r, j, P_POLL, now + (pnow ? 0 : next_poll(r, j)));
		return;
	}
	/* retry, or anything else: transient. */
	if (++j->tries > r->poll_retries) {
		remote_cancel(r, j);
		finish_failed(r, j, out, "failed");
		return;
	}
	schedule(r, j, P_POLL, now + backoff(j, out, j->interval));
	jv_free(out);
}

/* Steps. */

static char *
b64(const unsigned char *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (out == NULL)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		*o++ = tab[p[i] >> 2];
		*o++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*o++ = tab[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		*o++ = tab[p[i + 2] & 63];
	}
	if (i < n) {
		*o++ = tab[p[i] >> 2];
		if (i + 1 < n) {
			*o++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
			*o++ = tab[(p[i + 1] & 15) << 2];
		} else {
			*o++ = tab[(p[i] & 3) << 4];
			*o++ = '=';
		}
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/*
 * The reference image of a request, for the definitions: {"url"} for an
 * http(s) URL, {"mime_type", "data" (base64)} for a stored asset of the
 * request's own tenant.  null when there is none; an error message when
 * it cannot be read.
 */
static jv
reference(jv req, char *msg, size_t msgsz)
{
	jv params = jv_object_get(jv_copy(req), jv_string("params"));
	const char *ref = NULL, *tenant = NULL, *at, *root;
	struct mi_asset_path ap;
	struct mi_err err = MI_ERR_INIT;
	const struct mi_mime *m;
	char path[4096], *data;
	struct mi_buf b;
	jv out = jv_null();
	FILE *fp;
	size_t n;

	msg[0] = '\0';
	if (jv_get_kind(params) != JV_KIND_OBJECT ||
	    mi_json_str(params, "reference_image", &ref, 0, NULL) != 1)
		goto out;
	if (strncmp(ref, "http://", 7) == 0 ||
	    strncmp(ref, "https://", 8) == 0) {
		if ((at = strstr(ref, "/api/assets/")) == NULL) {
			out = obj1("url", jv_string(ref));
			goto out;
		}
	} else if ((at = strstr(ref, "/api/assets/")) == NULL) {
		snprintf(msg, msgsz, "reference_image '%.200s' is not a "
		    "stored asset", ref);
		goto out;
	}
	mi_json_str(req, "tenant_id", &tenant, 0, NULL);
	root = getenv("ASSET_STORAGE_DIR");
	if (mi_asset_path_parse(at, &ap, &err) == -1 || tenant == NULL ||
	    strcmp(ap.tenant, tenant) != 0 || root == NULL) {
		snprintf(msg, msgsz, "reference_image '%.200s' is not an "
		    "asset of this tenant", ref);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s/%s/%s/%s.%s", root, ap.tenant,
	    ap.run, ap.type, ap.hash, ap.ext);
	if ((fp = fopen(path, "rb")) == NULL) {
		snprintf(msg, msgsz, "reference_image '%.200s' is missing",
		    ref);
		goto out;
	}
	mi_buf_init(&b, REF_MAX);
	for (;;) {
		char chunk[65536];

		if ((n = fread(chunk, 1, sizeof(chunk), fp)) == 0)
			break;
		if (mi_buf_add(&b, chunk, n) == -1)
			break;
	}
	fclose(fp);
	m = mi_mime_by_ext(ap.ext);
	if ((data = b64((unsigned char *)b.buf, b.len)) != NULL) {
		out = jv_object_set(obj1("mime_type",
		    jv_string(m ? m->type : "application/octet-stream")),
		    jv_string("data"), jv_string(data));
		free(data);
	}
	mi_buf_release(&b);
out:
	jv_free(params);
	return out;
}

/*
 * The further images of a request, read as reference() reads
 * reference_image: {"last_frame": ref, "images": [ref, ...]} from
 * params.last_frame and params.reference_images (at most 4), or null.
 */
static jv
more_references(jv req, char *msg, size_t msgsz)
{
	jv params = jv_object_get(jv_copy(req), jv_string("params"));
	jv out = jv_object(), lf, imgs;
	int i, n;

	msg[0] = '\0';
	if (jv_get_kind(params) != JV_KIND_OBJECT) {
		jv_free(params);
		jv_free(out);
		return jv_null();
	}
	lf = jv_object_get(jv_copy(params), jv_string("last_frame"));
	imgs = jv_object_get(params, jv_string("reference_images"));
	if (jv_get_kind(lf) == JV_KIND_STRING) {
		jv q = jv_object_set(jv_copy(req), jv_string("params"),
		    obj1("reference_image", jv_copy(lf)));

		out = jv_object_set(out, jv_string("last_frame"),
		    reference(q, msg, msgsz));
		jv_free(q);
	}
	n = jv_get_kind(imgs) == JV_KIND_ARRAY ?
	    jv_array_length(jv_copy(imgs)) : 0;
	if (n > 0 && !msg[0]) {
		jv list = jv_array();

		for (i = 0; i < n && i < 4 && !msg[0]; i++) {
			jv q = jv_object_set(jv_copy(req), jv_string("params"),
			    obj1("reference_image", jv_array_get(jv_copy(imgs),
			    i)));

			list = jv_array_append(list, reference(q, msg, msgsz));
			jv_free(q);
		}
		out = jv_object_set(out, jv_string("images"), list);
	}
	jv_free(lf);
	jv_free(imgs);
	if (jv_get_kind(out) == JV_KIND_OBJECT &&
	    jv_object_length(jv_copy(out)) == 0) {
		jv_free(out);
		return jv_null();
	}
	return out;
}

static void
do_create(struct mi_runner *r, struct rjob *j)
{
	struct mi_err err = MI_ERR_INIT;
	char spool[4200], name[64], msg[300], *hook = NULL;
	jv p = jv_object(), row, in, ref;
	int rc;

	p = jv_object_set(p, jv_string("submit_add"), jv_number(1));
	p = jv_object_set(p, jv_string("submit_unknown"), jv_true());
	p = jv_object_set(p, jv_string("started"), jv_true());
	if (j->followup == NULL && j->t == &mi_transport_http &&
	    mi_webhook_expected(mi_provider_meta(j->p), NULL)) {
		hook = mi_webhook_url(mi_provider_meta(j->p), j->id,
		    j->g->tenant);
		j->hooked = 1;
		p = jv_object_set(p, jv_string("provider_state"),
		    obj1("webhook", jv_true()));
	}
	row = patch(r, j, p);
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		free(hook);
		return;
	}
	if (j->deadline == 0) {
		const char *s = NULL;

		mi_json_str(row, "started_at", &s, 0, NULL);
		j->deadline = mi_now_ms() + (mi_jobs_time_ms(s) + j->timeout -
		    mi_wall_ms());
	}
	jv_free(row);
	in = job_input(j);
	if (hook) {
		in = jv_object_set(in, jv_string("webhook_url"),
		    jv_string(hook));
		free(hook);
	}
	hook = NULL;
	j->phase = P_CREATING;
	j->busy = 1;
	if (j->followup) {
		jv req = jv_parse(j->followup);

		mi_poll_memo_clear(&j->memo);
		rc = mi_transport_send(r->loop, j->p, req, in, "submitted", 1,
		    NULL, NULL, on_created, j, &err);
	} else {
		jv rq = jv_object_get(jv_copy(in), jv_string("request"));

		ref = reference(rq, msg, sizeof(msg));
		if (!msg[0]) {
			jv more = more_references(rq, msg, sizeof(msg));

			if (jv_get_kind(more) == JV_KIND_OBJECT)
				in = jv_object_set(in, jv_string("references"),
				    more);
			else
				jv_free(more);
		}
		jv_free(rq);
		if (msg[0]) {
			jv_free(ref);
			jv_free(in);
			j->busy = 0;
			finish_failed(r, j, mi_outcome_error("failed",
			    "VALIDATION_ERROR", msg, 0), "failed");
			return;
		}
		if (jv_get_kind(ref) != JV_KIND_NULL)
			in = jv_object_set(in, jv_string("reference"), ref);
		else
			jv_free(ref);
		snprintf(name, sizeof(name), "%s", j->id);
		if (j->t != &mi_transport_http &&
		    mi_spool_path(name, spool, sizeof(spool), &err) == -1) {
			jv_free(in);
			rc = -1;
		} else
			rc = j->t->submit(r->loop, j->p, in, spool, on_created,
			    j, &err);
	}
	if (rc == -1) {
		j->busy = 0;
		finish_failed(r, j, mi_outcome_error("failed",
		    err.code == EX_CONFIG ? "CONFIG_ERROR" :
		    err.code == EX_IOERR ? "STORAGE_ERROR" : "PROVIDER_ERROR",
		    err.msg, 0), "failed");
	}
}

struct rcancel {
	struct mi_runner *r;
	char id[40], provider[64];
};

static void
on_cancel(void *arg, jv outcome)
{
	struct rcancel *c = arg;
	struct mi_runner *r = c->r;
	struct mi_err err = MI_ERR_INIT;
	jv n;
	int ok = 0;

	r->cancels--;
	if (r->closing) {
		jv_free(outcome);
		free(c);
		return;
	}
	n = mi_cancel_record(r->db, c->id, outcome, &err);
	if (!jv_is_valid(n))
		note(r, MI_NOTE_WARN, "job %s: unable to record the cancel: "
		    "%s", c->id, err.msg);
	else {
		mi_json_bool(n, "accepted", &ok, 0, NULL);
		note(r, MI_NOTE_INFO, "job %s: cancelled at %s: %s", c->id,
		    c->provider, ok ? "accepted" : "refused");
	}
	jv_free(n);
	free(c);
}

/* A job mi gives up on may still run, and bill, at the provider: cancel
 * it there where the definition can.  The answer is recorded later. */
static void
remote_cancel(struct mi_runner *r, struct rjob *j)
{
	struct mi_err err = MI_ERR_INIT;
	struct rcancel *c;
	int k;

	if (!j->accepted || j->pjid == NULL || !j->t->polled ||
	    (c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->r = r;
	snprintf(c->id, sizeof(c->id), "%s", j->id);
	snprintf(c->provider, sizeof(c->provider), "%s",
	    mi_provider_id(j->p));
	k = mi_cancel_start(r->loop, j->p, job_input(j), on_cancel, c, &err);
	if (k == 1) {
		r->cancels++;
		note(r, MI_NOTE_VERBOSE, "job %s: cancelling at %s", j->id,
		    c->provider);
		return;
	}
	if (k == -1)
		note(r, MI_NOTE_WARN, "job %s: no cancel: %s", j->id, err.msg);
	free(c);
}

static void
time_out(struct mi_runner *r, struct rjob *j)
{
	char msg[120];

	snprintf(msg, sizeof(msg), "no result from %s within %.1f s",
	    mi_provider_id(j->p), j->timeout / 1000.0);
	remote_cancel(r, j);
	finish_failed(r, j, mi_outcome_error("timed_out", "TIMEOUT", msg, 1),
	    "timed_out");
}

static void
do_poll(struct mi_runner *r, struct rjob *j)
{
	struct mi_err err = MI_ERR_INIT;

	if (j->deadline && mi_now_ms() >= j->deadline) {
		/*
		 * A last look before giving up: a result that is ready now
		 * was paid for, and is taken (as late).  A job found long
		 * after its deadline (nobody held it then) was given up
		 * when the deadline passed.
		 */
		if (j->last_look || !j->t->polled || j->pjid == NULL ||
		    mi_now_ms() - j->deadline > LAST_LOOK_MS) {
			time_out(r, j);
			return;
		}
		j->last_look = 1;
		note(r, MI_NOTE_VERBOSE, "job %s: deadline reached; polling "
		    "once more", j->id);
	}
	if (!j->t->polled || j->pjid == NULL) {
		finish_failed(r, j, mi_outcome_error("failed",
		    "PROVIDER_ERROR", "nothing to poll", 0), "failed");
		return;
	}
	j->phase = P_POLLING;
	j->busy = 1;
	j->attempts++;
	j->dirty = 1;
	/* The definition's input is built only if the definition runs. */
	if (j->t->poll(r->loop, j->p, jv_invalid(), &j->memo, on_polled, j,
	    &err) == -1) {
		j->busy = 0;
		finish_failed(r, j, mi_outcome_error("failed",
		    err.code == EX_CONFIG ? "CONFIG_ERROR" : "PROVIDER_ERROR",
		    err.msg, 0), "failed");
	}
}

/* Claims. */

static void
claim(struct mi_runner *r, struct group *g)
{
	struct mi_err err = MI_ERR_INIT;
	jv rows;
	int i, n;

	g->want = 0;
	if (g->head == NULL)
		return;
	rows = mi_jobs_claim(r->db, g->tenant, mi_provider_id(g->p),
	    mi_provider_concurrency(g->p, g->media), &err);
	if (!jv_is_valid(rows)) {
		jv_free(rows);
		/* A claim cut short by an outage is made again. */
		if (mi_db_tx_lost(r->db))
			g->want = 1;
		else
			fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);
		const char *id = NULL, *st = NULL;
		struct rjob *j;

		mi_json_str(row, "id", &id, 0, NULL);
		mi_json_str(row, "status", &st, 0, NULL);
		if (id == NULL || (j = find(r, id)) == NULL) {
			jv_free(row);
			continue;
		}
		wait_del(g, j);
		if (st && strcmp(st, "processing") == 0) {
			note(r, MI_NOTE_VERBOSE, "job %s: took a %s slot",
			    j->id, mi_provider_id(j->p));
			schedule(r, j, P_CREATE, mi_now_ms());
			jv_free(row);
		} else {
			j->phase = P_CREATE;	/* not waiting any more */
			drop(r, j);
			emit(r, with_error(row, 0));
		}
	}
	jv_free(rows);
	if (r->o.no_wait) {
		/* Leave the rest queued for a worker. */
		while (g->head) {
			struct rjob *j = g->head;
			jv row = patch(r, j, obj1("release", jv_true()));

			if (jv_get_kind(row) != JV_KIND_OBJECT) {
				jv_free(row);
				if (r->fatal)
					return;
				continue;
			}
			note(r, MI_NOTE_VERBOSE, "job %s: queued", j->id);
			drop(r, j);
			emit(r, row);
		}
	}
}

/* Taking over handed-over jobs. */

static void
follow_add(struct mi_runner *r, const char *id, double k)
{
	jv n = jv_object_get(jv_copy(r->follow), jv_string(id));

	if (jv_get_kind(n) == JV_KIND_NUMBER)
		k += jv_number_value(n);
	jv_free(n);
	r->follow = jv_object_set(r->follow, jv_string(id), jv_number(k));
	if (r->next_follow == 0)
		r->next_follow = mi_now_ms();
}

static void adopt(struct mi_runner *r, jv row);

/*
 * The jobs followed for other requests of their steps: a final job is
 * answered (as many times as it is owed; a failed one that a fallback
 * replaced is followed on to its replacement), a live one is taken over
 * when its lease is free.
 */
static void
check_follow(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	jv owed = r->follow, rows, pairs = jv_array(), taken;
	int i, n, m;

	r->follow = jv_object();
	rows = mi_jobs_get(r->db, jv_keys(jv_copy(owed)), &err);
	if (!jv_is_valid(rows)) {
		jv_free(owed);
		jv_free(pairs);
		fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n && !r->fatal; i++) {
		jv row = jv_array_get(jv_copy(rows), i), k, next;
		const char *id = NULL, *st = NULL;

		mi_json_str(row, "id", &id, 0, NULL);
		mi_json_str(row, "status", &st, 0, NULL);
		k = jv_object_get(jv_copy(owed), jv_string(id ? id : ""));
		m = jv_get_kind(k) == JV_KIND_NUMBER ?
		    (int)jv_number_value(k) : 0;
		jv_free(k);
		if (id == NULL || st == NULL || m <= 0) {
			jv_free(row);
			continue;
		}
		if (strcmp(st, "pending") == 0 ||
		    strcmp(st, "processing") == 0) {
			follow_add(r, id, m);
			if (find(r, id) == NULL)
				pairs = jv_array_append(pairs, jv_array_append(
				    jv_array_append(jv_array(), jv_string(id)),
				    jv_null()));
			jv_free(row);
			continue;
		}
		if (strcmp(st, "completed") != 0) {
			next = mi_jobs_successor(r->db, id, &err);
			if (!jv_is_valid(next)) {
				jv_free(row);
				fatal(r, &err);
				break;
			}
			if (jv_get_kind(next) == JV_KIND_OBJECT &&
			    mi_json_str(next, "id", &id, 1, NULL) == 1) {
				follow_add(r, id, m);
				jv_free(next);
				jv_free(row);
				continue;
			}
			jv_free(next);
		}
		while (m-- > 0)
			emit(r, strcmp(st, "completed") == 0 ? jv_copy(row) :
			    with_error(jv_copy(row), 0));
		jv_free(row);
	}
	jv_free(rows);
	jv_free(owed);
	if (r->fatal || jv_array_length(jv_copy(pairs)) == 0) {
		jv_free(pairs);
		return;
	}
	taken = mi_jobs_take(r->db, pairs, 0, &err);
	if (!jv_is_valid(taken)) {
		fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(taken));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(taken), i), k;
		const char *id = NULL;

		/* Driven here from now on: one answer comes from that. */
		if (mi_json_str(row, "id", &id, 0, NULL) == 1) {
			note(r, MI_NOTE_INFO, "job %s: its owner is gone; "
			    "taken over", id);
			follow_add(r, id, -1);
			k = jv_object_get(jv_copy(r->follow), jv_string(id));
			if (jv_get_kind(k) != JV_KIND_NUMBER ||
			    jv_number_value(k) <= 0)
				r->follow = jv_object_delete(r->follow,
				    jv_string(id));
			jv_free(k);
		}
		adopt(r, row);
	}
	jv_free(taken);
}

void
mi_runner_job(struct mi_runner *r, jv job)
{
	const char *id = NULL, *st = NULL, *owner = NULL;
	int reused = 0;

	if (mi_json_has_error(job) || mi_step_is_artifact(job)) {
		/* Errors, and artifacts (a step answered with its stored
		 * result or from the cache), go on untouched. */
		pass(r, job);
		return;
	}
	if (jv_get_kind(job) != JV_KIND_OBJECT ||
	    mi_json_str(job, "id", &id, 1, NULL) != 1 ||
	    mi_json_str(job, "status", &st, 1, NULL) != 1 ||
	    !mi_name_uuid_ok(id)) {
		if (jv_get_kind(job) != JV_KIND_OBJECT)
			job = obj1("job", job);
		emit(r, mi_json_error(job, "VALIDATION_ERROR",
		    "not a job record (no id or status)", 0));
		return;
	}
	if (strcmp(st, "failed") == 0 || strcmp(st, "timed_out") == 0) {
		emit(r, with_error(job, 0));
		return;
	}
	if (strcmp(st, "pending") != 0 && strcmp(st, "processing") != 0) {
		emit(r, job);
		return;
	}
	if (mi_json_bool(job, "reused", &reused, 0, NULL) == 1 && reused) {
		/* Another request for the same step started this job: wait
		 * for it, and take it over only once its owner is gone. */
		follow_add(r, id, 1);
		jv_free(job);
		return;
	}
	mi_json_str(job, "lease_owner", &owner, 0, NULL);
	r->take = jv_array_append(r->take, jv_array_append(jv_array_append(
	    jv_array(), jv_string(id)), owner ? jv_string(owner) : jv_null()));
	r->takerec = jv_object_set(r->takerec, jv_string(id), job);
}

static void
adopt(struct mi_runner *r, jv row)
{
	struct mi_err err = MI_ERR_INIT;
	const char *st = NULL;
	struct rjob *j;
	int unknown = 0;
	double sc = 0;

	mi_json_str(row, "status", &st, 0, NULL);
	if ((j = job_new(r, row, &err)) == NULL) {
		emit(r, mi_json_error(row, err.code == EX_CONFIG ?
		    "CONFIG_ERROR" : "VALIDATION_ERROR", err.msg, 0));
		return;
	}
	if (strcmp(st, "pending") == 0) {
		j->phase = P_WAIT;
		wait_add(j->g, j);
		jv_free(row);
		return;
	}
	mi_json_bool(row, "submit_unknown", &unknown, 0, NULL);
	mi_json_num(row, "submit_count", &sc, 0, NULL);
	jv_free(row);
	if (j->pjid && !unknown && j->t->polled) {
		schedule(r, j, P_POLL, mi_now_ms());
		return;
	}
	if (j->pjid == NULL && !unknown && sc == 0) {
		schedule(r, j, P_CREATE, mi_now_ms());
		return;
	}
	/* A create went out and nobody knows what became of it. */
	row = patch(r, j, obj1("release", jv_true()));
	if (jv_get_kind(row) == JV_KIND_OBJECT) {
		drop(r, j);
		emit(r, mi_json_error(row, "TIMEOUT", "the create's outcome "
		    "is unknown; mi-recover reconciles it", 1));
	} else
		jv_free(row);
}

static void
take_over(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	jv rows, left, ids, cur;
	int i, n;

	if (jv_array_length(jv_copy(r->take)) == 0)
		return;
	rows = mi_jobs_take(r->db, r->take, 0, &err);
	r->take = jv_array();
	if (!jv_is_valid(rows)) {
		fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);
		const char *id = NULL;

		mi_json_str(row, "id", &id, 0, NULL);
		if (id)
			r->takerec = jv_object_delete(r->takerec,
			    jv_string(id));
		adopt(r, row);
	}
	jv_free(rows);
	/* The ones not taken: final meanwhile, or another worker's. */
	left = r->takerec;
	r->takerec = jv_object();
	if (jv_object_length(jv_copy(left)) == 0) {
		jv_free(left);
		return;
	}
	ids = jv_keys(jv_copy(left));
	cur = mi_jobs_get(r->db, ids, &err);
	if (!jv_is_valid(cur)) {
		jv_free(left);
		fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(cur));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(cur), i);
		const char *id = NULL, *st = NULL, *owner = "another worker";

		mi_json_str(row, "id", &id, 0, NULL);
		mi_json_str(row, "status", &st, 0, NULL);
		mi_json_str(row, "lease_owner", &owner, 0, NULL);
		left = jv_object_delete(left, jv_string(id));
		if (strcmp(st, "failed") == 0 || strcmp(st, "timed_out") == 0)
			emit(r, with_error(row, 0));
		else if (strcmp(st, "completed") == 0)
			emit(r, row);
		else {
			char msg[400];

			snprintf(msg, sizeof(msg), "job is held by %s", owner);
			emit(r, mi_json_error(row, "TIMEOUT", msg, 1));
		}
	}
	jv_free(cur);
	jv_object_foreach(left, k, v) {
		jv_free(k);
		emit(r, mi_json_error(v, "NOT_FOUND", "no such job", 0));
	}
	jv_free(left);
}

/* Bookkeeping. */

static void
flush(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_jobs_tick *t;
	long long skew = mi_wall_ms() - mi_now_ms();
	size_t i, n = 0;

	if ((t = calloc(r->n ? r->n : 1, sizeof(*t))) == NULL)
		return;
	for (i = 0; i < r->nbuck; i++) {
		struct rjob *j;

		for (j = r->tab[i]; j && n < r->n; j = j->hnext) {
			if (!j->dirty)
				continue;
			j->dirty = 0;
			t[n].id = j->id;
			t[n].attempts = j->attempts;
			t[n].progress = j->progress > 0 ? j->progress : -1;
			t[n].next_ms = j->phase == P_POLL ? j->due + skew :
			    mi_wall_ms();
			n++;
		}
	}
	if (mi_jobs_flush(r->db, t, n, &err) == -1)
		fatal(r, &err);
	free(t);
}

static void
renew(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	jv ids = jv_array(), kept;
	size_t i;
	int n = 0, k;

	for (i = 0; i < r->nbuck; i++) {
		struct rjob *j;

		for (j = r->tab[i]; j; j = j->hnext) {
			ids = jv_array_append(ids, jv_string(j->id));
			n++;
		}
	}
	if (n == 0) {
		jv_free(ids);
		return;
	}
	kept = mi_jobs_renew(r->db, jv_copy(ids), &err);
	if (!jv_is_valid(kept)) {
		jv_free(ids);
		fatal(r, &err);
		return;
	}
	if (jv_array_length(jv_copy(kept)) < n) {
		jv held = jv_object();

		k = jv_array_length(jv_copy(kept));
		for (i = 0; i < (size_t)k; i++)
			held = jv_object_set(held, jv_array_get(jv_copy(kept),
			    (int)i), jv_true());
		for (i = 0; i < (size_t)n; i++) {
			jv id = jv_array_get(jv_copy(ids), (int)i);
			jv h = jv_object_get(jv_copy(held), jv_copy(id));
			struct rjob *j;

			if (!jv_is_valid(h) &&
			    (j = find(r, jv_string_value(id))) != NULL) {
				note(r, MI_NOTE_WARN, "job %s: lease lost to "
				    "another worker", j->id);
				drop(r, j);
			}
			jv_free(h);
			jv_free(id);
		}
		jv_free(held);
	}
	jv_free(kept);
	jv_free(ids);
}

struct mi_runner *
mi_runner_new(struct mi_db *db, const struct mi_runner_opts *o,
    struct mi_err *err)
{
	struct mi_runner *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	r->db = db;
	r->o = *o;
	r->held_tail = &r->held;
	r->nbuck = 1024;
	if ((r->tab = calloc(r->nbuck, sizeof(*r->tab))) == NULL ||
	    (r->loop = mi_loop_new(err)) == NULL) {
		free(r->tab);
		free(r);
		return NULL;
	}
	if (mi_db_listen(db, MI_JOBS_CHANNEL, err) == -1) {
		mi_loop_free(r->loop);
		free(r->tab);
		free(r);
		return NULL;
	}
	if (mi_db_listen(db, MI_WEBHOOK_CHANNEL, err) == -1) {
		mi_loop_free(r->loop);
		free(r->tab);
		free(r);
		return NULL;
	}
	r->listening = 1;
	mi_db_set_wait(db, db_wait, r);
	r->dbgen = mi_db_generation(db);
	r->hooks = jv_array();
	r->hook_backstop_ms = env_num("MI_WEBHOOK_BACKSTOP_MS", 60000, 10,
	    86400000);
	r->take = jv_array();
	r->takerec = jv_object();
	r->follow = jv_object();
	r->follow_ms = env_num("MI_FOLLOW_MS", 500, 10, 60000);
	r->routing = jv_invalid();
	r->lease_ms = mi_jobs_lease_ms();
	r->backstop_ms = env_num("MI_SLOT_POLL_MS", 2000, 10, 3600000);
	r->parallel = (int)env_num("MI_POLL_PARALLEL", 64, 1, 100000);
	r->create_retries = (int)env_num("MI_SUBMIT_RETRIES", 4, 0, 100);
	r->poll_retries = (int)env_num("MI_POLL_RETRIES", 10, 0, 1000);
	r->coalesce_ms = env_num("MI_POLL_COALESCE_MS", 2, 0, 1000);
	r->batch_ms = env_num("MI_POLL_BATCH_MS", 100, 0, 10000);
	r->input_ready = 1;
	r->next_flush = mi_now_ms() + 1000;
	r->next_renew = mi_now_ms() + r->lease_ms / 3;
	r->next_backstop = mi_now_ms() + r->backstop_ms;
	srandom((unsigned)(mi_wall_ms() ^ getpid()));
	return r;
}

void
mi_runner_free(struct mi_runner *r)
{
	struct group *g;
	struct held *h;
	size_t i;

	if (r == NULL)
		return;
	mi_db_set_wait(r->db, NULL, NULL);
	while ((h = r->held) != NULL) {
		r->held = h->next;
		jv_free(h->out);
		h->j->busy = 0;
		h->j->lost = 1;
		free(h);
	}
	r->closing = 1;
	/* Operations still under way end here; their jobs are freed. */
	for (i = 0; i < r->nbuck; i++) {
		struct rjob *j, *nx;

		for (j = r->tab[i]; j; j = nx) {
			nx = j->hnext;
			if (j->busy)
				j->lost = 1;
			else
				job_free(j);
		}
	}
	mi_loop_free(r->loop);
	while ((g = r->groups) != NULL) {
		r->groups = g->next;
		free(g->tenant);
		free(g);
	}
	free(r->tab);
	free(r->heap);
	jv_free(r->take);
	jv_free(r->hooks);
	jv_free(r->takerec);
	jv_free(r->follow);
	jv_free(r->routing);
	free(r);
}

int
mi_runner_count(const struct mi_runner *r)
{
	return (int)r->n + jv_array_length(jv_copy(r->take)) +
	    jv_object_length(jv_copy(r->follow)) + r->cancels;
}

void
mi_runner_stats(const struct mi_runner *r, struct mi_runner_stats *s)
{
	long sum = 0;
	size_t i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < r->nbuck; i++) {
		struct rjob *j;

		for (j = r->tab[i]; j; j = j->hnext) {
			if (j->phase == P_WAIT)
				s->waiting++;
			else if (j->phase == P_CREATE ||
			    j->phase == P_CREATING)
				s->creating++;
			else {
				s->polling++;
				sum += j->progress;
			}
		}
	}
	s->avg_progress = s->polling ? (int)(sum / s->polling) : 0;
	s->finished = r->finished;
}

void
mi_runner_release(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	jv ids = jv_array();
	size_t i;

	flush(r);
	for (i = 0; i < r->nbuck; i++) {
		struct rjob *j, *nx;

		for (j = r->tab[i]; j; j = nx) {
			nx = j->hnext;
			ids = jv_array_append(ids, jv_string(j->id));
			drop(r, j);
		}
	}
	if (mi_jobs_release(r->db, ids, &err) == -1)
		fatal(r, &err);
}

/* How early a due job may go: polls up to the batch window, but never
 * more than a fifth of their interval. */
static long
early(const struct mi_runner *r, const struct rjob *j)
{
	long e = j->interval / 5;

	if (j->phase != P_POLL)
		return 0;
	return e < r->batch_ms ? e : r->batch_ms;
}

/* Freed slots wake the claims; deliveries for jobs in hand are taken. */
static void
notified(struct mi_runner *r)
{
	jv all = mi_db_notifications(r->db);
	struct group *g;
	int i, n = jv_array_length(jv_copy(all));

	for (i = 0; i < n; i++) {
		jv e = jv_array_get(jv_copy(all), i);
		jv ch = jv_array_get(jv_copy(e), 0), pl = jv_array_get(e, 1);

		if (strcmp(jv_string_value(ch), MI_JOBS_CHANNEL) == 0) {
			for (g = r->groups; g; g = g->next)
				if (g->head)
					g->want = 1;
		} else if (find(r, jv_string_value(pl)) != NULL)
			r->hooks = jv_array_append(r->hooks, jv_copy(pl));
		jv_free(ch);
		jv_free(pl);
	}
	jv_free(all);
}

/*
 * A notification without a delivery: the job may have been ended by
 * another program (mi-cancel).  Such a job goes out as it now is.
 */
static void
ended_elsewhere(struct mi_runner *r, jv ids, jv rows)
{
	struct mi_err err = MI_ERR_INIT;
	jv seen = jv_object(), rest = jv_array(), cur;
	int i, n = jv_array_length(jv_copy(rows));

	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);

		seen = jv_object_set(seen, jv_object_get(row,
		    jv_string("job_id")), jv_true());
	}
	n = jv_array_length(jv_copy(ids));
	for (i = 0; i < n; i++) {
		jv id = jv_array_get(jv_copy(ids), i);
		jv h = jv_object_get(jv_copy(seen), jv_copy(id));

		if (jv_is_valid(h))
			jv_free(id);
		else
			rest = jv_array_append(rest, id);
		jv_free(h);
	}
	jv_free(seen);
	jv_free(ids);
	if (jv_array_length(jv_copy(rest)) == 0) {
		jv_free(rest);
		return;
	}
	cur = mi_jobs_get(r->db, rest, &err);
	if (!jv_is_valid(cur)) {
		fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(cur));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(cur), i);
		const char *id = NULL, *st = "";
		struct rjob *j;

		mi_json_str(row, "id", &id, 0, NULL);
		mi_json_str(row, "status", &st, 0, NULL);
		if (id && (j = find(r, id)) != NULL && !j->busy &&
		    (strcmp(st, "failed") == 0 ||
		    strcmp(st, "timed_out") == 0)) {
			note(r, MI_NOTE_INFO, "job %s: %s elsewhere", j->id,
			    st);
			drop(r, j);
			emit(r, with_error(row, 0));
		} else
			jv_free(row);
	}
	jv_free(cur);
}

/*
 * Applies the deliveries of jobs in hand exactly as poll answers (a hint
 * polls at once).  A job with a poll under way keeps its delivery until
 * the poll has ended.
 */
static void
take_hooks(struct mi_runner *r)
{
	struct mi_err err = MI_ERR_INIT;
	int i, n = jv_array_length(jv_copy(r->hooks));
	jv ids, later, rows;

	if (n == 0)
		return;
	ids = jv_array();
	later = jv_array();
	for (i = 0; i < n; i++) {
		jv id = jv_array_get(jv_copy(r->hooks), i);
		struct rjob *j = find(r, jv_string_value(id));

		if (j == NULL)
			jv_free(id);
		else if (j->busy)
			later = jv_array_append(later, id);
		else
			ids = jv_array_append(ids, id);
	}
	jv_free(r->hooks);
	r->hooks = later;
	if (jv_array_length(jv_copy(ids)) == 0) {
		jv_free(ids);
		return;
	}
	rows = mi_webhook_take(r->db, jv_copy(ids), &err);
	if (!jv_is_valid(rows)) {
		jv_free(ids);
		fatal(r, &err);
		return;
	}
	ended_elsewhere(r, ids, rows);
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);
		jv out = jv_object_get(jv_copy(row), jv_string("outcome"));
		const char *id = NULL;
		struct rjob *j;

		mi_json_str(row, "job_id", &id, 0, NULL);
		j = id ? find(r, id) : NULL;
		if (j == NULL || j->busy || (j->phase != P_POLL &&
		    j->phase != P_POLLING)) {
			jv_free(out);
		} else if (jv_get_kind(out) != JV_KIND_OBJECT) {
			jv_free(out);
			note(r, MI_NOTE_VERBOSE, "job %s: webhook: polling now",
			    j->id);
			j->g->missed = 0;
			j->hinted = 1;
			schedule(r, j, P_POLL, mi_now_ms());
		} else {
			note(r, MI_NOTE_VERBOSE, "job %s: webhook", j->id);
			j->g->missed = 0;
			j->busy = 1;
			on_polled(j, out);
		}
		jv_free(row);
	}
	jv_free(rows);
}

int
mi_runner_run(struct mi_runner *r, const int *fds, int nfds, long timeout_ms,
    struct mi_err *err)
{
	long long now = mi_now_ms(), until = now + timeout_ms, wake;
	struct group *g;
	int all[8], i, n = 0, started = 0, ready;

	/* Back from an outage: the leases first, then what came meanwhile. */
	if (mi_db_generation(r->db) != r->dbgen) {
		r->dbgen = mi_db_generation(r->db);
		note(r, MI_NOTE_WARN, "connected to the database again");
		renew(r);
		r->next_renew = now + r->lease_ms / 3;
	}
	release_held(r);
	take_over(r);
	/* Notifications that came in during a statement wait in libpq, not
	 * on the socket: look at them each time round. */
	notified(r);
	take_hooks(r);
	for (g = r->groups; g && !r->fatal; g = g->next)
		if (g->want)
			claim(r, g);
	/*
	 * Due jobs, as many as the parallel limit lets start.  Polls due
	 * within the batch window go out now too: a poll a little early
	 * costs nothing, and a process that wakes for a batch rather than
	 * for every poll spends far less on waking up.
	 */
	while (!r->fatal && r->hn > 0 && r->heap[0]->due <= now +
	    early(r, r->heap[0]) && mi_loop_busy(r->loop) < r->parallel &&
	    started < 1000) {
		struct rjob *j = r->heap[0];

		heap_remove(r, j);
		if (j->phase == P_CREATE)
			do_create(r, j);
		else
			do_poll(r, j);
		started++;
	}
	if (!r->fatal && now >= r->next_flush) {
		flush(r);
		r->next_flush = now + 1000;
	}
	if (!r->fatal && now >= r->next_renew) {
		renew(r);
		r->next_renew = now + r->lease_ms / 3;
	}
	if (!r->fatal && jv_object_length(jv_copy(r->follow)) > 0 &&
	    now >= r->next_follow) {
		check_follow(r);
		r->next_follow = now + r->follow_ms;
	}
	if (!r->fatal && now >= r->next_backstop) {
		for (g = r->groups; g; g = g->next)
			if (g->head)
				g->want = 1;
		r->next_backstop = now + r->backstop_ms;
	}
	if (r->fatal) {
		*err = r->ferr;
		return -1;
	}
	wake = until;
	if (r->hn > 0 && mi_loop_busy(r->loop) < r->parallel) {
		long long due = r->heap[0]->due - early(r, r->heap[0]);

		if (due < wake)
			wake = due;
	}
	if (r->next_flush < wake)
		wake = r->next_flush;
	if (r->next_renew < wake)
		wake = r->next_renew;
	if (r->next_backstop < wake)
		wake = r->next_backstop;
	if (jv_object_length(jv_copy(r->follow)) > 0 && r->next_follow < wake)
		wake = r->next_follow;
	for (g = r->groups; g; g = g->next)
		if (g->want)
			wake = now;
	if (jv_array_length(jv_copy(r->take)) > 0)
		wake = now;
	for (i = 0; i < nfds && n < 6; i++)
		all[n++] = fds[i];
	all[n++] = mi_db_socket(r->db);
	/* Wakes for a burst of answers at once rather than one by one: a
	 * poll a few milliseconds late costs nothing. */
	if (r->coalesce_ms > 0 && mi_loop_busy(r->loop) > 0 && wake > now)
		mi_sleep_ms(r->coalesce_ms);
	if ((ready = mi_loop_wait(r->loop, all, n, wake > now ? wake - now :
	    0, err)) == -1)
		return -1;
	release_held(r);
	if (ready & (1 << (n - 1)))
		notified(r);
	if (r->fatal) {
		*err = r->ferr;
		return -1;
	}
	return ready & ((1 << (n - 1)) - 1);
}

int
mi_runner_pump(struct mi_runner *r, struct mi_inq *q, int jobs,
    long timeout_ms, struct mi_err *err)
{
	struct mi_err rerr = MI_ERR_INIT;
	int k, fd, n = 0;
	jv v;

	while (!r->eof && r->input_ready && n < 500) {
		k = mi_inq_next(q, &v, &rerr);
		if (k == 0) {
			r->input_ready = 0;
			break;
		}
		if (k == 2)
			r->eof = 1;
		else if (k == -2) {
			*err = rerr;
			return -1;
		} else if (k == -1)
			emit(r, mi_json_error(jv_object(), "INVALID_JSON",
			    rerr.msg, 0));
		else if (jobs)
			mi_runner_job(r, v);
		else
			mi_runner_request(r, v);
		n++;
	}
	if (r->fatal) {
		*err = r->ferr;
		return -1;
	}
	if (r->eof && mi_runner_count(r) == 0)
		return 0;
	fd = mi_inq_fd(q);
	if ((k = mi_runner_run(r, &fd, r->eof ? 0 : 1, n >= 500 ? 0 :
	    timeout_ms, err)) == -1)
		return -1;
	if (k & 1)
		r->input_ready = 1;
	return r->eof && mi_runner_count(r) == 0 ? 0 : 1;
}
