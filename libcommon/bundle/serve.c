/*
 * serve.c - one entry of a stored bundle (see serve.h).
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bundle/manifest.h"
#include "bundle/serve.h"
#include "bundle/zipread.h"
#include "httpd.h"
#include "banned.h"

struct slot {
	char hash[65];
	long long size;
	struct mi_zip *z; /* NULL: the archive is refused */
	int refs;
	int temp; /* not in the table: freed on release */
	unsigned long long used;
};

static struct slot slots[MI_BUNDLE_CACHE];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long tick;
static atomic_llong inflight;

/*
 * What precedes an inflated body in its allocation.  A body is shared by
 * the answers sending it and by the body cache; the last to let go frees
 * it.  key is "{sha256}/{entry}" for a cached body, "" otherwise.
 */
struct body {
	long long size;
	atomic_int refs;
	unsigned long long used;
	char key[MI_ZIP_MAX_NAME + 72];
	long long pad;
};

/* Small inflated bodies (scripts, pages, JSON) kept for the next answer. */
#define BODY_SLOTS 64
#define BODY_CACHE_BYTES (16LL << 20)
#define BODY_CACHE_MAX (2LL << 20)
static struct body *bodies[BODY_SLOTS];
static long long bodies_bytes;

static void body_unref(struct body *b);

int
mi_bundle_url_parse(const char *path, struct mi_bundle_url *u)
{
	static const char prefix[] = "/api/assets/";
	const char *s, *z, *rest, *e;
	size_t n;
	int i;

	if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	s = path + sizeof(prefix) - 1;
	for (i = 0; i < 2; i++) {
		if ((s = strchr(s, '/')) == NULL)
			return 0;
		s++;
	}
	if (strncmp(s, "bundle/", 7) != 0 || (z = strchr(s + 7, '/')) == NULL)
		return 0;
	/* From here on the path has the bundle-entry form. */
	memset(u, 0, sizeof(*u));
	n = (size_t)(z - path);
	if (n >= sizeof(u->zip_path))
		return -1;
	memcpy(u->zip_path, path, n);
	u->zip_path[n] = '\0';
	if (mi_asset_path_parse(u->zip_path, &u->asset, NULL) == -1 ||
	    strcmp(u->asset.ext, "zip") != 0)
		return -1;
	rest = z + 1;
	if (strncmp(rest, "exp=", 4) == 0) {
		e = strchr(rest, '/');
		n = e ? (size_t)(e - rest) : strlen(rest);
		if (n >= sizeof(u->query))
			return -1;
		memcpy(u->query, rest, n);
		u->query[n] = '\0';
		if (strstr(u->query, "&sig=") == NULL)
			return -1;
		rest = e ? e + 1 : "";
	}
	n = strlen(rest);
	if (n + sizeof("index.html") > sizeof(u->entry))
		return -1;
	memcpy(u->entry, rest, n + 1);
	if (n == 0 || rest[n - 1] == '/')
		memcpy(u->entry + n, "index.html", sizeof("index.html"));
	return mi_zip_name_ok(u->entry, strlen(u->entry)) ? 1 : -1;
}

const char *
mi_bundle_log_path(const char *path, char *buf, size_t bufsz)
{
	const char *c = strstr(path, ".zip/exp="), *sig, *end;

	if (c == NULL || (sig = strstr(c, "&sig=")) == NULL ||
	    ((end = strchr(c + 5, '/')) != NULL && end < sig))
		return path;
	sig += 5;
	end = strchr(sig, '/');
	if ((size_t)snprintf(buf, bufsz, "%.*s-%s", (int)(sig - path), path,
		end ? end : "") >= bufsz)
		return "-";
	return buf;
}

static void
slot_free(struct slot *s)
{
	mi_zip_free(s->z);
	memset(s, 0, sizeof(*s));
}

/* The directory of the zip with content hash, parsed on first use. */
static struct slot *
dir_get(const char *hash, int fd, long long size)
{
	struct mi_err err = MI_ERR_INIT;
	struct slot *s, *victim = NULL;
	struct mi_zip *z;
	size_t i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < MI_BUNDLE_CACHE; i++)
		if (strcmp(slots[i].hash, hash) == 0) {
			slots[i].refs++;
			slots[i].used = ++tick;
			pthread_mutex_unlock(&lock);
			return &slots[i];
		}
	pthread_mutex_unlock(&lock);
	/* Parsed outside the lock: other bundles are not held up. */
	z = mi_zip_open(mi_zip_read_fd, &fd, (uint64_t)size, &err);
	pthread_mutex_lock(&lock);
	for (i = 0; i < MI_BUNDLE_CACHE; i++) {
		s = &slots[i];
		if (strcmp(s->hash, hash) == 0) {
			/* Another thread was quicker. */
			s->refs++;
			s->used = ++tick;
			pthread_mutex_unlock(&lock);
			mi_zip_free(z);
			return s;
		}
		if (s->refs == 0 && (victim == NULL || s->used < victim->used))
			victim = s;
	}
	/*
	 * Every slot in use, or a failure that is not the archive's (memory,
	 * I/O): this directory lives for one answer.
	 */
	if (victim == NULL || (z == NULL && err.code != EX_DATAERR)) {
		pthread_mutex_unlock(&lock);
		if ((victim = calloc(1, sizeof(*victim))) == NULL) {
			mi_zip_free(z);
			return NULL;
		}
		victim->temp = 1;
		pthread_mutex_lock(&lock);
	} else
		slot_free(victim);
	memcpy(victim->hash, hash, sizeof(victim->hash));
	victim->size = size;
	victim->z = z;
	victim->refs = 1;
	victim->used = ++tick;
	pthread_mutex_unlock(&lock);
	return victim;
}

static void
dir_release(struct slot *s)
{
	int temp;

	pthread_mutex_lock(&lock);
	s->refs--;
	temp = s->temp;
	pthread_mutex_unlock(&lock);
	if (temp) {
		mi_zip_free(s->z);
		free(s);
	}
}

void
mi_bundle_cache_clear(void)
{
	size_t i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < MI_BUNDLE_CACHE; i++)
		if (slots[i].refs == 0)
			slot_free(&slots[i]);
	for (i = 0; i < BODY_SLOTS; i++)
		if (bodies[i] != NULL) {
			bodies_bytes -= bodies[i]->size;
			body_unref(bodies[i]);
			bodies[i] = NULL;
		}
	pthread_mutex_unlock(&lock);
}

static void
body_unref(struct body *b)
{
	if (atomic_fetch_sub(&b->refs, 1) == 1) {
		atomic_fetch_sub(&inflight, b->size);
		free(b);
	}
}

static void
body_free(void *p)
{
	body_unref((struct body *)((char *)p - sizeof(struct body)));
}

/* A budgeted body of size bytes, one reference; NULL past the budget. */
static struct body *
body_new(long long size)
{
	struct body *b;

	if (atomic_fetch_add(&inflight, size) + size >
	    MI_BUNDLE_INFLATE_BUDGET) {
		atomic_fetch_sub(&inflight, size);
		return NULL;
	}
	if ((b = malloc(sizeof(*b) + (size_t)size + 1)) == NULL) {
		atomic_fetch_sub(&inflight, size);
		return NULL;
	}
	b->size = size;
	atomic_init(&b->refs, 1);
	b->used = 0;
	b->key[0] = '\0';
	return b;
}

static char *
body_data(struct body *b)
{
	return (char *)b + sizeof(*b);
}

/* The cached body called key, with a reference for the caller. */
static struct body *
body_lookup(const char *key)
{
	struct body *b = NULL;
	size_t i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < BODY_SLOTS; i++)
		if (bodies[i] != NULL && strcmp(bodies[i]->key, key) == 0) {
			b = bodies[i];
			atomic_fetch_add(&b->refs, 1);
			b->used = ++tick;
			break;
		}
	pthread_mutex_unlock(&lock);
	return b;
}

/* Keeps b (a reference of the cache's own), dropping the least used. */
static void
body_keep(struct body *b, const char *key)
{
	struct body *drop[BODY_SLOTS];
	size_t i, n = 0, lru;

	if (b->size > BODY_CACHE_MAX ||
	    (size_t)snprintf(b->key, sizeof(b->key), "%s", key) >=
	    sizeof(b->key))
		return;
	pthread_mutex_lock(&lock);
	for (i = 0; i < BODY_SLOTS; i++)
		if (bodies[i] != NULL && strcmp(bodies[i]->key, key) == 0) {
			pthread_mutex_unlock(&lock);
			return;	/* another answer kept it first */
		}
	for (;;) {
		lru = BODY_SLOTS;
		for (i = 0; i < BODY_SLOTS; i++) {
			if (bodies[i] == NULL &&
			    bodies_bytes + b->size <= BODY_CACHE_BYTES)
				break;
			if (bodies[i] != NULL && (lru == BODY_SLOTS ||
			    bodies[i]->used < bodies[lru]->used))
				lru = i;
		}
		if (i < BODY_SLOTS)
			break;
		if (lru == BODY_SLOTS)
			break;	/* nothing left to drop */
		bodies_bytes -= bodies[lru]->size;
		drop[n++] = bodies[lru];
		bodies[lru] = NULL;
	}
	if (i < BODY_SLOTS) {
		atomic_fetch_add(&b->refs, 1);
		b->used = ++tick;
		bodies[i] = b;
		bodies_bytes += b->size;
	}
	pthread_mutex_unlock(&lock);
	while (n > 0)
		body_unref(drop[--n]);
}

/* e inflated: a cached body, or a new one (then kept). NULL with *why. */
static struct body *
inflate_entry(const struct mi_zip_entry *e, int fd, const char *key,
    const char **why)
{
	struct mi_err err = MI_ERR_INIT;
	struct body *b;

	if ((b = body_lookup(key)) != NULL)
		return b;
	if ((b = body_new((long long)e->usize)) == NULL) {
		*why = "busy";
		return NULL;
	}
	if (mi_zip_extract(e, mi_zip_read_fd, &fd, body_data(b),
	    (size_t)e->usize, &err) == -1) {
		body_unref(b);
		*why = "damaged entry";
		return NULL;
	}
	body_keep(b, key);
	return b;
}

void
mi_bundle_answer(int fd, long long size, const struct mi_bundle_url *u,
    const char *inm, const char *range, const char *if_range,
    struct mi_bundle_answer *a)
{
	const struct mi_zip_entry *e;
	long long from = 0, to = -1, usize;
	struct body *b;
	struct slot *s;
	int k = 0;

	memset(a, 0, sizeof(*a));
	a->fd = -1;
	a->status = 404;
	a->type = "text/plain; charset=utf-8";
	if ((s = dir_get(u->asset.hash, fd, size)) == NULL) {
		close(fd);
		a->status = 503;
		a->why = "busy";
		return;
	}
	if (s->z == NULL || s->size != size ||
	    (e = mi_zip_find(s->z, u->entry, strlen(u->entry))) == NULL) {
		a->why = s->z == NULL ? "refused archive" : "no entry";
		dir_release(s);
		close(fd);
		return;
	}
	a->type = mi_bundle_content_type(e->name);
	snprintf(a->etag, sizeof(a->etag), "\"%s/%s\"", u->asset.hash,
	    u->entry);
	usize = (long long)e->usize;
	if (inm != NULL && mi_http_none_match(inm, a->etag)) {
		dir_release(s);
		close(fd);
		a->status = 304;
		return;
	}
	if (range != NULL) {
		k = mi_http_range(range, usize, &from, &to);
		if (if_range != NULL && strcmp(if_range, a->etag) != 0)
			k = 0;
	}
	if (k == -1) {
		dir_release(s);
		close(fd);
		a->status = 416;
		snprintf(a->content_range, sizeof(a->content_range),
		    "bytes */%lld", usize);
		return;
	}
	if (k == 0) {
		from = 0;
		to = usize - 1;
	}
	a->len = to - from + 1;
	if (e->method == 0) {
		/* Stored: the bytes of the zip file itself, by sendfile. */
		a->fd = fd;
		a->off = (off_t)(e->data_off + (uint64_t)from);
		dir_release(s);
	} else {
		/* The key is the ETag's text: content hash and entry name. */
		b = inflate_entry(e, fd, a->etag, &a->why);
		dir_release(s);
		close(fd);
		if (b != NULL && k == 1) {
			/* A part: its own copy, the whole body let go. */
			struct body *part = body_new(a->len);

			if (part != NULL)
				memcpy(body_data(part), body_data(b) + from,
				    (size_t)a->len);
			else
				a->why = "busy";
			body_unref(b);
			b = part;
		}
		if (b == NULL) {
			a->status = strcmp(a->why, "busy") == 0 ? 503 : 404;
			a->len = 0;
			return;
		}
		a->mem = body_data(b);
		a->free_fn = body_free;
	}
	a->status = k == 1 ? 206 : 200;
	if (k == 1)
		snprintf(a->content_range, sizeof(a->content_range),
		    "bytes %lld-%lld/%lld", from, to, usize);
}
