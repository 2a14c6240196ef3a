/*
 * artifact.c - the app.artifacts row of a stored file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "artifact.h"
#include "json.h"
#include "names.h"
#include "sign.h"
#include "banned.h"

/* One row per stored path; a repeat save finds the row already there. */
static const char insert_sql[] =
    "INSERT INTO app.artifacts AS a (tenant_id, run_id, skill_id, type, uri,"
    " content_hash, size_bytes, filename, metadata, run_step_id, job_id,"
    " cache_hit, id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::uuid,"
    " $11::uuid, coalesce($12::boolean, false), $13::uuid)"
    " ON CONFLICT (tenant_id, run_id, type, content_hash)"
    " DO UPDATE SET updated_at = now(),"
    "  metadata = a.metadata || jsonb_strip_nulls(EXCLUDED.metadata)"
    " RETURNING to_jsonb(a)";

static const char *
opt_str(jv o, const char *key, struct mi_err *err)
{
	const char *s = NULL;

	if (mi_json_str(o, key, &s, 0, err) <= 0)
		return NULL;
	return s;
}

static const char *
cache_hit(jv o)
{
	int b = 0;

	if (mi_json_bool(o, "cache_hit", &b, 0, NULL) != 1)
		return NULL;
	return b ? "true" : "false";
}

/* Adds signed_url for /api/assets/rel when a signing key is set. */
static jv
sign_row(jv row, const char *rel)
{
	char signed_url[2200], path[1200], full[2400];
	const char *key, *pub;
	long long t;
	size_t n;

	if ((key = mi_sign_key()) == NULL)
		return row;
	t = mi_sign_ttl(NULL);
	snprintf(path, sizeof(path), "/api/assets/%s", rel);
	if (t <= 0 || mi_sign_url(key, path, (long long)time(NULL) + t,
	    signed_url, sizeof(signed_url), NULL) != 0)
		return row;
	pub = getenv("MI_PUBLIC_URL");
	n = pub ? strlen(pub) : 0;
	while (n > 0 && pub[n - 1] == '/')
		n--;
	snprintf(full, sizeof(full), "%.*s%s", (int)n, pub ? pub : "",
	    signed_url);
	return jv_object_set(row, jv_string("signed_url"), jv_string(full));
}

jv
mi_artifact_record(struct mi_db *db, const struct mi_store_req *req,
    const struct mi_store_result *res, jv extra, struct mi_err *err)
{
	const char *params[13];
	char uri[2048], size[32], id[37];
	jv meta, row;
	char *metatext;

	if (jv_get_kind(extra) != JV_KIND_OBJECT) {
		jv_free(extra);
		extra = jv_object();
	}
	if (mi_store_uri(res->rel, uri, sizeof(uri)) == -1) {
		jv_free(extra);
		mi_err_set(err, EX_DATAERR, "URI too long");
		return jv_invalid();
	}
	meta = jv_object_get(jv_copy(extra), jv_string("metadata"));
	if (jv_get_kind(meta) != JV_KIND_OBJECT) {
		jv_free(meta);
		meta = jv_object();
	}
	meta = jv_object_set(meta, jv_string("mime_type"),
	    jv_string(res->mime->type));
	metatext = mi_json_dump(meta);
	jv_free(meta);
	snprintf(size, sizeof(size), "%lld", res->size);
	params[0] = req->tenant;
	params[1] = req->run;
	params[2] = opt_str(extra, "skill_id", NULL);
	params[3] = req->type;
	params[4] = uri;
	params[5] = res->hash;
	params[6] = size;
	params[7] = opt_str(extra, "filename", NULL);
	params[8] = metatext;
	params[9] = opt_str(extra, "run_step_id", NULL);
	params[10] = opt_str(extra, "job_id", NULL);
	params[11] = cache_hit(extra);
	/* The id is made here, not by the server: a transaction run again
	 * after a lost connection (db.h) makes the same row. */
	mi_name_uuid_new(id);
	params[12] = id;
	row = mi_db_json1(db, insert_sql, 13, params, err);
	free(metatext);
	jv_free(extra);
	if (!jv_is_valid(row))
		return row;
	row = jv_object_set(row, jv_string("deduplicated"),
	    res->deduplicated ? jv_true() : jv_false());
	return sign_row(row, res->rel);
}

jv
mi_artifact_again(jv row)
{
	const char *uri = NULL, *at;
	char rel[1100], fresh[2048];
	size_t n;

	if (jv_get_kind(row) != JV_KIND_OBJECT)
		return row;
	row = jv_object_set(row, jv_string("deduplicated"), jv_true());
	if (mi_json_str(row, "uri", &uri, 0, NULL) != 1 ||
	    (at = strstr(uri, "/api/assets/")) == NULL)
		return row;
	at += strlen("/api/assets/");
	if ((n = strcspn(at, "?#")) >= sizeof(rel))
		return row;
	memcpy(rel, at, n);
	rel[n] = '\0';
	/* The uri of today's MI_PUBLIC_URL, not the one of the first save. */
	if (mi_store_uri(rel, fresh, sizeof(fresh)) == 0)
		row = jv_object_set(row, jv_string("uri"), jv_string(fresh));
	return sign_row(row, rel);
}
