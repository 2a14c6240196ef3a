/*
 * names.h - the strict grammar of the names that become path components.
 * Every name is checked here before it touches a path.
 *   tenant, type: [A-Za-z0-9_-]{1,255}
 *   run:          a UUID (8-4-4-4-12 hex, either case; stored, linked and
 *                 parsed from asset paths in lower case)
 *   hash:         64 lowercase hex digits
 *   ext:          one of the extensions of the MIME table (mime.h)
 */
#ifndef MI_NAMES_H
#define MI_NAMES_H

#include "err.h"

int mi_name_tenant_ok(const char *s);
int mi_name_type_ok(const char *s);
int mi_name_uuid_ok(const char *s);
int mi_name_hash_ok(const char *s);
/* A new random (version 4) UUID, in lower case. */
void mi_name_uuid_new(char out[37]);

/*
 * Parses "/api/assets/{tenant}/{run}/{type}/{sha256}.{ext}" (no query) into
 * its parts, copied into the caller's fields.  Returns 0 or -1 (err 65).
 */
struct mi_asset_path {
	char tenant[256];
	char run[37];
	char type[256];
	char hash[65];
	char ext[8];
};
int mi_asset_path_parse(const char *path, struct mi_asset_path *p,
    struct mi_err *err);

#endif
