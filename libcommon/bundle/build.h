/*
 * bundle/build.h - what mi-bundle does (seed 003): builds a game bundle
 * (a reproducible zip of a template directory and artifacts, with its
 * BundleManifest as bundle.json), builds a campaign's CampaignManifest,
 * and verifies manifests and bundles.
 *
 * A struct mi_bundle is one run of one of the three.  Artifacts come in
 * one record at a time (mi_bundle_add, consumed: the caller reads the
 * stream) or all of a run's from app.artifacts (mi_bundle_add_run); each
 * is checked against the store (hash, tenant, bytes) and a bad one gives
 * an error record.  Nothing is stored before the end call, and nothing
 * at all after an error record: the end call stores the zip or the
 * manifest (store.h), writes its artifact row (artifact.h) and sends its
 * artifact record out.  The database and the store are opened from the
 * environment when first needed.
 *
 * Everything leaves through io: records (each consumed by out, in the
 * order of the stream), warnings and -v notes (note; a warning goes with
 * each error record), and errors the run cannot go on from (fatal, with
 * a sysexits code and a message; it must not return).  So the module
 * never prints and never exits; the command does both.  The end calls
 * and mi_bundle_failed return 1 when some error record went out, else 0.
 */
#ifndef MI_BUNDLE_BUILD_H
#define MI_BUNDLE_BUILD_H

#include <jv.h>

enum { MI_BUNDLE_WARN, MI_BUNDLE_VERBOSE };

struct mi_bundle_io {
	void (*out)(void *arg, jv rec);
	void (*note)(void *arg, int level, const char *msg);
	void (*fatal)(void *arg, int code, const char *msg)
	    __attribute__((noreturn));
	void *arg;
};

struct mi_bundle;

/* A run for tenant (NULL: the first artifact's), io copied; NULL when
 * out of memory. */
struct mi_bundle *mi_bundle_new(const struct mi_bundle_io *io,
    const char *tenant);
/* Closes the database and the store. */
void mi_bundle_free(struct mi_bundle *b);

/* An error record of rec (consumed), with its warning. */
void mi_bundle_error(struct mi_bundle *b, jv rec, const char *code,
    const char *msg);
/* An error record from upstream (consumed), passed on as it is. */
void mi_bundle_pass(struct mi_bundle *b, jv rec);
int mi_bundle_failed(const struct mi_bundle *b);

/* A game bundle: begin, add its artifacts, end with the template dir,
 * the GameConfig (NULL: the template's own) and template_id (NULL: the
 * config's). */
void mi_bundle_build_begin(struct mi_bundle *b);
int mi_bundle_build_end(struct mi_bundle *b, const char *dir,
    const char *config, const char *template_id);

/* A CampaignManifest: begin reads and checks the campaign file (and
 * takes its tenant_id), then its artifacts, bundles included. */
void mi_bundle_campaign_begin(struct mi_bundle *b, const char *path);
int mi_bundle_campaign_end(struct mi_bundle *b, const char *path);

/* One artifact record (consumed), or all of run's (a UUID). */
void mi_bundle_add(struct mi_bundle *b, jv rec);
void mi_bundle_add_run(struct mi_bundle *b, const char *run);

/* --verify: an artifact record's stored file (consumed), or what fd
 * holds (a zip or a manifest's JSON) named source; one verdict record
 * each. */
void mi_bundle_verify_record(struct mi_bundle *b, jv rec);
void mi_bundle_verify_fd(struct mi_bundle *b, int fd, const char *source);

#endif
