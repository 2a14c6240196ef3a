/*
 * engine/sched.c - where the runner's jobs wait: the job table, the
 * timers, and the groups' waiting lists.
 *
 * The table is a hash of jobs by id, chained through hnext, with a
 * power-of-two bucket count.  The heap holds the jobs that wait for a
 * time (a create or a poll due), smallest due first; j->heap is a job's
 * index in it, -1 when it is not in it.  Jobs waiting for a slot are in
 * their group's list instead, and a job is taken out of the heap before
 * its exchange starts.  A group is one (tenant, provider) pair; its
 * waiting jobs are listed oldest first, and the group's media is that of
 * the oldest one, which sets the concurrency limit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "banned.h"

/* Hash table of jobs by id. */

static size_t
hash_id(const char *s, size_t n)
{
	size_t h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h & (n - 1);
}

static int
creating(int phase)
{
	return phase == P_CREATE || phase == P_CREATING;
}

void
eng_set_phase(struct rjob *j, int phase)
{
	if (j->linked)
		j->r->ncreating += creating(phase) - creating(j->phase);
	j->phase = phase;
}

struct rjob *
eng_find(struct mi_runner *r, const char *id)
{
	struct rjob *j;

	for (j = r->tab[hash_id(id, r->nbuck)]; j; j = j->hnext)
		if (strcmp(j->id, id) == 0)
			return j;
	return NULL;
}

void
eng_tab_add(struct mi_runner *r, struct rjob *j)
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
	j->linked = 1;
	r->ncreating += creating(j->phase);
}

void
eng_tab_del(struct mi_runner *r, struct rjob *j)
{
	struct rjob **p = &r->tab[hash_id(j->id, r->nbuck)];

	for (; *p; p = &(*p)->hnext)
		if (*p == j) {
			*p = j->hnext;
			r->n--;
			j->linked = 0;
			r->ncreating -= creating(j->phase);
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

void
eng_heap_down(struct mi_runner *r, size_t i)
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

void
eng_heap_remove(struct mi_runner *r, struct rjob *j)
{
	size_t i = (size_t)j->heap;

	if (j->heap < 0)
		return;
	j->heap = -1;
	if (i == --r->hn)
		return;
	r->heap[i] = r->heap[r->hn];
	r->heap[i]->heap = (int)i;
	eng_heap_down(r, i);
	heap_up(r, i);
}

void
eng_schedule(struct mi_runner *r, struct rjob *j, int phase, long long due)
{
	eng_set_phase(j, phase);
	if (j->deadline && due > j->deadline && phase == P_POLL)
		due = j->deadline;
	j->due = due;
	if (j->heap >= 0) {
		eng_heap_down(r, (size_t)j->heap);
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

/* Groups: their waiting lists, oldest first. */

struct group *
eng_group_of(struct mi_runner *r, const char *tenant, struct mi_provider *p)
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

void
eng_wait_add(struct group *g, struct rjob *j)
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

void
eng_wait_del(struct group *g, struct rjob *j)
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
