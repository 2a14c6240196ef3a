/*
 * cost/storage.c - the storage report: artifacts and logical bytes per
 * tenant and type from app.artifacts, and what the store's files take on
 * disk, each inode counted once per group (content shared by hard links
 * is paid for once).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cost/cost.h"
#include "names.h"
#include "store.h"
#include "banned.h"

static const struct mi_cost_key storage_keys[] = {
	{ "tenant", "tenant_id", NULL },
	{ "type", "type", NULL },
	{ NULL, NULL, NULL }
};

static const char *const storage_cols[] = { "artifacts", "files",
    "logical_bytes", "physical_bytes", "allocated_bytes", "saved_bytes",
    "saved_pct" };

/* The distinct inodes seen in one storage group (open addressing). */
struct inoset {
	struct ino_ent { dev_t dev; ino_t ino; int used; } *tab;
	size_t cap, n;
};

/* 1 when (dev, ino) is new, 0 when seen, -1 when memory runs out. */
static int
inoset_add(struct inoset *s, dev_t dev, ino_t ino)
{
	size_t i;

	if (2 * (s->n + 1) > s->cap) {
		struct inoset t = { NULL, s->cap ? 2 * s->cap : 64, 0 };

		if ((t.tab = calloc(t.cap, sizeof(*t.tab))) == NULL)
			return -1;
		/* Twice the room: these adds never grow t again. */
		for (i = 0; i < s->cap; i++)
			if (s->tab[i].used)
				inoset_add(&t, s->tab[i].dev, s->tab[i].ino);
		free(s->tab);
		*s = t;
	}
	i = ((size_t)ino * 0x9e3779b97f4a7c15ULL ^ (size_t)dev) & (s->cap - 1);
	for (; s->tab[i].used; i = (i + 1) & (s->cap - 1))
		if (s->tab[i].ino == ino && s->tab[i].dev == dev)
			return 0;
	s->tab[i].dev = dev;
	s->tab[i].ino = ino;
	s->tab[i].used = 1;
	s->n++;
	return 1;
}

/* One tenant (type "") or one tenant's artifact type. */
struct sgroup {
	char tenant[256], type[256];
	long long artifacts, logical, files, physical, allocated;
	struct inoset set;
};

struct sgroups {
	struct sgroup *g;
	size_t n, cap;
};

/* The group of (tenant, type), added when new; NULL when out of memory. */
static struct sgroup *
sgroup(struct sgroups *gs, const char *tenant, const char *type)
{
	struct sgroup *g;
	size_t i;

	for (i = 0; i < gs->n; i++)
		if (strcmp(gs->g[i].tenant, tenant) == 0 &&
		    strcmp(gs->g[i].type, type) == 0)
			return &gs->g[i];
	if (gs->n == gs->cap) {
		size_t cap = gs->cap ? 2 * gs->cap : 16;

		if ((g = reallocarray(gs->g, cap, sizeof(*g))) == NULL)
			return NULL;
		gs->g = g;
		gs->cap = cap;
	}
	memset(&gs->g[gs->n], 0, sizeof(gs->g[0]));
	snprintf(gs->g[gs->n].tenant, sizeof(gs->g[0].tenant), "%s", tenant);
	snprintf(gs->g[gs->n].type, sizeof(gs->g[0].type), "%s", type);
	return &gs->g[gs->n++];
}

static void
sgroups_free(struct sgroups *gs)
{
	size_t k;

	for (k = 0; k < gs->n; k++)
		free(gs->g[k].set.tab);
	free(gs->g);
}

static int
count_file(struct sgroup *g, const struct stat *sb)
{
	int added;

	if (g == NULL || (added = inoset_add(&g->set, sb->st_dev,
	    sb->st_ino)) == -1)
		return -1;
	if (added) {
		g->files++;
		g->physical += sb->st_size;
		g->allocated += (long long)sb->st_blocks * 512;
	}
	return 0;
}

/* "unable to <what> '<path>': <strerror(errno)>" to warn. */
static void
warnf(void (*warn)(const char *), const char *what, const char *path)
{
	char msg[4400];

	/* A longer message is cut, which is fine for a warning. */
	(void)snprintf(msg, sizeof(msg), "unable to %s '%s': %s", what, path,
	    strerror(errno));
	warn(msg);
}

/*
 * Walks a tenant's directory: every regular file counts once per inode
 * for the tenant, and for its type when it lies under {run}/{type}/.
 * What cannot be read is warned about and skipped; -1 only when memory
 * runs out.
 */
static int
walk(struct sgroups *gs, int dfd, const char *path, const char *tenant,
    int depth, const char *type, void (*warn)(const char *))
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;
	struct stat sb;

	if (d == NULL) {
		warnf(warn, "read", path);
		close(dfd);
		return 0;
	}
	while ((errno = 0, e = readdir(d)) != NULL) {
		char sub[4096];
		int fd;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) ==
		    -1) {
			warnf(warn, "stat", sub);
			continue;
		}
		if (S_ISREG(sb.st_mode)) {
			if (count_file(sgroup(gs, tenant, ""), &sb) == -1 ||
			    (type != NULL && depth == 2 &&
			    count_file(sgroup(gs, tenant, type), &sb) == -1))
				goto oom;
		} else if (S_ISDIR(sb.st_mode)) {
			fd = openat(dirfd(d), e->d_name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd == -1) {
				warnf(warn, "open", sub);
				continue;
			}
			/* {tenant}/{run}/{type}/: .objects is no run. */
			if (walk(gs, fd, sub, tenant, depth + 1,
			    depth == 0 ? (e->d_name[0] == '.' ? NULL : "") :
			    depth == 1 && type ? e->d_name : type, warn) == -1)
				goto oom;
		}
	}
	if (errno)
		warnf(warn, "read", path);
	closedir(d);
	return 0;
oom:
	closedir(d);
	return -1;
}

static int
walk_store(struct sgroups *gs, const char *root, const char *tenant,
    void (*warn)(const char *), struct mi_err *err)
{
	DIR *d = opendir(root);
	struct dirent *e;

	if (d == NULL)
		return mi_err_set_errno(err, EX_CONFIG,
		    "unable to read store '%s'", root);
	while ((e = readdir(d)) != NULL) {
		char path[4096];
		int fd;

		/* Only directories named like tenants are tenants. */
		if (!mi_name_tenant_ok(e->d_name) ||
		    (tenant && strcmp(tenant, e->d_name) != 0))
			continue;
		fd = openat(dirfd(d), e->d_name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1)
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, e->d_name);
		if (sgroup(gs, e->d_name, "") == NULL) {
			close(fd);
			goto oom;
		}
		if (walk(gs, fd, path, e->d_name, 0, NULL, warn) == -1)
			goto oom;
	}
	closedir(d);
	return 0;
oom:
	closedir(d);
	return mi_err_set(err, EX_OSERR, "out of memory");
}

static long long
num_at(jv o, const char *key)
{
	jv v = jv_object_get(jv_copy(o), jv_string(key));
	long long n = jv_get_kind(v) == JV_KIND_NUMBER ?
	    (long long)jv_number_value(v) : 0;

	jv_free(v);
	return n;
}

/* Adds the database's artifacts and logical bytes (rows consumed). */
static int
add_artifacts(struct sgroups *gs, jv rows)
{
	int i, ret = 0;

	for (i = 0; ret == 0 && i < jv_array_length(jv_copy(rows)); i++) {
		jv r = jv_array_get(jv_copy(rows), i);
		jv t = jv_object_get(jv_copy(r), jv_string("tenant_id"));
		jv y = jv_object_get(jv_copy(r), jv_string("type"));
		struct sgroup *a = sgroup(gs, jv_string_value(t), "");
		struct sgroup *b = a ? sgroup(gs, jv_string_value(t),
		    jv_string_value(y)) : NULL;

		if (b == NULL)
			ret = -1;
		else {
			/* b's add may have moved a. */
			a = sgroup(gs, jv_string_value(t), "");
			a->artifacts += num_at(r, "artifacts");
			a->logical += num_at(r, "logical_bytes");
			b->artifacts += num_at(r, "artifacts");
			b->logical += num_at(r, "logical_bytes");
		}
		jv_free(t);
		jv_free(y);
		jv_free(r);
	}
	jv_free(rows);
	return ret;
}

/* The rows of the groups of out, sorted by tenant and type. */
static jv
storage_rows(const struct sgroups *out, int by_tenant, int by_type)
{
	jv res = jv_array(), order = jv_array();
	size_t k;

	for (k = 0; k < out->n; k++) {
		const struct sgroup *g = &out->g[k];
		long long saved = g->logical - g->physical;
		jv r = jv_object();

		if (by_tenant)
			r = jv_object_set(r, jv_string("tenant_id"),
			    jv_string(g->tenant));
		if (by_type)
			r = jv_object_set(r, jv_string("type"),
			    jv_string(g->type));
		r = jv_object_set(r, jv_string("artifacts"),
		    jv_number(g->artifacts));
		r = jv_object_set(r, jv_string("files"), jv_number(g->files));
		r = jv_object_set(r, jv_string("logical_bytes"),
		    jv_number(g->logical));
		r = jv_object_set(r, jv_string("physical_bytes"),
		    jv_number(g->physical));
		r = jv_object_set(r, jv_string("allocated_bytes"),
		    jv_number(g->allocated));
		r = jv_object_set(r, jv_string("saved_bytes"),
		    jv_number(saved));
		r = jv_object_set(r, jv_string("saved_pct"),
		    jv_number(g->logical > 0 ?
		    round(10000.0 * saved / g->logical) / 100 : 0));
		res = jv_array_append(res, r);
		order = jv_array_append(order, jv_array_append(jv_array_append(
		    jv_array(), jv_string(g->tenant)), jv_string(g->type)));
	}
	return jv_sort(res, order);
}

jv
mi_cost_storage(struct mi_db *db, const char *tenant, const char *by,
    void (*warn)(const char *msg), struct mi_cost_cols *c,
    struct mi_err *err)
{
	static const char sql[] =
	    "SELECT json_build_object('tenant_id', tenant_id, 'type', type,"
	    " 'artifacts', count(*), 'logical_bytes', sum(size_bytes))"
	    " FROM app.artifacts WHERE ($1::text IS NULL OR tenant_id = $1)"
	    " GROUP BY tenant_id, type";
	const struct mi_cost_key *sel[4];
	struct sgroups gs = { NULL, 0, 0 }, out = { NULL, 0, 0 };
	struct mi_store *st = NULL;
	const char *params[1] = { tenant };
	int by_tenant = 0, by_type = 0, i;
	size_t k;
	jv rows, res = jv_invalid();

	if (mi_cost_parse_by(by ? by : "tenant", storage_keys, c, sel,
	    err) == -1)
		return res;
	for (i = 0; sel[i]; i++)
		*(sel[i] == &storage_keys[0] ? &by_tenant : &by_type) = 1;
	if ((st = mi_store_open(NULL, err)) == NULL)
		goto out;
	if (walk_store(&gs, mi_store_root(st), tenant, warn, err) == -1)
		goto out;
	rows = mi_db_json(db, sql, 1, params, err);
	if (!jv_is_valid(rows))
		goto out;
	if (add_artifacts(&gs, rows) == -1)
		goto oom;
	/*
	 * Inodes are counted per tenant and per type; rows that merge groups
	 * add them up (no file is shared between tenants).  Without type,
	 * a tenant's total is its own: a file linked under two types once.
	 */
	for (k = 0; k < gs.n; k++) {
		struct sgroup *g = &gs.g[k], *r;

		if ((g->type[0] != '\0') != by_type)
			continue;
		r = sgroup(&out, by_tenant ? g->tenant : "",
		    by_type ? g->type : "");
		if (r == NULL)
			goto oom;
		r->artifacts += g->artifacts;
		r->logical += g->logical;
		r->files += g->files;
		r->physical += g->physical;
		r->allocated += g->allocated;
	}
	res = storage_rows(&out, by_tenant, by_type);
	for (k = 0; k < sizeof(storage_cols) / sizeof(storage_cols[0]); k++)
		mi_cost_cols_add(c, storage_cols[k]);
	goto out;
oom:
	mi_err_set(err, EX_OSERR, "out of memory");
out:
	sgroups_free(&out);
	sgroups_free(&gs);
	if (st)
		mi_store_close(st);
	return res;
}
