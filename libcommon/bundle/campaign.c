/*
 * bundle/campaign.c - a CampaignManifest: the campaign file's settings
 * (or their defaults), the intro, win and lose videos and the game
 * bundle found among the artifacts by type, the others as additional
 * assets, the bundle's entry point and id, and the checksum; stored as a
 * "json" artifact unless something is missing or wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle/gather.h"
#include "bundle/manifest.h"
#include "bundle/zipread.h"
#include "json.h"
#include "banned.h"

/* The ManifestAssetRef of a gathered artifact. */
static jv
asset_ref(const struct file *f, int required)
{
	const char *t = strcmp(f->artifact_type, "bundle") == 0 ? "bundle"
	    : strcmp(f->kind, "images") == 0			? "image"
	    : strcmp(f->kind, "models") == 0			? "model"
	    : strcmp(f->kind, "configs") == 0			? "data"
								: f->kind;

	/* The asset's path, not the host it was first served from: the
	 * manifest is content-addressed, and a new MI_PUBLIC_URL must not
	 * make it a new object. */
	const char *path = strstr(f->uri, "/api/assets/");
	jv uri = path != NULL
	    ? jv_string_sized(path, (int)strcspn(path, "?#"))
	    : jv_string(f->uri);

	return JV_OBJECT(jv_string("uri"), uri, jv_string("type"),
	    jv_string(t), jv_string("size_bytes"), jv_number((double)f->size),
	    jv_string("checksum"), jv_string_fmt("sha256:%s", f->sha),
	    jv_string("required"), jv_bool(required));
}

/* conf's section key when it is an object, else def; both consumed. */
static jv
section(jv conf, const char *key, jv def)
{
	jv v = jv_object_get(conf, jv_string(key));

	if (jv_get_kind(v) == JV_KIND_OBJECT) {
		jv_free(def);
		return v;
	}
	jv_free(v);
	return def;
}

/* The game bundle's bundle.json and GameConfig, checked. */
static int
bundle_facts(struct mi_bundle *c, const struct file *f, jv *entry_point,
    jv *bundle_id)
{
	struct mi_err err = MI_ERR_INIT;
	const struct mi_zip_entry *e;
	jv problems = jv_array(), m, cfg;
	struct mi_zip *z;
	int fd, bad = 0;

	if ((fd = open(f->src, O_RDONLY | O_CLOEXEC)) == -1 ||
	    (z = mi_zip_open(mi_zip_read_fd, &fd, (uint64_t)f->size, &err)) ==
		NULL) {
		if (fd != -1)
			close(fd);
		mi_bundle_error(c, jv_object(), "VALIDATION_ERROR",
		    "game bundle is "
		    "not a servable zip");
		return -1;
	}
	if ((e = mi_zip_find(z, "bundle.json", 11)) != NULL) {
		m = bnd_entry_json(fd, e, &err);
		*entry_point =
		    jv_object_get(jv_copy(m), jv_string("entry_point"));
		*bundle_id = jv_object_get(m, jv_string("bundle_id"));
	}
	if ((e = mi_zip_find(z, "game_config.json", 16)) != NULL) {
		cfg = bnd_entry_json(fd, e, &err);
		bnd_check_game_config(cfg, "game bundle's game_config.json",
		    &problems);
		jv_free(cfg);
	}
	jv_array_foreach(problems, i, pr)
	{
		jv msg = jv_object_get(pr, jv_string("message"));

		mi_bundle_error(c, jv_object(), "VALIDATION_ERROR",
		    jv_string_value(msg));
		jv_free(msg);
		bad = i + 1;
	}
	jv_free(problems);
	mi_zip_free(z);
	close(fd);
	return bad ? -1 : 0;
}

/* Whether an artifact type is key, or ends in "_" key (outcome_win_video). */
static int
type_is(const char *type, const char *key)
{
	size_t n = strlen(type), k = strlen(key);

	return strcmp(type, key) == 0 || (n > k + 1 &&
	    type[n - k - 1] == '_' && strcmp(type + n - k, key) == 0);
}

void
mi_bundle_campaign_begin(struct mi_bundle *c, const char *path)
{
	struct mi_err err = MI_ERR_INIT;
	char *text;
	size_t len;
	jv conf, v;

	if ((text = bnd_slurp(path, &len, &err)) == NULL)
		bnd_die_err(c, &err);
	conf = mi_json_parse(text, &err);
	free(text);
	if (jv_get_kind(conf) != JV_KIND_OBJECT)
		bnd_die(c, EX_DATAERR, "campaign '%s': %s", path,
		    err.msg[0] ? err.msg : "not an object");
	v = jv_object_get(jv_copy(conf), jv_string("tenant_id"));
	if (jv_get_kind(v) == JV_KIND_STRING && c->tenant[0] == '\0')
		snprintf(c->tenant, sizeof(c->tenant), "%s",
		    jv_string_value(v));
	jv_free(v);
	v = jv_object_get(jv_copy(conf), jv_string("campaign_id"));
	if (jv_get_kind(v) != JV_KIND_STRING)
		bnd_die(c, EX_DATAERR, "campaign '%s': missing key 'campaign_id'",
		    path);
	jv_free(v);
	c->conf = conf;
	c->artifacts = jv_array();
	c->with_bundles = 1;
}

int
mi_bundle_campaign_end(struct mi_bundle *c, const char *path)
{
	static const char *const keys[] = { "intro_video", "win_video",
		"lose_video", "bundle", NULL };
	struct mi_err err = MI_ERR_INIT;
	const struct file *found[4] = { NULL, NULL, NULL, NULL };
	jv conf = c->conf, m, assets, additional = jv_array(), ep = jv_null();
	jv bid = jv_null(), meta, v;
	char *text, sum[72];
	size_t i, k, len;
	int fd;

	c->conf = jv_null();	/* conf is freed on every way out */
	for (i = 0; i < c->nfiles; i++) {
		for (k = 0; keys[k]; k++)
			if (type_is(c->files[i].artifact_type, keys[k]) &&
			    found[k] == NULL) {
				found[k] = &c->files[i];
				break;
			}
		if (keys[k] == NULL)
			additional = jv_array_append(additional,
			    asset_ref(&c->files[i], 0));
	}
	for (k = 0; keys[k]; k++)
		if (found[k] == NULL) {
			char msg[200];

			snprintf(msg, sizeof(msg),
			    "campaign '%s': no artifact "
			    "of type %s",
			    path, keys[k]);
			mi_bundle_error(c, jv_object(), "MISSING_ASSET", msg);
		}
	if (found[3] != NULL)
		bundle_facts(c, found[3], &ep, &bid);
	if (c->failed) {
		jv_free(conf);
		jv_free(additional);
		jv_free(ep);
		jv_free(bid);
		mi_bundle_error(c, jv_object(), "VALIDATION_ERROR",
		    "manifest not "
		    "built: fix the errors above");
		goto out;
	}
	if (c->created_at[0] == '\0')
		snprintf(c->created_at, sizeof(c->created_at), FIXED_TIME);
	assets = JV_OBJECT(jv_string("intro_video"), asset_ref(found[0], 1),
	    jv_string("win_video"), asset_ref(found[1], 1),
	    jv_string("lose_video"), asset_ref(found[2], 1),
	    jv_string("game_bundle"), asset_ref(found[3], 1),
	    jv_string("additional"), additional);
	m = JV_OBJECT(jv_string("manifest_version"), jv_string("1.0.0"),
	    jv_string("campaign_id"),
	    jv_object_get(jv_copy(conf), jv_string("campaign_id")),
	    jv_string("campaign_name"),
	    jv_object_get(jv_copy(conf), jv_string("campaign_name")),
	    jv_string("created_at"), jv_string(c->created_at),
	    jv_string("updated_at"), jv_string(c->created_at),
	    jv_string("version"), jv_string("1.0.0"), jv_string("assets"),
	    assets);
	v = jv_object_get(jv_copy(conf), jv_string("version"));
	if (jv_get_kind(v) == JV_KIND_STRING)
		m = jv_object_set(m, jv_string("version"), v);
	else
		jv_free(v);
	v = jv_object_get(jv_copy(m), jv_string("campaign_name"));
	if (jv_get_kind(v) != JV_KIND_STRING)
		m = jv_object_set(m, jv_string("campaign_name"),
		    jv_object_get(jv_copy(conf), jv_string("campaign_id")));
	jv_free(v);
	v = section(jv_copy(conf), "interaction",
	    JV_OBJECT(jv_string("button"),
		JV_OBJECT(jv_string("bounds"),
		    JV_OBJECT(jv_string("x"), jv_number(0.4), jv_string("y"),
			jv_number(0.8), jv_string("width"), jv_number(0.2),
			jv_string("height"), jv_number(0.1)))));
	v = jv_object_set(v, jv_string("game_container"),
	    JV_OBJECT(jv_string("entry_point"),
		jv_get_kind(ep) == JV_KIND_STRING ? jv_copy(ep)
						  : jv_string("index.html"),
		jv_string("config_path"), jv_string("game_config.json")));
	m = jv_object_set(m, jv_string("interaction"), v);
	m = jv_object_set(m, jv_string("flow"),
	    section(jv_copy(conf), "flow",
		JV_OBJECT(jv_string("sequence"),
		    JV_ARRAY(jv_string("intro"), jv_string("game"),
			jv_string("outcome")),
		    jv_string("intro_to_game_trigger"), jv_string("video_end"),
		    jv_string("game_to_outcome_trigger"),
		    jv_string("game_complete"))));
	m = jv_object_set(m, jv_string("rules"),
	    section(jv_copy(conf), "rules",
		JV_OBJECT(jv_string("active"), jv_true(),
		    jv_string("require_login"), jv_false())));
	m = jv_object_set(m, jv_string("analytics"),
	    section(jv_copy(conf), "analytics",
		JV_OBJECT(jv_string("enabled"), jv_false(), jv_string("events"),
		    jv_array())));
	v = section(jv_copy(conf), "branding", jv_null());
	if (jv_get_kind(v) == JV_KIND_OBJECT)
		m = jv_object_set(m, jv_string("branding"), v);
	else
		jv_free(v);
	meta = section(jv_copy(conf), "metadata", jv_object());
	meta =
	    jv_object_set(meta, jv_string("tenant_id"), jv_string(c->tenant));
	meta = jv_object_set(meta, jv_string("run_id"), jv_string(c->run));
	if (jv_get_kind(bid) == JV_KIND_STRING)
		meta =
		    jv_object_set(meta, jv_string("bundle_id"), jv_copy(bid));
	m = jv_object_set(m, jv_string("metadata"), meta);
	if (mi_manifest_checksum(m, sum, &err) == -1)
		bnd_die_err(c, &err);
	m = jv_object_set(m, jv_string("checksum"), jv_string(sum));
	/* Its own problems (branding colours) stop it being stored. */
	{
		jv problems = jv_array();
		int checked = 0;

		v = jv_object_get(jv_copy(m), jv_string("branding"));
		if (jv_get_kind(v) == JV_KIND_OBJECT) {
			jv col = jv_object_get(v, jv_string("colors"));

			if (jv_get_kind(col) == JV_KIND_OBJECT)
				jv_object_foreach(col, key, val)
				{
					if (jv_get_kind(val) !=
						JV_KIND_STRING ||
					    !mi_css_colour_ok(
						jv_string_value(val)))
						bnd_problem(&problems,
						    "VALIDATION_ERROR",
						    "branding.colors.%s: not a "
						    "CSS colour",
						    jv_string_value(key));
					jv_free(key);
					jv_free(val);
				}
			jv_free(col);
		} else
			jv_free(v);
		if (jv_array_length(jv_copy(problems)) > 0) {
			bnd_verdict(c,
			    JV_OBJECT(jv_string("source"), jv_string(path),
				jv_string("kind"),
				jv_string("campaign_manifest")),
			    problems, checked);
			jv_free(m);
			jv_free(conf);
			jv_free(ep);
			jv_free(bid);
			goto out;
		}
		jv_free(problems);
	}
	text = mi_json_dump(m);
	fd = bnd_temp_file(c);
	len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
		bnd_die(c, EX_IOERR, "unable to write a temporary file: %s",
		    strerror(errno));
	free(text);
	bnd_store_and_record(c, fd, "json", "json",
	    JV_OBJECT(jv_string("filename"),
		jv_string("campaign-manifest.json"), jv_string("metadata"),
		JV_OBJECT(jv_string("kind"), jv_string("campaign-manifest"),
		    jv_string("campaign_id"),
		    jv_object_get(jv_copy(conf), jv_string("campaign_id")),
		    jv_string("manifest_checksum"), jv_string(sum))));
	close(fd);
	jv_free(m);
	jv_free(conf);
	jv_free(ep);
	jv_free(bid);
out:
	bnd_files_free(c);
	jv_free(c->artifacts);
	c->artifacts = jv_null();
	return c->failed ? 1 : 0;
}
