/*
 * mi-bundle - game bundles and campaign manifests (seed 003).  Builds a
 * reproducible zip of a template directory plus artifacts (records on
 * stdin, or all of --run's) with a BundleManifest as bundle.json; with
 * --manifest builds a CampaignManifest; with --verify checks manifests
 * and bundles.  What it builds is stored and its artifact record written
 * on stdout.  Exits 0, 1 (some error records), 64, 65, 69 or 78.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bundle/build.h"
#include "err.h"
#include "json.h"
#include "names.h"
#include "banned.h"

static const char usage[] =
    "usage: mi-bundle [-v] --template DIR [--config FILE] [--tenant T]\n"
    "                 [--run RUN] [--template-id ID] [< artifacts.ndjson]\n"
    "       mi-bundle [-v] --manifest CAMPAIGN [--run RUN] "
    "[< artifacts.ndjson]\n"
    "       mi-bundle [-v] --verify [--tenant T] [FILE...] "
    "[< artifacts.ndjson]\n"
    "  -c, --config FILE     the GameConfig, stored as game_config.json\n"
    "  -m, --manifest FILE   build the CampaignManifest of this campaign\n"
    "  -r, --run RUN         the artifacts are all of this run's\n"
    "  -T, --template DIR    the game template (index.html and its files)\n"
    "  -i, --template-id ID  template_id (default: the config's)\n"
    "  -t, --tenant T        the tenant (default: the artifacts')\n"
    "  -V, --verify          check manifests and bundles\n"
    "  -v, --verbose         say more on stderr\n"
    "      --help            this text\n"
    "      --version         print the version";

static void
out(void *arg, jv rec)
{
	(void)arg;
	mi_json_write(stdout, rec);
}

static void
note(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level == MI_BUNDLE_WARN)
		mi_warn("%s", msg);
	else
		mi_verbose("%s", msg);
}

static void __attribute__((noreturn))
fatal(void *arg, int code, const char *msg)
{
	(void)arg;
	mi_die(code, "%s", msg);
}

/* Artifact records from stdin, each to take; bad ones become errors. */
static void
read_records(struct mi_bundle *b, void (*take)(struct mi_bundle *, jv))
{
	struct mi_err err = MI_ERR_INIT;
	struct mi_json_in *in;
	jv rec;
	int r;

	if ((in = mi_json_in_new(stdin)) == NULL)
		mi_die(EX_OSERR, "out of memory");
	while ((r = mi_json_next(in, &rec, &err)) != 0) {
		if (r == -2)
			mi_die_err(&err);
		if (r == -1) {
			mi_bundle_error(b, jv_object(), "INVALID_JSON", err.msg);
			continue;
		}
		if (mi_json_has_error(rec)) {
			mi_bundle_pass(b, rec);
			continue;
		}
		if (jv_get_kind(rec) != JV_KIND_OBJECT) {
			mi_bundle_error(b, rec, "VALIDATION_ERROR",
			    "record is not "
			    "an object");
			continue;
		}
		take(b, rec);
	}
	mi_json_in_free(in);
}

/* The artifacts of a bundle or a campaign: all of run's, or stdin's. */
static void
read_artifacts(struct mi_bundle *b, const char *run)
{
	if (run != NULL)
		mi_bundle_add_run(b, run);
	else
		read_records(b, mi_bundle_add);
}

static int
verify(struct mi_bundle *b, char **files, int nfiles)
{
	int i, fd;

	if (nfiles == 0) {
		read_records(b, mi_bundle_verify_record);
		return mi_bundle_failed(b);
	}
	for (i = 0; i < nfiles; i++) {
		if ((fd = open(files[i], O_RDONLY | O_CLOEXEC)) == -1)
			mi_die(EX_NOINPUT, "unable to open '%s': %s", files[i],
			    strerror(errno));
		mi_bundle_verify_fd(b, fd, files[i]);
		close(fd);
	}
	return mi_bundle_failed(b);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = { { "config", required_argument,
						  NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "manifest", required_argument, NULL, 'm' },
		{ "run", required_argument, NULL, 'r' },
		{ "template", required_argument, NULL, 'T' },
		{ "template-id", required_argument, NULL, 'i' },
		{ "tenant", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "verify", no_argument, NULL, 'V' },
		{ "version", no_argument, NULL, 'W' }, { NULL, 0, NULL, 0 } };
	static const struct mi_bundle_io io = { out, note, fatal, NULL };
	struct mi_bundle *b;
	const char *dir = NULL, *config = NULL, *manifest = NULL, *run = NULL;
	const char *tid = NULL, *tenant = NULL;
	int ch, check = 0, r;

	mi_setprogname(argv[0]);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "c:hi:m:r:T:t:vV", opts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 'h': mi_usage(usage, 0);
		case 'i': tid = optarg; break;
		case 'm': manifest = optarg; break;
		case 'r': run = optarg; break;
		case 'T': dir = optarg; break;
		case 't': tenant = optarg; break;
		case 'v': mi_verbosity++; break;
		case 'V': check = 1; break;
		case 'W': mi_version();
		default: mi_bad_option(usage, argv[optind - 1]);
		}
	}
	if ((dir != NULL) + (manifest != NULL) + check != 1) {
		fprintf(stderr,
		    "mi-bundle: give one of --template, --manifest "
		    "and --verify\n");
		mi_usage(usage, EX_USAGE);
	}
	if ((!check && optind != argc) || (check && run != NULL) ||
	    (dir == NULL && (config != NULL || tid != NULL)))
		mi_usage(usage, EX_USAGE);
	if (tenant != NULL && !mi_name_tenant_ok(tenant))
		mi_die(EX_USAGE, "bad --tenant '%s'", tenant);
	if ((b = mi_bundle_new(&io, tenant)) == NULL)
		mi_die(EX_OSERR, "out of memory");
	if (check)
		r = verify(b, argv + optind, argc - optind);
	else if (manifest != NULL) {
		mi_bundle_campaign_begin(b, manifest);
		read_artifacts(b, run);
		r = mi_bundle_campaign_end(b, manifest);
	} else {
		mi_bundle_build_begin(b);
		read_artifacts(b, run);
		r = mi_bundle_build_end(b, dir, config, tid);
	}
	mi_bundle_free(b);
	mi_close_stdout();
	return r;
}
