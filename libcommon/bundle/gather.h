/*
 * bundle/gather.h - the inside of a struct mi_bundle (build.h), shared
 * by the files of bundle/ that implement it and by nothing else.
 *
 * files[] holds the entries gathered so far, each owning its strings
 * (path, src, mem, uri, artifact_type; type and kind are static), freed
 * by bnd_files_free at the end of a build or campaign.  artifacts holds
 * the good artifact records taken.  failed is set by every error record
 * and never cleared.  bnd_die and bnd_die_err end in io.fatal and do
 * not return.
 *
 * The files, each calling only those below it:
 *   build.c     a game bundle: the template, the GameConfig, the zip
 *   campaign.c  a CampaignManifest from a campaign file and artifacts
 *   verify.c    verdicts on manifests and bundles
 *   gather.c    the run itself, artifacts taken from records or a run,
 *               the stored files, and what leaves: records, notes,
 *               fatal errors
 */
#ifndef MI_BUNDLE_GATHER_H
#define MI_BUNDLE_GATHER_H

#include <stddef.h>

#include <jv.h>

#include "bundle/build.h"
#include "bundle/zipread.h"
#include "db.h"
#include "err.h"
#include "names.h"
#include "store.h"

#define MAX_FILES 4096
#define MAX_JSON (8 << 20)
#define FIXED_TIME "1980-01-02T00:00:00Z"

/* One entry of a bundle being built. */
struct file {
	char *path; /* name in the zip */
	const char *type; /* Content-Type */
	long long size;
	char sha[65];
	char *src; /* a file to copy, or NULL */
	char *uri; /* an artifact's uri */
	char *mem; /* or these bytes */
	const char *kind; /* assets/ folder, NULL for template files */
	char *artifact_type;
};

struct mi_bundle {
	struct mi_bundle_io io;
	struct mi_db *db;
	struct mi_store *st;
	char tenant[256];
	char run[37];
	char created_at[48]; /* the latest artifact's, or fixed */
	struct file files[MAX_FILES];
	size_t nfiles;
	jv artifacts; /* the good artifact records */
	jv conf; /* the campaign file, between begin and end */
	int with_bundles; /* --run's bundles are artifacts too */
	int failed;
};

void bnd_out(struct mi_bundle *c, jv rec);
void bnd_note(struct mi_bundle *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void bnd_die(struct mi_bundle *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
void bnd_die_err(struct mi_bundle *c, const struct mi_err *err)
    __attribute__((noreturn));

void bnd_open_db(struct mi_bundle *c);
void bnd_open_store(struct mi_bundle *c);
char *bnd_strdup(struct mi_bundle *c, const char *s);
/* SHA-256 and size of a whole file. */
int bnd_sha256_fd(int fd, char hex[65], long long *size, struct mi_err *err);
/* The asset path of a uri (a full URL or "/api/assets/..."). */
int bnd_uri_asset(const char *uri, struct mi_asset_path *p,
    struct mi_err *err);
/* Opens a stored file by its asset path (no symbolic link followed). */
int bnd_open_stored(struct mi_bundle *c, const struct mi_asset_path *p);
/* Whether the database knows an artifact of tenant with this content. */
int bnd_artifact_known(struct mi_bundle *c, const char *tenant,
    const char *hash);
void bnd_add_file(struct mi_bundle *c, struct file *f);
struct file *bnd_find_file(struct mi_bundle *c, const char *path);
void bnd_files_free(struct mi_bundle *c);
/* Reads a whole (small) file; NULL with err. */
char *bnd_slurp(const char *path, size_t *len, struct mi_err *err);
/* An unnamed temporary file. */
int bnd_temp_file(struct mi_bundle *c);
/* Stores fd's content as type for the bundle's tenant and run. */
void bnd_store_and_record(struct mi_bundle *c, int fd, const char *type,
    const char *ext, jv extra);

/* verify.c, for the others */
/* Adds {code, message} to *problems. */
void bnd_problem(jv *problems, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An entry (at most MAX_JSON bytes) parsed as JSON. */
jv bnd_entry_json(int fd, const struct mi_zip_entry *e, struct mi_err *err);
/* GameConfig rules on cfg (borrowed), each broken one a problem. */
void bnd_check_game_config(jv cfg, const char *where, jv *problems);
/* Writes the verdict on one manifest or bundle. */
void bnd_verdict(struct mi_bundle *c, jv out, jv problems, int checked);

#endif
