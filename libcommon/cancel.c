/*
 * cancel.c - local and remote cancel of jobs (cancel.h).  The local
 * cancel is one statement; the job's worker notices it at its next write
 * (the lease is gone) or at once through the notification.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cancel.h"
#include "json.h"
#include "names.h"
#include "webhook.h"
#include "banned.h"

static const char where_sql[] =
    " j.status IN ('pending', 'processing')"
    " AND ($1::uuid[] IS NULL OR j.id = ANY($1::uuid[]))"
    " AND ($2::uuid IS NULL OR j.run_step_id = $2::uuid)"
    " AND ($3::uuid IS NULL OR j.run_id = $3::uuid)"
    " AND ($4::text IS NULL OR j.tenant_id = $4::text)";

/* f[key] as a text parameter (borrowed into *out); -1 when malformed. */
static int
param(jv f, const char *key, int uuid, const char **out, struct mi_err *err)
{
	const char *s = NULL;
	int k = mi_json_str(f, key, &s, 0, err);

	*out = NULL;
	if (k == -1)
		return -1;
	if (k == 0)
		return 0;
	if (uuid && !mi_name_uuid_ok(s))
		return mi_err_set(err, EX_DATAERR, "%s '%.64s' is not a UUID",
		    key, s);
	*out = s;
	return 1;
}

jv
mi_cancel_mark(struct mi_db *db, jv f, int dry_run, const char *reason,
    struct mi_err *err)
{
	struct mi_buf sql = MI_BUF_INIT, ids = MI_BUF_INIT;
	const char *params[5] = { NULL, NULL, NULL, NULL, reason };
	jv a = jv_object_get(jv_copy(f), jv_string("ids")), rows = jv_invalid();
	int i, n, any = 0;

	if (jv_get_kind(a) == JV_KIND_ARRAY) {
		n = jv_array_length(jv_copy(a));
		mi_buf_adds(&ids, "{");
		for (i = 0; i < n; i++) {
			jv id = jv_array_get(jv_copy(a), i);

			if (jv_get_kind(id) != JV_KIND_STRING ||
			    !mi_name_uuid_ok(jv_string_value(id))) {
				jv_free(id);
				mi_err_set(err, EX_DATAERR, "a job id is not "
				    "a UUID");
				goto out;
			}
			mi_buf_addf(&ids, "%s%s", i ? "," : "",
			    jv_string_value(id));
			jv_free(id);
		}
		mi_buf_adds(&ids, "}");
		params[0] = ids.buf;
		any = n > 0;
	}
	if (param(f, "run_step_id", 1, &params[1], err) == -1 ||
	    param(f, "run_id", 1, &params[2], err) == -1 ||
	    param(f, "tenant_id", 0, &params[3], err) == -1)
		goto out;
	if (!any && !params[1] && !params[2] && !params[3]) {
		mi_err_set(err, EX_DATAERR, "nothing names the jobs to cancel "
		    "(ids, run_step_id, run_id or tenant_id)");
		goto out;
	}
	if (dry_run)
		mi_buf_addf(&sql, "SELECT to_jsonb(j) FROM app.generation_jobs j"
		    " WHERE%s ORDER BY j.created_at", where_sql);
	else
		mi_buf_addf(&sql, "WITH c AS (UPDATE app.generation_jobs j SET"
		    " status = 'failed', error_code = 'CANCELLED',"
		    " error_message = $5, completed_at = now(),"
		    " lease_owner = NULL, lease_expires_at = NULL,"
		    " updated_at = now() WHERE%s RETURNING j.*),"
		    " n AS (SELECT pg_notify('%s', c.id::text) FROM c)"
		    " SELECT to_jsonb(c) FROM c, (SELECT count(*) FROM n) x"
		    " ORDER BY c.created_at", where_sql, MI_WEBHOOK_CHANNEL);
	rows = mi_db_json(db, sql.buf, dry_run ? 4 : 5, params, err);
out:
	mi_buf_release(&sql);
	mi_buf_release(&ids);
	jv_free(a);
	jv_free(f);
	return rows;
}

jv
mi_cancel_input(jv row)
{
	static const char *const keys[] = { "id", "media_type",
	    "provider_job_id", "provider_state", "attempts", NULL };
	jv job = jv_object(), in = jv_object(), req;
	int i;

	for (i = 0; keys[i]; i++) {
		jv v = jv_object_get(jv_copy(row), jv_string(keys[i]));

		job = jv_object_set(job, jv_string(keys[i]),
		    jv_is_valid(v) ? v : jv_null());
	}
	req = jv_object_get(jv_copy(row), jv_string("request"));
	in = jv_object_set(in, jv_string("request"),
	    jv_is_valid(req) ? req : jv_object());
	return jv_object_set(in, jv_string("job"), job);
}

int
mi_cancel_start(struct mi_loop *l, struct mi_provider *p, jv input,
    mi_outcome_cb cb, void *arg, struct mi_err *err)
{
	jv req = mi_provider_call(p, "cancel", jv_copy(input), err);

	if (!jv_is_valid(req)) {
		jv_free(input);
		return -1;
	}
	if (jv_get_kind(req) != JV_KIND_OBJECT) {
		jv_free(req);
		jv_free(input);
		return 0;
	}
	if (mi_transport_send(l, p, req, input, "cancelled", 0, NULL, NULL,
	    cb, arg, err) == -1)
		return -1;
	return 1;
}

jv
mi_cancel_record(struct mi_db *db, const char *id, jv outcome,
    struct mi_err *err)
{
	const char *st = NULL, *msg = NULL, *params[2];
	jv note = jv_object(), e, cost, row;
	char *text;

	mi_json_str(outcome, "status", &st, 0, NULL);
	note = jv_object_set(note, jv_string("at"),
	    jv_number((double)mi_wall_ms()));
	note = jv_object_set(note, jv_string("accepted"),
	    jv_bool(st && strcmp(st, "completed") == 0));
	e = jv_object_get(jv_copy(outcome), jv_string("error"));
	if (jv_get_kind(e) == JV_KIND_OBJECT &&
	    mi_json_str(e, "message", &msg, 0, NULL) == 1)
		note = jv_object_set(note, jv_string("message"),
		    jv_string(msg));
	jv_free(e);
	cost = jv_object_get(jv_copy(outcome), jv_string("cost_usd"));
	if (jv_get_kind(cost) == JV_KIND_NUMBER)
		note = jv_object_set(note, jv_string("cost_usd"), cost);
	else
		jv_free(cost);
	jv_free(outcome);
	if ((text = mi_json_dump(note)) == NULL) {
		jv_free(note);
		mi_err_set(err, EX_OSERR, "out of memory");
		return jv_invalid();
	}
	params[0] = id;
	params[1] = text;
	row = mi_db_json1(db, "UPDATE app.generation_jobs j SET"
	    " provider_state = j.provider_state ||"
	    "  jsonb_build_object('cancel', $2::jsonb),"
	    " cost_usd = coalesce(($2::jsonb->>'cost_usd')::numeric,"
	    "  j.cost_usd),"
	    " cost_source = CASE WHEN $2::jsonb ? 'cost_usd' THEN 'provider'"
	    "  ELSE j.cost_source END, updated_at = now()"
	    " WHERE j.id = $1::uuid RETURNING to_jsonb(j.id)", 2, params, err);
	free(text);
	if (!jv_is_valid(row)) {
		jv_free(note);
		return row;
	}
	jv_free(row);
	return note;
}
