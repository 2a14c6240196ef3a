/*
 * artifact.h - recording a stored file as an app.artifacts row and as the
 * artifact record of SPEC.md (the row as JSON plus "deduplicated", and
 * "signed_url" when $MI_URL_SIGNING_KEY is set).
 */
#ifndef MI_ARTIFACT_H
#define MI_ARTIFACT_H

#include <jv.h>

#include "db.h"
#include "store.h"

/*
 * Inserts (or finds: one row per tenant, run, type and content) the row for
 * res.  extra (consumed) may carry skill_id, filename and metadata (an
 * object merged with mime_type).  Returns the artifact record or
 * jv_invalid() with err.
 */
jv mi_artifact_record(struct mi_db *db, const struct mi_store_req *req,
    const struct mi_store_result *res, jv extra, struct mi_err *err);

/*
 * An artifact row (consumed) found again rather than saved: the record
 * with "deduplicated" true, and "signed_url" when $MI_URL_SIGNING_KEY is
 * set (signed now, with the current $MI_PUBLIC_URL).
 */
jv mi_artifact_again(jv row);

#endif
