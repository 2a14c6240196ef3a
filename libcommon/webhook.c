/*
 * webhook.c - verifying and recording provider webhooks (webhook.h).
 *
 * Order of the checks: provider and scheme, then headers, timestamp and
 * signature over the raw bytes, then (and only then) the body is parsed;
 * the job is found by the provider's id for it, in the transaction that
 * records the delivery id, so two copies of one delivery racing each
 * other cannot both pass.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "buf.h"
#include "hash.h"
#include "http.h"
#include "json.h"
#include "names.h"
#include "provider.h"
#include "webhook.h"
#include "banned.h"

#define JWKS_MAX (256 * 1024)
#define JWKS_REFRESH_MS (10 * 60 * 1000)
#define MAX_KEYS 16

static const char *const result_names[MI_HOOK_NRESULT] = {
	"accepted", "hint", "ignored", "progress", "signature", "stale", "replay",
	"unknown_job", "tenant", "bad_body", "too_large", "unconfigured"
};

const char *
mi_webhook_result_name(int r)
{
	return r >= 0 && r < MI_HOOK_NRESULT ? result_names[r] : "error";
}

/* Base64, standard or URL alphabet, padding optional. */
static int
b64_decode(const char *s, size_t n, unsigned char *out, size_t outsz,
    size_t *outlen)
{
	unsigned v = 0;
	int bits = 0;
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		int c = (unsigned char)s[i], d;

		if (c >= 'A' && c <= 'Z')
			d = c - 'A';
		else if (c >= 'a' && c <= 'z')
			d = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			d = c - '0' + 52;
		else if (c == '+' || c == '-')
			d = 62;
		else if (c == '/' || c == '_')
			d = 63;
		else if (c == '=')
			break;
		else
			return -1;
		v = (v << 6) | (unsigned)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outsz)
				return -1;
			out[o++] = (unsigned char)(v >> bits);
		}
	}
	*outlen = o;
	return 0;
}

static void
b64_encode(const unsigned char *p, size_t n, char *out)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		*out++ = tab[p[i] >> 2];
		*out++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*out++ = tab[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		*out++ = tab[p[i + 2] & 63];
	}
	if (i < n) {
		*out++ = tab[p[i] >> 2];
		if (i + 1 < n) {
			*out++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
			*out++ = tab[(p[i + 1] & 15) << 2];
		} else {
			*out++ = tab[(p[i] & 3) << 4];
			*out++ = '=';
		}
		*out++ = '=';
	}
	*out = '\0';
}

static int
hex_decode(const char *s, unsigned char *out, size_t outsz, size_t *outlen)
{
	size_t n = strlen(s), i;

	if (n % 2 || n / 2 > outsz)
		return -1;
	for (i = 0; i < n; i += 2) {
		int hi = isxdigit((unsigned char)s[i]) ? s[i] : -1;
		int lo = isxdigit((unsigned char)s[i + 1]) ? s[i + 1] : -1;

		if (hi < 0 || lo < 0)
			return -1;
		hi = isdigit(hi) ? hi - '0' : (tolower(hi) - 'a' + 10);
		lo = isdigit(lo) ? lo - '0' : (tolower(lo) - 'a' + 10);
		out[i / 2] = (unsigned char)(hi << 4 | lo);
	}
	*outlen = n / 2;
	return 0;
}

/* Constant time over equal lengths. */
static int
mem_ct_equal(const unsigned char *a, const unsigned char *b, size_t n)
{
	unsigned char d = 0;
	size_t i;

	for (i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

static const char *
header(const struct mi_webhook_in *in, const char *name)
{
	size_t i;

	for (i = 0; i < in->nheaders; i++)
		if (strcasecmp(in->headers[i].name, name) == 0)
			return in->headers[i].value;
	return NULL;
}

/* "MI_<ID>_<field>" of the provider id. */
static void
env_name(const char *id, const char *field, char *out, size_t outsz)
{
	size_t i;

	snprintf(out, outsz, "MI_%s_%s", id, field);
	for (i = 3; out[i] && i < 3 + strlen(id); i++)
		out[i] = out[i] == '-' ? '_' :
		    (char)toupper((unsigned char)out[i]);
}

static int
timestamp_ok(const char *ts, long long now_s)
{
	unsigned long long t;

	if (ts == NULL || mi_parse_uint(ts, 0, 99999999999ULL, &t) == -1)
		return 0;
	return (long long)t >= now_s - MI_WEBHOOK_SKEW_S &&
	    (long long)t <= now_s + MI_WEBHOOK_SKEW_S;
}

/* Standard Webhooks.  Returns a result; id gets the delivery id. */
static int
verify_standard(const struct mi_webhook_in *in, jv hooks, char *id,
    size_t idsz)
{
	const char *wid = header(in, "webhook-id");
	const char *ts = header(in, "webhook-timestamp");
	const char *sig = header(in, "webhook-signature");
	const char *senv = NULL, *secret, *s;
	unsigned char key[256], mac[EVP_MAX_MD_SIZE];
	char name[160], want[EVP_MAX_MD_SIZE * 2];
	struct mi_buf msg;
	unsigned maclen = 0;
	size_t keylen, n;
	int ok = 0;

	if (wid == NULL || ts == NULL || sig == NULL || *wid == '\0' ||
	    strlen(wid) >= idsz || strchr(wid, '.') != NULL)
		return MI_HOOK_SIGNATURE;
	mi_json_str(hooks, "secret_env", &senv, 0, NULL);
	env_name(in->provider_id, "WEBHOOK_SECRET", name, sizeof(name));
	if ((secret = getenv(senv ? senv : name)) == NULL || *secret == '\0')
		return MI_HOOK_UNCONFIGURED;
	if (strncmp(secret, "whsec_", 6) == 0)
		secret += 6;
	if (b64_decode(secret, strlen(secret), key, sizeof(key), &keylen) ==
	    -1 || keylen == 0)
		return MI_HOOK_UNCONFIGURED;
	if (!timestamp_ok(ts, in->now_s)) {
		explicit_bzero(key, sizeof(key));
		return MI_HOOK_STALE;
	}
	/* HMAC over id "." timestamp "." body. */
	mi_buf_init(&msg, 0);
	if (mi_buf_addf(&msg, "%s.%s.", wid, ts) == -1 ||
	    mi_buf_add(&msg, in->body, in->body_len) == -1 ||
	    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg.buf,
	    msg.len, mac, &maclen) == NULL) {
		mi_buf_release(&msg);
		explicit_bzero(key, sizeof(key));
		return MI_HOOK_SIGNATURE;
	}
	mi_buf_release(&msg);
	explicit_bzero(key, sizeof(key));
	b64_encode(mac, maclen, want);
	/* Several signatures may be sent ("v1,a v1,b"): any one will do. */
	for (s = sig; *s; s += n) {
		s += strspn(s, " ");
		n = strcspn(s, " ");
		if (n > 3 && strncmp(s, "v1,", 3) == 0 &&
		    n - 3 == strlen(want) &&
		    mem_ct_equal((const unsigned char *)s + 3,
		    (const unsigned char *)want, n - 3))
			ok = 1;
	}
	if (!ok)
		return MI_HOOK_SIGNATURE;
	snprintf(id, idsz, "%s", wid);
	return MI_HOOK_ACCEPTED;
}

/* The Ed25519 keys of a JWKS, cached per provider. */
struct keyset {
	char provider[64];
	long long loaded_ms, tried_ms;
	int n;
	unsigned char key[MAX_KEYS][32];
	struct keyset *next;
};

static struct keyset *keysets;
static pthread_mutex_t keys_lock = PTHREAD_MUTEX_INITIALIZER;

static char *
jwks_text(const char *where)
{
	struct mi_http_resp resp;
	struct mi_http_req req;
	char *out = NULL;
	FILE *fp;

	if (strncmp(where, "http://", 7) != 0 &&
	    strncmp(where, "https://", 8) != 0) {
		struct mi_buf b;
		char chunk[8192];
		size_t n;

		if (strncmp(where, "file://", 7) == 0)
			where += 7;
		if ((fp = fopen(where, "r")) == NULL)
			return NULL;
		mi_buf_init(&b, JWKS_MAX);
		while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
			if (mi_buf_add(&b, chunk, n) == -1)
				break;
		fclose(fp);
		return mi_buf_detach(&b, NULL);
	}
	memset(&req, 0, sizeof(req));
	req.url = where;
	req.timeout_ms = 10000;
	req.max_body = JWKS_MAX;
	mi_http_resp_init(&resp);
	if (mi_http_do(&req, &resp) == 0 && resp.status == 200)
		out = mi_buf_detach(&resp.body, NULL);
	mi_http_resp_release(&resp);
	return out;
}

static void
keyset_load(struct keyset *k, const char *where)
{
	char *text = jwks_text(where);
	jv doc, keys;
	int i, n;

	k->tried_ms = mi_now_ms();
	if (text == NULL)
		return;
	doc = jv_parse(text);
	free(text);
	keys = jv_get_kind(doc) == JV_KIND_OBJECT ?
	    jv_object_get(jv_copy(doc), jv_string("keys")) : jv_invalid();
	jv_free(doc);
	if (jv_get_kind(keys) != JV_KIND_ARRAY) {
		jv_free(keys);
		return;
	}
	k->n = 0;
	n = jv_array_length(jv_copy(keys));
	for (i = 0; i < n && k->n < MAX_KEYS; i++) {
		jv e = jv_array_get(jv_copy(keys), i);
		const char *kty = NULL, *crv = NULL, *x = NULL;
		size_t len;

		if (jv_get_kind(e) == JV_KIND_OBJECT &&
		    mi_json_str(e, "kty", &kty, 0, NULL) == 1 &&
		    mi_json_str(e, "crv", &crv, 0, NULL) == 1 &&
		    mi_json_str(e, "x", &x, 0, NULL) == 1 &&
		    strcmp(kty, "OKP") == 0 && strcmp(crv, "Ed25519") == 0 &&
		    b64_decode(x, strlen(x), k->key[k->n], 32, &len) == 0 &&
		    len == 32)
			k->n++;
		jv_free(e);
	}
	jv_free(keys);
	k->loaded_ms = k->tried_ms;
}

static int
ed25519_ok(const unsigned char *key, const unsigned char *sig, size_t siglen,
    const unsigned char *msg, size_t msglen)
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key,
	    32);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = 0;

	if (pk && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1)
		ok = EVP_DigestVerify(ctx, sig, siglen, msg, msglen) == 1;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return ok;
}

/* Verifies against the provider's keys; reloads them (at most once a
 * minute) when none matches, since keys rotate. */
static int
keys_verify(const char *provider, const char *where, const unsigned char *sig,
    size_t siglen, const unsigned char *msg, size_t msglen)
{
	struct keyset *k;
	int i, ok = 0, pass;

	pthread_mutex_lock(&keys_lock);
	for (k = keysets; k; k = k->next)
		if (strcmp(k->provider, provider) == 0)
			break;
	if (k == NULL && (k = calloc(1, sizeof(*k))) != NULL) {
		snprintf(k->provider, sizeof(k->provider), "%s", provider);
		k->next = keysets;
		keysets = k;
	}
	for (pass = 0; k && pass < 2 && !ok; pass++) {
		long long now = mi_now_ms();

		if (k->loaded_ms == 0 || now - k->loaded_ms > JWKS_REFRESH_MS ||
		    (pass == 1 && now - k->tried_ms > 60000))
			keyset_load(k, where);
		else if (pass == 1)
			break;
		for (i = 0; i < k->n && !ok; i++)
			ok = ed25519_ok(k->key[i], sig, siglen, msg, msglen);
	}
	pthread_mutex_unlock(&keys_lock);
	return ok;
}

/* fal's ED25519 scheme. */
static int
verify_ed25519(const struct mi_webhook_in *in, jv hooks, char *id,
    size_t idsz)
{
	const char *rid = header(in, "x-fal-webhook-request-id");
	const char *uid = header(in, "x-fal-webhook-user-id");
	const char *ts = header(in, "x-fal-webhook-timestamp");
	const char *sig = header(in, "x-fal-webhook-signature");
	const char *where = NULL;
	unsigned char raw[128];
	char name[160], digest[65];
	struct mi_buf msg = MI_BUF_INIT;
	size_t rawlen;
	int ok;

	if (rid == NULL || uid == NULL || ts == NULL || sig == NULL ||
	    *rid == '\0' || strlen(rid) + strlen(ts) + 2 > idsz)
		return MI_HOOK_SIGNATURE;
	env_name(in->provider_id, "WEBHOOK_JWKS", name, sizeof(name));
	if ((where = getenv(name)) == NULL || *where == '\0')
		mi_json_str(hooks, "jwks_url", &where, 0, NULL);
	if (where == NULL)
		return MI_HOOK_UNCONFIGURED;
	if (!timestamp_ok(ts, in->now_s))
		return MI_HOOK_STALE;
	if (hex_decode(sig, raw, sizeof(raw), &rawlen) == -1 || rawlen != 64)
		return MI_HOOK_SIGNATURE;
	mi_sha256_hex(in->body, in->body_len, digest);
	if (mi_buf_addf(&msg, "%s\n%s\n%s\n%s", rid, uid, ts, digest) == -1)
		return MI_HOOK_SIGNATURE;
	ok = keys_verify(in->provider_id, where, raw, rawlen,
	    (const unsigned char *)msg.buf, msg.len);
	mi_buf_release(&msg);
	if (!ok)
		return MI_HOOK_SIGNATURE;
	snprintf(id, idsz, "%s.%s", rid, ts);
	return MI_HOOK_ACCEPTED;
}

/* kie.ai's: HMAC over the job id and timestamp only. */
static int
verify_hmac(const struct mi_webhook_in *in, jv hooks, const char *pjid,
    char *id, size_t idsz)
{
	const char *ts = header(in, "x-webhook-timestamp");
	const char *sig = header(in, "x-webhook-signature");
	const char *senv = NULL, *secret;
	unsigned char mac[EVP_MAX_MD_SIZE];
	char name[160], want[EVP_MAX_MD_SIZE * 2];
	struct mi_buf msg = MI_BUF_INIT;
	unsigned maclen = 0;
	int ok;

	if (ts == NULL || sig == NULL || strlen(pjid) + strlen(ts) + 2 > idsz)
		return MI_HOOK_SIGNATURE;
	mi_json_str(hooks, "secret_env", &senv, 0, NULL);
	env_name(in->provider_id, "WEBHOOK_SECRET", name, sizeof(name));
	if ((secret = getenv(senv ? senv : name)) == NULL || *secret == '\0')
		return MI_HOOK_UNCONFIGURED;
	if (!timestamp_ok(ts, in->now_s))
		return MI_HOOK_STALE;
	if (mi_buf_addf(&msg, "%s.%s", pjid, ts) == -1 ||
	    HMAC(EVP_sha256(), secret, (int)strlen(secret),
	    (const unsigned char *)msg.buf, msg.len, mac, &maclen) == NULL) {
		mi_buf_release(&msg);
		return MI_HOOK_SIGNATURE;
	}
	mi_buf_release(&msg);
	b64_encode(mac, maclen, want);
	ok = strlen(sig) == strlen(want) && mem_ct_equal((const unsigned
	    char *)sig, (const unsigned char *)want, strlen(want));
	if (!ok)
		return MI_HOOK_SIGNATURE;
	snprintf(id, idsz, "%s.%s", pjid, ts);
	return MI_HOOK_ACCEPTED;
}

/* Strict JSON syntax. */

struct jscan {
	const char *p, *end;
	int depth;
};

static void
ws(struct jscan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
	    *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int
lit(struct jscan *s, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0)
		return 0;
	s->p += n;
	return 1;
}

static int
jstring(struct jscan *s)
{
	int i;

	if (s->p >= s->end || *s->p != '"')
		return 0;
	for (s->p++; s->p < s->end; s->p++) {
		unsigned char c = (unsigned char)*s->p;

		if (c == '"') {
			s->p++;
			return 1;
		}
		if (c < 0x20)
			return 0;
		if (c != '\\')
			continue;
		if (++s->p >= s->end)
			return 0;
		c = (unsigned char)*s->p;
		if (c == 'u') {
			for (i = 0; i < 4; i++)
				if (++s->p >= s->end ||
				    !isxdigit((unsigned char)*s->p))
					return 0;
		} else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0')
			return 0;
	}
	return 0;
}

static int
jnumber(struct jscan *s)
{
	const char *start;

	if (s->p < s->end && *s->p == '-')
		s->p++;
	if (s->p >= s->end)
		return 0;
	if (*s->p == '0')
		s->p++;
	else if (*s->p >= '1' && *s->p <= '9')
		while (s->p < s->end && isdigit((unsigned char)*s->p))
			s->p++;
	else
		return 0;
	if (s->p < s->end && *s->p == '.') {
		start = ++s->p;
		while (s->p < s->end && isdigit((unsigned char)*s->p))
			s->p++;
		if (s->p == start)
			return 0;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		start = s->p;
		while (s->p < s->end && isdigit((unsigned char)*s->p))
			s->p++;
		if (s->p == start)
			return 0;
	}
	return 1;
}

static int
jvalue(struct jscan *s)
{
	char close;
	int first = 1;

	ws(s);
	if (s->p >= s->end)
		return 0;
	switch (*s->p) {
	case '"':
		return jstring(s);
	case 't':
		return lit(s, "true");
	case 'f':
		return lit(s, "false");
	case 'n':
		return lit(s, "null");
	case '{':
	case '[':
		break;
	default:
		return jnumber(s);
	}
	if (++s->depth > 64)
		return 0;
	close = *s->p == '{' ? '}' : ']';
	for (s->p++;; first = 0) {
		ws(s);
		if (s->p < s->end && *s->p == close && first) {
			s->p++;
			break;
		}
		if (close == '}') {
			if (!jstring(s))
				return 0;
			ws(s);
			if (s->p >= s->end || *s->p++ != ':')
				return 0;
		}
		if (!jvalue(s))
			return 0;
		ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			ws(s);
			if (s->p < s->end && *s->p == close)
				return 0;
			continue;
		}
		if (s->p < s->end && *s->p == close) {
			s->p++;
			break;
		}
		return 0;
	}
	s->depth--;
	return 1;
}

int
mi_json_wellformed(const char *p, size_t n)
{
	struct jscan s = { p, p + n, 0 };
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] == '\0')
			return 0;
	if (!jvalue(&s))
		return 0;
	ws(&s);
	return s.p == s.end;
}

/* The delivery as the definition sees it. */
static jv
delivery(const struct mi_webhook_in *in, jv body)
{
	jv h = jv_object(), q = jv_object(), d = jv_object();
	const char *s = in->query ? in->query : "";
	size_t i;

	for (i = 0; i < in->nheaders; i++) {
		char name[128];
		size_t k;

		for (k = 0; in->headers[i].name[k] && k + 1 < sizeof(name);
		    k++)
			name[k] = (char)tolower(
			    (unsigned char)in->headers[i].name[k]);
		name[k] = '\0';
		h = jv_object_set(h, jv_string(name),
		    jv_string(in->headers[i].value));
	}
	/* job= and tenant= only: both are plain names, never encoded. */
	while (*s) {
		size_t n = strcspn(s, "&");
		const char *eq = memchr(s, '=', n);

		if (eq && (size_t)(eq - s) < 16) {
			char k[16];

			memcpy(k, s, (size_t)(eq - s));
			k[eq - s] = '\0';
			if (strcmp(k, "job") == 0 || strcmp(k, "tenant") == 0)
				q = jv_object_set(q, jv_string(k),
				    jv_string_sized(eq + 1,
				    (int)(n - (size_t)(eq - s) - 1)));
		}
		s += n;
		if (*s == '&')
			s++;
	}
	d = jv_object_set(d, jv_string("headers"), h);
	d = jv_object_set(d, jv_string("query"), q);
	return jv_object_set(d, jv_string("body"), body);
}

/* The definition's input for the job of row (borrowed). */
static jv
job_input(jv row)
{
	jv job = jv_object(), in = jv_object();
	static const char *const keys[] = { "id", "media_type",
	    "provider_job_id", "provider_state", "attempts", NULL };
	int i;

	for (i = 0; keys[i]; i++) {
		jv v = jv_object_get(jv_copy(row), jv_string(keys[i]));

		job = jv_object_set(job, jv_string(keys[i]),
		    jv_is_valid(v) ? v : jv_null());
	}
	in = jv_object_set(in, jv_string("request"),
	    jv_object_get(jv_copy(row), jv_string("request")));
	return jv_object_set(in, jv_string("job"), job);
}

/*
 * The jobs of a batch ($1: [{"i", "p": provider, "k": its job id}]),
 * each row locked, in one order whatever the batch's (two receivers
 * never wait on each other in a cycle).
 */
static const char find_sql[] =
    "SELECT jsonb_build_object('i', k.i, 'row', r.row)"
    " FROM (SELECT * FROM jsonb_to_recordset($1::jsonb)"
    "  AS x(i int, p text, k text) ORDER BY x.p, x.k, x.i) k"
    " CROSS JOIN LATERAL (SELECT to_jsonb(j) AS row"
    "  FROM app.generation_jobs j"
    "  WHERE j.provider_id = k.p AND j.provider_job_id = k.k"
    "  ORDER BY j.created_at DESC LIMIT 1 FOR UPDATE) r";

/*
 * The deliveries of a batch ($1: [{"i", "p", "w": delivery id, "j": job,
 * "o": outcome or null, "c": completes}]), each job's worker woken (sent
 * at commit, when the rows are there).  Returns the ones recorded: a
 * delivery id already there (or twice in the batch) is a replay.
 */
static const char record_sql[] =
    "WITH v AS (SELECT * FROM jsonb_to_recordset($1::jsonb)"
    "  AS x(i int, p text, w text, j uuid, o jsonb, c boolean)),"
    " d AS (INSERT INTO app.webhook_deliveries AS d (provider_id,"
    "  webhook_id, job_id, outcome, polls_saved)"
    " SELECT v.p, v.w, v.j, v.o, CASE WHEN v.c AND j.started_at IS"
    "  NOT NULL AND j.poll_interval_ms > 0 THEN greatest(0, floor("
    "  extract(epoch FROM now() - j.started_at) * 1000 /"
    "  j.poll_interval_ms)::int - j.attempts) ELSE 0 END"
    " FROM v JOIN app.generation_jobs j ON j.id = v.j ORDER BY v.i"
    " ON CONFLICT DO NOTHING"
    " RETURNING d.provider_id, d.webhook_id, d.job_id, d.polls_saved),"
    " n AS (SELECT pg_notify('" MI_WEBHOOK_CHANNEL "', d.job_id::text)"
    "  FROM d)"
    " SELECT jsonb_build_object('p', d.provider_id, 'w', d.webhook_id,"
    "  's', d.polls_saved) FROM d, (SELECT count(*) FROM n) x";

static int
final_status(const char *st)
{
	return strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
	    strcmp(st, "timed_out") == 0;
}

/*
 * In the transaction, with the job's row (null: none; borrowed): checks
 * it against the URL and makes the outcome.  Returns the delivery's entry
 * for record_sql, or null with out->result set to a refusal.  d is
 * consumed.
 */
static jv
check(struct mi_provider *p, jv row, jv d, const char *wid, int signed_body,
    int i, const char *provider, struct mi_webhook_out *out)
{
	const char *id = NULL, *tenant = NULL, *st = NULL, *want = NULL;
	struct mi_err jerr = MI_ERR_INIT;
	jv q, outcome = jv_null(), fin, e;
	int ok;

	if (jv_get_kind(row) != JV_KIND_OBJECT ||
	    mi_json_str(row, "id", &id, 1, NULL) != 1 ||
	    mi_json_str(row, "tenant_id", &tenant, 1, NULL) != 1 ||
	    mi_json_str(row, "status", &st, 1, NULL) != 1) {
		out->result = MI_HOOK_UNKNOWN_JOB;
		jv_free(d);
		return jv_null();
	}
	snprintf(out->job_id, sizeof(out->job_id), "%s", id);
	q = jv_object_get(jv_copy(d), jv_string("query"));
	ok = 0;
	if (mi_json_str(q, "job", &want, 0, NULL) == 1 &&
	    strcmp(want, id) != 0)
		out->result = MI_HOOK_UNKNOWN_JOB;
	else if (mi_json_str(q, "tenant", &want, 0, NULL) == 1 &&
	    strcmp(want, tenant) != 0)
		out->result = MI_HOOK_TENANT;
	else if (final_status(st))
		out->result = MI_HOOK_IGNORED;
	else
		ok = 1;
	jv_free(q);
	if (!ok) {
		jv_free(d);
		return jv_null();
	}
	if (signed_body) {
		fin = job_input(row);
		fin = jv_object_set(fin, jv_string("delivery"), jv_copy(d));
		outcome = mi_provider_call(p, "webhook", fin, &jerr);
		if (!jv_is_valid(outcome) ||
		    jv_get_kind(outcome) != JV_KIND_OBJECT ||
		    mi_json_str(outcome, "status", &st, 0, NULL) != 1 ||
		    strcmp(st, "poll") == 0) {
			/* What the definition cannot read, a poll can. */
			jv_free(outcome);
			outcome = jv_null();
		}
	} else {
		/*
		 * Nobody signed the body: nothing it says is taken, but the
		 * definition may tell a progress note (not worth a poll; the
		 * job is polled at its interval all the same) from the news
		 * of an end, which a poll now confirms.
		 */
		fin = job_input(row);
		fin = jv_object_set(fin, jv_string("delivery"), jv_copy(d));
		outcome = mi_provider_call(p, "webhook", fin, &jerr);
		ok = jv_get_kind(outcome) == JV_KIND_OBJECT &&
		    mi_json_str(outcome, "status", &st, 0, NULL) == 1 &&
		    strcmp(st, "skip") == 0;
		jv_free(outcome);
		outcome = jv_null();
		if (ok) {
			out->result = MI_HOOK_PROGRESS;
			jv_free(d);
			return jv_null();
		}
	}
	jv_free(d);
	st = NULL;
	if (jv_get_kind(outcome) == JV_KIND_OBJECT &&
	    mi_json_str(outcome, "status", &st, 0, NULL) == 1)
		snprintf(out->status, sizeof(out->status), "%s", st);
	out->result = jv_get_kind(outcome) == JV_KIND_NULL ? MI_HOOK_HINT :
	    MI_HOOK_ACCEPTED;
	e = jv_object();
	e = jv_object_set(e, jv_string("i"), jv_number(i));
	e = jv_object_set(e, jv_string("p"), jv_string(provider));
	e = jv_object_set(e, jv_string("w"), jv_string(wid));
	e = jv_object_set(e, jv_string("j"), jv_string(id));
	e = jv_object_set(e, jv_string("c"),
	    jv_bool(st && strcmp(st, "completed") == 0));
	return jv_object_set(e, jv_string("o"), outcome);
}

/* A delivery verified and parsed, waiting for its transaction. */
struct prep {
	struct mi_provider *p;
	jv d;			/* the delivery as the definition sees it */
	jv job;			/* the provider's job id (a string) */
	char wid[256];		/* the delivery id */
	int signed_body;
	int ready;		/* 1: to be applied */
};

/*
 * Everything before the database: provider and scheme, signature and
 * timestamp, the body, the provider's job id.  Sets pr->ready, or
 * out->result to a refusal.
 */
static void
prepare(const struct mi_webhook_in *in, struct mi_webhook_out *out,
    struct prep *pr)
{
	struct mi_err perr = MI_ERR_INIT;
	const char *scheme = NULL, *pjid;
	struct mi_provider *p;
	char hexd[65];
	int r;
	jv meta, hooks, body, d, job;

	memset(out, 0, sizeof(*out));
	memset(pr, 0, sizeof(*pr));
	pr->d = jv_null();
	pr->job = jv_null();
	if ((p = mi_provider_get(in->provider_id, &perr)) == NULL) {
		out->result = MI_HOOK_UNCONFIGURED;
		return;
	}
	meta = mi_provider_meta(p);
	hooks = jv_object_get(meta, jv_string("webhooks"));
	if (jv_get_kind(hooks) != JV_KIND_OBJECT ||
	    mi_json_str(hooks, "scheme", &scheme, 1, NULL) != 1) {
		jv_free(hooks);
		out->result = MI_HOOK_UNCONFIGURED;
		return;
	}
	pr->signed_body = strcmp(scheme, "standard-webhooks") == 0 ||
	    strcmp(scheme, "ed25519-jwks") == 0;
	if (strcmp(scheme, "standard-webhooks") == 0)
		r = verify_standard(in, hooks, pr->wid, sizeof(pr->wid));
	else if (strcmp(scheme, "ed25519-jwks") == 0)
		r = verify_ed25519(in, hooks, pr->wid, sizeof(pr->wid));
	else if (strcmp(scheme, "hmac") == 0 || strcmp(scheme, "none") == 0)
		r = MI_HOOK_ACCEPTED;	/* after the job id is known */
	else
		r = MI_HOOK_UNCONFIGURED;
	if (r != MI_HOOK_ACCEPTED) {
		jv_free(hooks);
		out->result = r;
		return;
	}
	/* jq's parser is never handed bytes that are not well-formed. */
	if (!mi_json_wellformed(in->body, in->body_len)) {
		jv_free(hooks);
		out->result = MI_HOOK_BAD_BODY;
		return;
	}
	body = jv_parse_sized(in->body, (int)in->body_len);
	if (!jv_is_valid(body)) {
		jv_free(body);
		jv_free(hooks);
		out->result = MI_HOOK_BAD_BODY;
		return;
	}
	d = delivery(in, body);
	job = mi_provider_call(p, "webhook_job", jv_object_set(jv_object(),
	    jv_string("delivery"), jv_copy(d)), &perr);
	if (jv_get_kind(job) != JV_KIND_STRING ||
	    jv_string_length_bytes(jv_copy(job)) == 0 ||
	    jv_string_length_bytes(jv_copy(job)) > 255) {
		jv_free(job);
		jv_free(d);
		jv_free(hooks);
		out->result = MI_HOOK_UNKNOWN_JOB;
		return;
	}
	pjid = jv_string_value(job);
	if (strcmp(scheme, "hmac") == 0)
		r = verify_hmac(in, hooks, pjid, pr->wid, sizeof(pr->wid));
	else if (strcmp(scheme, "none") == 0) {
		/* Nothing to tell copies apart by but their bytes. */
		mi_sha256_hex(in->body, in->body_len, hexd);
		snprintf(pr->wid, sizeof(pr->wid), "sha256:%s", hexd);
	}
	jv_free(hooks);
	if (r != MI_HOOK_ACCEPTED) {
		jv_free(job);
		jv_free(d);
		out->result = r;
		return;
	}
	pr->p = p;
	pr->d = d;
	pr->job = job;
	pr->ready = 1;
}

/* The rows of find_sql by the batch's index i (null: no such job). */
static jv *
find_jobs(struct mi_db *db, const struct mi_webhook_in *in,
    const struct prep *pr, size_t n, struct mi_err *err)
{
	jv keys = jv_array(), rows, *byi;
	const char *params[1];
	char *text;
	size_t i;
	int k, m;

	for (i = 0; i < n; i++)
		if (pr[i].ready)
			keys = jv_array_append(keys, jv_object_set(
			    jv_object_set(jv_object_set(jv_object(),
			    jv_string("i"), jv_number((double)i)),
			    jv_string("p"), jv_string(in[i].provider_id)),
			    jv_string("k"), jv_copy(pr[i].job)));
	text = mi_json_dump(keys);
	jv_free(keys);
	if (text == NULL || (byi = calloc(n, sizeof(*byi))) == NULL) {
		free(text);
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	params[0] = text;
	rows = mi_db_json(db, find_sql, 1, params, err);
	free(text);
	if (!jv_is_valid(rows)) {
		free(byi);
		return NULL;
	}
	for (i = 0; i < n; i++)
		byi[i] = jv_null();
	m = jv_array_length(jv_copy(rows));
	for (k = 0; k < m; k++) {
		jv e = jv_array_get(jv_copy(rows), k);
		double d = -1;

		if (mi_json_num(e, "i", &d, 0, NULL) == 1 && d >= 0 &&
		    (size_t)d < n) {
			jv_free(byi[(size_t)d]);
			byi[(size_t)d] = jv_object_get(jv_copy(e),
			    jv_string("row"));
		}
		jv_free(e);
	}
	jv_free(rows);
	return byi;
}

/* Records the checked deliveries (entries borrowed); those not recorded
 * are replays. */
static int
record(struct mi_db *db, const struct mi_webhook_in *in, const struct prep *pr,
    jv entries, struct mi_webhook_out *out, size_t n, struct mi_err *err)
{
	const char *params[1];
	char *text = mi_json_dump(entries);
	int *taken, k, m;
	size_t i;
	jv rows;

	if (text == NULL || (taken = calloc(n, sizeof(*taken))) == NULL) {
		free(text);
		return mi_err_set(err, EX_OSERR, "out of memory");
	}
	params[0] = text;
	rows = mi_db_json(db, record_sql, 1, params, err);
	free(text);
	if (!jv_is_valid(rows)) {
		free(taken);
		return -1;
	}
	/* Each recorded id goes to the first delivery of the batch that has
	 * it; any other is a replay. */
	m = jv_array_length(jv_copy(rows));
	for (k = 0; k < m; k++) {
		jv e = jv_array_get(jv_copy(rows), k);
		const char *p = NULL, *w = NULL;
		double saved = 0;

		mi_json_str(e, "p", &p, 0, NULL);
		mi_json_str(e, "w", &w, 0, NULL);
		mi_json_num(e, "s", &saved, 0, NULL);
		for (i = 0; p && w && i < n; i++)
			if (pr[i].ready && !taken[i] &&
			    (out[i].result == MI_HOOK_ACCEPTED ||
			    out[i].result == MI_HOOK_HINT) &&
			    strcmp(in[i].provider_id, p) == 0 &&
			    strcmp(pr[i].wid, w) == 0) {
				taken[i] = 1;
				out[i].polls_saved = (int)saved;
				break;
			}
		jv_free(e);
	}
	jv_free(rows);
	for (i = 0; i < n; i++)
		if (pr[i].ready && !taken[i] &&
		    (out[i].result == MI_HOOK_ACCEPTED ||
		    out[i].result == MI_HOOK_HINT))
			out[i].result = MI_HOOK_REPLAY;
	free(taken);
	return 0;
}

int
mi_webhook_handle_batch(struct mi_db *db, const struct mi_webhook_in *in,
    struct mi_webhook_out *out, size_t n, struct mi_err *err)
{
	struct prep one, *pr = n == 1 ? &one : calloc(n, sizeof(*pr));
	jv *rows = NULL, entries = jv_array();
	size_t i, ready = 0, nrec = 0;
	int failed = 0;

	if (pr == NULL) {
		jv_free(entries);
		return mi_err_set(err, EX_OSERR, "out of memory");
	}
	for (i = 0; i < n; i++) {
		prepare(&in[i], &out[i], &pr[i]);
		out[i].in_tx = pr[i].ready;
		ready += (size_t)pr[i].ready;
	}
	/*
	 * One transaction for all, in four statements whatever their
	 * number: the jobs are found and locked together, checked and read
	 * one by one here, and the deliveries recorded together with their
	 * NOTIFYs.  A refusal writes nothing.
	 */
	if (ready > 0 && (mi_db_begin(db, err) == -1 ||
	    (rows = find_jobs(db, in, pr, n, err)) == NULL))
		failed = 1;
	for (i = 0; i < n; i++) {
		if (!pr[i].ready)
			continue;
		if (!failed) {
			jv e = check(pr[i].p, rows[i], pr[i].d, pr[i].wid,
			    pr[i].signed_body, (int)i, in[i].provider_id,
			    &out[i]);

			if (jv_get_kind(e) == JV_KIND_OBJECT) {
				entries = jv_array_append(entries, e);
				nrec++;
			} else
				jv_free(e);
		} else
			jv_free(pr[i].d);
		jv_free(pr[i].job);
	}
	if (!failed && nrec > 0 && record(db, in, pr, entries, out, n,
	    err) == -1)
		failed = 1;
	jv_free(entries);
	if (ready > 0 && !failed && mi_db_commit(db, err) == -1)
		failed = 1;
	if (failed) {
		if (ready > 0)
			mi_db_rollback(db);
		for (i = 0; i < n; i++)
			if (pr[i].ready) {
				out[i].unavailable = 1;
				out[i].polls_saved = 0;
			}
	}
	if (rows != NULL) {
		for (i = 0; i < n; i++)
			jv_free(rows[i]);
		free(rows);
	}
	if (pr != &one)
		free(pr);
	return failed ? -1 : 0;
}

int
mi_webhook_handle(struct mi_db *db, const struct mi_webhook_in *in,
    struct mi_webhook_out *out, struct mi_err *err)
{
	return mi_webhook_handle_batch(db, in, out, 1, err);
}

jv
mi_webhook_take(struct mi_db *db, jv ids, struct mi_err *err)
{
	struct mi_buf b = MI_BUF_INIT;
	const char *params[1];
	int i, n = jv_array_length(jv_copy(ids));
	jv rows;

	mi_buf_adds(&b, "{");
	for (i = 0; i < n; i++) {
		jv id = jv_array_get(jv_copy(ids), i);

		if (jv_get_kind(id) == JV_KIND_STRING &&
		    mi_name_uuid_ok(jv_string_value(id)))
			mi_buf_addf(&b, "%s%s", b.len > 1 ? "," : "",
			    jv_string_value(id));
		jv_free(id);
	}
	jv_free(ids);
	if (mi_buf_adds(&b, "}") == -1) {
		mi_buf_release(&b);
		mi_err_set(err, EX_OSERR, "out of memory");
		return jv_invalid();
	}
	params[0] = b.buf;
	rows = mi_db_json(db, "WITH t AS (UPDATE app.webhook_deliveries d"
	    " SET applied_at = clock_timestamp()"
	    " WHERE d.job_id = ANY($1::uuid[]) AND d.applied_at IS NULL"
	    " RETURNING d.job_id, d.outcome, d.received_at)"
	    " SELECT jsonb_build_object('job_id', t.job_id, 'outcome',"
	    "  t.outcome) FROM t ORDER BY t.received_at", 1, params, err);
	mi_buf_release(&b);
	return rows;
}

jv
mi_webhook_stored(struct mi_db *db, struct mi_err *err)
{
	return mi_db_json(db, "WITH t AS (UPDATE app.webhook_deliveries d"
	    " SET stored_ms = greatest(0, (extract(epoch FROM j.updated_at -"
	    "  d.received_at) * 1000)::int)"
	    " FROM app.generation_jobs j"
	    " WHERE j.id = d.job_id AND j.artifact_id IS NOT NULL"
	    "  AND d.stored_ms IS NULL AND d.outcome->>'status' = 'completed'"
	    "  AND d.received_at > now() - interval '1 hour'"
	    " RETURNING d.stored_ms, d.polls_saved)"
	    " SELECT jsonb_build_object('stored_ms', t.stored_ms,"
	    "  'polls_saved', t.polls_saved) FROM t", 0, NULL, err);
}

int
mi_webhook_prune(struct mi_db *db, long keep_s, struct mi_err *err)
{
	char s[32];
	const char *params[1] = { s };

	snprintf(s, sizeof(s), "%ld", keep_s);
	return mi_db_exec(db, "DELETE FROM app.webhook_deliveries"
	    " WHERE received_at < now() - $1::int * interval '1 s'", 1,
	    params, NULL, err);
}

int
mi_webhook_expected(jv meta, int *per_request)
{
	const char *base = getenv("MI_WEBHOOK_URL"), *id = NULL;
	const char *scheme = "", *senv = NULL, *v;
	jv hooks = jv_object_get(jv_copy(meta), jv_string("webhooks"));
	int per = 0, ok = 0;
	char name[160];

	if (base == NULL || *base == '\0')
		base = getenv("MI_PUBLIC_URL");
	if (jv_get_kind(hooks) == JV_KIND_OBJECT && base && *base &&
	    mi_json_str(meta, "id", &id, 1, NULL) == 1) {
		mi_json_bool(hooks, "per_request", &per, 0, NULL);
		mi_json_str(hooks, "scheme", &scheme, 0, NULL);
		mi_json_str(hooks, "secret_env", &senv, 0, NULL);
		env_name(id, "WEBHOOK_SECRET", name, sizeof(name));
		v = getenv(senv ? senv : name);
		/* Only a delivery mi-hook can verify is worth waiting for;
		 * an unsigned one is a hint, and may never come. */
		if (strcmp(scheme, "ed25519-jwks") == 0)
			ok = 1;
		else if (strcmp(scheme, "standard-webhooks") == 0 ||
		    strcmp(scheme, "hmac") == 0)
			ok = v != NULL && *v != '\0';
	}
	jv_free(hooks);
	jv_free(meta);
	if (per_request)
		*per_request = ok && per;
	return ok;
}

char *
mi_webhook_url(jv meta, const char *job_id, const char *tenant)
{
	const char *base = getenv("MI_WEBHOOK_URL"), *id = NULL;
	struct mi_buf b = MI_BUF_INIT;
	int per = 0;
	size_t n;

	if (base == NULL || *base == '\0')
		base = getenv("MI_PUBLIC_URL");
	if (!mi_webhook_expected(jv_copy(meta), &per) || !per ||
	    mi_json_str(meta, "id", &id, 1, NULL) != 1) {
		jv_free(meta);
		return NULL;
	}
	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	mi_buf_addf(&b, "%.*s/hooks/%s?job=%s&tenant=%s", (int)n, base, id,
	    job_id, tenant);
	jv_free(meta);
	return mi_buf_detach(&b, NULL);
}
