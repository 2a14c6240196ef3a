/*
 * engine/claim.c - groups, their waiting lists, and claims of slots.
 *
 * A group is one (tenant, provider) pair; its jobs waiting for a slot
 * are listed oldest first, and the group's media is that of the oldest
 * one, which sets the concurrency limit.  A claim (jobs.c) takes the
 * free slots of a group in one transaction, strictly first come, first
 * served; claimed jobs leave the list for the heap, and a claim cut
 * short by an outage is wanted again rather than failing the runner.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "json.h"
#include "provider.h"
#include "engine/engine.h"
#include "banned.h"

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

/* Claims. */

void
eng_claim(struct mi_runner *r, struct group *g)
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
			eng_fatal(r, &err);
		return;
	}
	n = jv_array_length(jv_copy(rows));
	for (i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);
		const char *id = NULL, *st = NULL;
		struct rjob *j;

		mi_json_str(row, "id", &id, 0, NULL);
		mi_json_str(row, "status", &st, 0, NULL);
		if (id == NULL || (j = eng_find(r, id)) == NULL) {
			jv_free(row);
			continue;
		}
		eng_wait_del(g, j);
		if (st && strcmp(st, "processing") == 0) {
			eng_note(r, MI_NOTE_VERBOSE, "job %s: took a %s slot",
			    j->id, mi_provider_id(j->p));
			eng_schedule(r, j, P_CREATE, mi_now_ms());
			jv_free(row);
		} else {
			j->phase = P_CREATE;	/* not waiting any more */
			eng_drop(r, j);
			eng_emit(r, eng_with_error(row, 0));
		}
	}
	jv_free(rows);
	if (r->o.no_wait) {
		/* Leave the rest queued for a worker. */
		while (g->head) {
			struct rjob *j = g->head;
			jv row = eng_patch(r, j, eng_obj1("release",
			    jv_true()));

			if (jv_get_kind(row) != JV_KIND_OBJECT) {
				jv_free(row);
				if (r->fatal)
					return;
				continue;
			}
			eng_note(r, MI_NOTE_VERBOSE, "job %s: queued", j->id);
			eng_drop(r, j);
			eng_emit(r, row);
		}
	}
}
