/*
 * engine/claim.c - claims of concurrency slots for a group's waiting
 * jobs (sched.c keeps the groups and their lists).
 *
 * A claim (jobs.c) takes the free slots of a group in one transaction,
 * strictly first come, first served, within the limit set by the media
 * of the group's oldest job; claimed jobs leave the list for the heap,
 * and a claim cut short by an outage is wanted again rather than failing
 * the runner.  With no_wait, the jobs left waiting are released, queued
 * for another worker.
 */
#include <string.h>

#include "jobs.h"
#include "json.h"
#include "provider.h"
#include "engine/engine.h"
#include "banned.h"

/* Claims. */

/* Returns how many jobs the claim took. */
static int
claim(struct mi_runner *r, struct group *g)
{
	struct mi_err err = MI_ERR_INIT;
	jv rows;
	int i, n, room;

	g->want = 0;
	g->capped = 0;
	if (g->head == NULL)
		return 0;
	/*
	 * No more than the runner can start soon: a claimed job's deadline
	 * runs from its claim, so ten thousand claimed at once and created
	 * 64 at a time would time out before their creates went.  The rest
	 * are claimed when the creates under way drop to the parallel limit
	 * (eng_claim_room).  With no_wait every free slot is taken now: the
	 * jobs left are handed on below.
	 */
	room = r->o.no_wait ? 0 : 2 * r->parallel - eng_creating(r);
	if (!r->o.no_wait && room < 1) {
		g->capped = 1;
		return 0;
	}
	rows = mi_jobs_claim(r->db, g->tenant, mi_provider_id(g->p),
	    mi_provider_concurrency(g->p, g->media), room, &err);
	if (!jv_is_valid(rows)) {
		jv_free(rows);
		/* A claim cut short by an outage is made again. */
		if (mi_db_tx_lost(r->db))
			g->want = 1;
		else
			eng_fatal(r, &err);
		return 0;
	}
	n = jv_array_length(jv_copy(rows));
	if (room > 0 && n >= room)
		g->capped = 1;
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
			/* not waiting any more */
			eng_set_phase(j, P_CREATE);
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
					return n;
				continue;
			}
			eng_note(r, MI_NOTE_VERBOSE, "job %s: queued", j->id);
			eng_drop(r, j);
			eng_emit(r, row);
		}
	}
	return n;
}

/*
 * The claims that are due, each group taking what room the runner has
 * left, in a turn that starts after the group that last took some: a
 * tenant's thousand images then do not hold its sound effects back until
 * the last image is created, and each group's own order stays first
 * come, first served.
 */
void
eng_claim_due(struct mi_runner *r)
{
	struct group *g, *start, *last = NULL;

	if ((start = r->claim_next) == NULL && (start = r->groups) == NULL)
		return;
	g = start;
	do {
		if (g->want && !r->fatal && claim(r, g) > 0)
			last = g;
		g = g->next ? g->next : r->groups;
	} while (g != start);
	if (last != NULL)
		r->claim_next = last->next ? last->next : r->groups;
}

/* The jobs in hand whose create is due or under way: counted as their
 * phases change (eng_set_phase), not by a walk of every job in hand,
 * which cost mi-submit 7 % of its CPU with thousands of jobs waiting. */
int
eng_creating(const struct mi_runner *r)
{
	return r->ncreating;
}

/*
 * A group whose last claim was cut short by the runner's room claims
 * again once the creates under way are down to the parallel limit.  They
 * are counted again only when the jobs in hand changed (a create that
 * ends drops its job or hands it on), not at every turn of the loop; the
 * backstop claim covers any other case.
 */
void
eng_claim_room(struct mi_runner *r)
{
	struct group *g;
	int creating = -1;

	if (r->n == r->room_n)
		return;
	r->room_n = r->n;
	for (g = r->groups; g; g = g->next) {
		if (!g->capped || g->head == NULL || g->want)
			continue;
		if (creating == -1)
			creating = eng_creating(r);
		if (creating <= r->parallel)
			g->want = 1;
	}
}
