/*
 * jwt.c - JWT verification over OpenSSL EVP.
 *
 * The JSON of a token is read by the small reader below, not by jq: it
 * validates a whole document (RFC 8259, nesting at most JS_DEPTH deep)
 * before anything is looked up, allocates nothing, and refuses what a
 * lenient parser would guess at (duplicated members that matter, lone
 * surrogates, control characters, a NUL in a string that is read).  The
 * header is read before the signature is checked, so it is also capped at
 * MI_JWT_HEADER_MAX characters; the claims only after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jwt.h"
#include "banned.h"

#define JS_DEPTH 16
#define KEYFILE_MAX (1 << 20)
#define MAX_TRIES 8		/* keys tried for a token without "kid" */

enum { K_RSA, K_EC };

struct key {
	int type;
	char kid[128];		/* "" matches any kid (a PEM key) */
	char alg[16];		/* "" allows any of its type */
	EVP_PKEY *pk;
};

struct mi_jwt {
	char *secret;
	size_t secret_len;
	struct key *keys;
	size_t nkeys;
	char *issuer;
	char *audience;
	char *claims;
	long long leeway;
};

/* The strict JSON reader.  Every function takes [p, e). */

static const char *
js_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Past the string that starts at p (a '"'), or NULL. */
static const char *
js_str_end(const char *p, const char *e)
{
	int i;

	for (p++; p < e; p++) {
		if (*p == '"')
			return p + 1;
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p != '\\')
			continue;
		if (++p >= e)
			return NULL;
		switch (*p) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n':
		case 'r': case 't':
			break;
		case 'u':
			for (i = 1; i <= 4; i++)
				if (p + i >= e || hexval(p[i]) < 0)
					return NULL;
			p += 4;
			break;
		default:
			return NULL;
		}
	}
	return NULL;
}

static const char *
js_digits(const char *p, const char *e)
{
	const char *s = p;

	while (p < e && *p >= '0' && *p <= '9')
		p++;
	return p > s ? p : NULL;
}

static const char *
js_num_end(const char *p, const char *e)
{
	if (p < e && *p == '-')
		p++;
	if (p < e && *p == '0')
		p++;
	else if (p >= e || *p < '1' || *p > '9' || (p = js_digits(p, e)) ==
	    NULL)
		return NULL;
	if (p < e && *p == '.' && (p = js_digits(p + 1, e)) == NULL)
		return NULL;
	if (p < e && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if ((p = js_digits(p, e)) == NULL)
			return NULL;
	}
	return p;
}

/* Past the value that starts at p, or NULL when it is not valid JSON. */
static const char *
js_value_end(const char *p, const char *e, int depth)
{
	char close;

	if (p >= e)
		return NULL;
	switch (*p) {
	case '"':
		return js_str_end(p, e);
	case '{':
	case '[':
		if (depth >= JS_DEPTH)
			return NULL;
		close = *p == '{' ? '}' : ']';
		p = js_ws(p + 1, e);
		if (p < e && *p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if (p >= e || *p != '"' ||
				    (p = js_str_end(p, e)) == NULL)
					return NULL;
				p = js_ws(p, e);
				if (p >= e || *p != ':')
					return NULL;
				p = js_ws(p + 1, e);
			}
			if ((p = js_value_end(p, e, depth + 1)) == NULL)
				return NULL;
			p = js_ws(p, e);
			if (p >= e)
				return NULL;
			if (*p == close)
				return p + 1;
			if (*p != ',')
				return NULL;
			p = js_ws(p + 1, e);
		}
	case 't':
		return e - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
	case 'f':
		return e - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
	case 'n':
		return e - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
	default:
		return js_num_end(p, e);
	}
}

/* 0 when [p, e) is one JSON object and nothing else but white space. */
static int
js_object_doc(const char *p, const char *e)
{
	p = js_ws(p, e);
	if (p >= e || *p != '{' || (p = js_value_end(p, e, 0)) == NULL)
		return -1;
	return js_ws(p, e) == e ? 0 : -1;
}

static char *
put_utf8(char *o, unsigned long c)
{
	if (c < 0x80)
		*o++ = (char)c;
	else if (c < 0x800) {
		*o++ = (char)(0xC0 | (c >> 6));
		*o++ = (char)(0x80 | (c & 0x3F));
	} else if (c < 0x10000) {
		*o++ = (char)(0xE0 | (c >> 12));
		*o++ = (char)(0x80 | ((c >> 6) & 0x3F));
		*o++ = (char)(0x80 | (c & 0x3F));
	} else {
		*o++ = (char)(0xF0 | (c >> 18));
		*o++ = (char)(0x80 | ((c >> 12) & 0x3F));
		*o++ = (char)(0x80 | ((c >> 6) & 0x3F));
		*o++ = (char)(0x80 | (c & 0x3F));
	}
	return o;
}

static unsigned long
hex4(const char *p)
{
	return (unsigned long)(hexval(p[0]) << 12 | hexval(p[1]) << 8 |
	    hexval(p[2]) << 4 | hexval(p[3]));
}

/*
 * Decodes the (valid) string at p into out[outsz], NUL-terminated.
 * Returns its length; -1 when it holds a NUL or a lone surrogate, or does
 * not fit.
 */
static long
js_str(const char *p, char *out, size_t outsz)
{
	char *o = out, *end = out + outsz;
	unsigned long c, lo;

	for (p++; *p != '"'; p++) {
		if (end - o < 5)
			return -1;
		if (*p != '\\') {
			*o++ = *p;
			continue;
		}
		switch (*++p) {
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			c = hex4(p + 1);
			p += 4;
			if (c == 0 || (c >= 0xDC00 && c <= 0xDFFF))
				return -1;
			if (c >= 0xD800 && c <= 0xDBFF) {
				if (p[1] != '\\' || p[2] != 'u')
					return -1;
				lo = hex4(p + 3);
				if (lo < 0xDC00 || lo > 0xDFFF)
					return -1;
				c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
				p += 6;
			}
			o = put_utf8(o, c);
			break;
		default: *o++ = *p; break;	/* " \ / */
		}
	}
	*o = '\0';
	return (long)(o - out);
}

/*
 * Finds member key of the (valid) object at p.  Returns 1 and sets *v to
 * its value, 0 when absent, -1 when the key is there more than once.
 */
static int
js_member(const char *p, const char *e, const char *key, const char **v)
{
	char k[256];
	const char *vs;
	int found = 0;
	long n;

	p = js_ws(p + 1, e);
	if (*p == '}')
		return 0;
	for (;;) {
		n = js_str(p, k, sizeof(k));
		p = js_ws(js_str_end(p, e), e);
		vs = js_ws(p + 1, e);
		p = js_ws(js_value_end(vs, e, 0), e);
		if (n >= 0 && strcmp(k, key) == 0 && (size_t)n == strlen(key)) {
			if (found)
				return -1;
			found = 1;
			*v = vs;
		}
		if (*p == '}')
			return found;
		p = js_ws(p + 1, e);
	}
}

/* A string member into out: 1, 0 absent, -1 not a usable string. */
static int
js_get_str(const char *obj, const char *e, const char *key, char *out,
    size_t outsz)
{
	const char *v;
	int r = js_member(obj, e, key, &v);

	if (r <= 0)
		return r;
	if (*v != '"' || js_str(v, out, outsz) < 0)
		return -1;
	return 1;
}

/* A number member: 1, 0 absent or null, -1 anything else. */
static int
js_get_num(const char *obj, const char *e, const char *key, double *out)
{
	const char *v, *end;
	char buf[64];
	int r = js_member(obj, e, key, &v);

	if (r <= 0)
		return r;
	if (*v == 'n')
		return 0;
	if ((*v != '-' && (*v < '0' || *v > '9')) ||
	    (end = js_num_end(v, e)) == NULL ||
	    (size_t)(end - v) >= sizeof(buf))
		return -1;
	memcpy(buf, v, (size_t)(end - v));
	buf[end - v] = '\0';
	*out = strtod(buf, NULL);
	return 1;
}

/* Base64url. */

static int
b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict base64url without padding into out (room for len*3/4 + 1 bytes);
 * returns the decoded length or -1.
 */
static long
b64url_decode(const char *s, size_t len, unsigned char *out)
{
	unsigned long acc = 0;
	size_t i;
	long n = 0;
	int bits = 0, v;

	if (len % 4 == 1)
		return -1;
	for (i = 0; i < len; i++) {
		if ((v = b64url_val((unsigned char)s[i])) < 0)
			return -1;
		acc = (acc << 6) | (unsigned long)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
			acc &= (1UL << bits) - 1;
		}
	}
	if (acc != 0)
		return -1;	/* non-canonical trailing bits */
	return n;
}

/* Keys. */

static char *
dup_or_null(const char *s)
{
	return s != NULL && *s ? strdup(s) : NULL;
}

static int
key_usable(EVP_PKEY *k, int *type)
{
	char group[32];
	size_t n;

	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA &&
	    EVP_PKEY_get_bits(k) >= 2048) {
		*type = K_RSA;
		return 1;
	}
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC &&
	    EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME,
	    group, sizeof(group), &n) == 1 &&
	    strcmp(group, "prime256v1") == 0) {
		*type = K_EC;
		return 1;
	}
	return 0;
}

static int
add_key(struct mi_jwt *j, EVP_PKEY *pk, int type, const char *kid,
    const char *alg)
{
	struct key *grown = realloc(j->keys, (j->nkeys + 1) * sizeof(*grown));

	if (grown == NULL) {
		EVP_PKEY_free(pk);
		return -1;
	}
	j->keys = grown;
	grown += j->nkeys++;
	memset(grown, 0, sizeof(*grown));
	grown->type = type;
	grown->pk = pk;
	snprintf(grown->kid, sizeof(grown->kid), "%s", kid);
	snprintf(grown->alg, sizeof(grown->alg), "%s", alg);
	return 0;
}

/* A base64url member of a JWK as bytes; its length or -1. */
static long
jwk_bytes(const char *obj, const char *e, const char *name,
    unsigned char *out, size_t outsz)
{
	char s[1400];

	if (js_get_str(obj, e, name, s, sizeof(s)) != 1 ||
	    strlen(s) * 3 / 4 + 1 > outsz)
		return -1;
	return b64url_decode(s, strlen(s), out);
}

static EVP_PKEY *
jwk_rsa(const char *obj, const char *e)
{
	unsigned char n[1040], ex[16];
	long nl, el;
	OSSL_PARAM_BLD *b;
	OSSL_PARAM *params = NULL;
	BIGNUM *bn = NULL, *be = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;

	if ((nl = jwk_bytes(obj, e, "n", n, sizeof(n))) <= 0 ||
	    (el = jwk_bytes(obj, e, "e", ex, sizeof(ex))) <= 0)
		return NULL;
	if ((b = OSSL_PARAM_BLD_new()) == NULL)
		return NULL;
	if ((bn = BN_bin2bn(n, (int)nl, NULL)) != NULL &&
	    (be = BN_bin2bn(ex, (int)el, NULL)) != NULL &&
	    OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
	    OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be) == 1 &&
	    (params = OSSL_PARAM_BLD_to_param(b)) != NULL &&
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) != NULL &&
	    EVP_PKEY_fromdata_init(ctx) == 1 &&
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pk = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(b);
	BN_free(bn);
	BN_free(be);
	return pk;
}

static EVP_PKEY *
jwk_ec(const char *obj, const char *e)
{
	unsigned char pt[65], x[40], y[40];
	char crv[16];
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx;
	EVP_PKEY *pk = NULL;

	if (js_get_str(obj, e, "crv", crv, sizeof(crv)) != 1 ||
	    strcmp(crv, "P-256") != 0 ||
	    jwk_bytes(obj, e, "x", x, sizeof(x)) != 32 ||
	    jwk_bytes(obj, e, "y", y, sizeof(y)) != 32)
		return NULL;
	pt[0] = 0x04;
	memcpy(pt + 1, x, 32);
	memcpy(pt + 33, y, 32);
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0);
	params[1] = OSSL_PARAM_construct_octet_string(
	    OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
	params[2] = OSSL_PARAM_construct_end();
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL)
		return NULL;
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pk = NULL;
	EVP_PKEY_CTX_free(ctx);
	return pk;
}

/* The keys of a JWKS document: {"keys": [{...}, ...]}. */
static int
load_jwks(struct mi_jwt *j, const char *file, const char *p, const char *e,
    struct mi_err *err)
{
	char kty[16], kid[128], alg[16], use[16];
	const char *v, *end;
	EVP_PKEY *pk;
	int i = 0, type;

	if (js_object_doc(p, e) == -1)
		return mi_err_set(err, EX_CONFIG, "'%s' is not valid JSON",
		    file);
	p = js_ws(p, e);
	if (js_member(p, e, "keys", &v) != 1 || *v != '[')
		return mi_err_set(err, EX_CONFIG, "'%s' has no \"keys\" array",
		    file);
	for (v = js_ws(v + 1, e); *v != ']'; v = js_ws(v + 1, e), i++) {
		end = js_value_end(v, e, 0);
		if (*v != '{')
			return mi_err_set(err, EX_CONFIG, "'%s': key %d is not "
			    "an object", file, i);
		if (js_get_str(v, e, "kty", kty, sizeof(kty)) != 1)
			return mi_err_set(err, EX_CONFIG, "'%s': key %d has "
			    "no \"kty\"", file, i);
		if (js_get_str(v, e, "kid", kid, sizeof(kid)) == -1 ||
		    js_get_str(v, e, "alg", alg, sizeof(alg)) == -1 ||
		    js_get_str(v, e, "use", use, sizeof(use)) == -1)
			return mi_err_set(err, EX_CONFIG, "'%s': key %d has a "
			    "bad \"kid\", \"alg\" or \"use\"", file, i);
		if (js_get_str(v, e, "kid", kid, sizeof(kid)) == 0)
			kid[0] = '\0';
		if (js_get_str(v, e, "alg", alg, sizeof(alg)) == 0)
			alg[0] = '\0';
		if (js_get_str(v, e, "use", use, sizeof(use)) == 1 &&
		    strcmp(use, "sig") != 0)
			goto next;	/* an encryption key */
		if (strcmp(kty, "RSA") == 0)
			pk = jwk_rsa(v, e);
		else if (strcmp(kty, "EC") == 0)
			pk = jwk_ec(v, e);
		else
			goto next;	/* "oct", "OKP": not for us */
		if (pk == NULL || !key_usable(pk, &type)) {
			EVP_PKEY_free(pk);
			return mi_err_set(err, EX_CONFIG, "'%s': key %d ('%s') "
			    "is not an RSA key of 2048 bits or more nor a "
			    "P-256 key", file, i, kid);
		}
		if (add_key(j, pk, type, kid, alg) == -1)
			return mi_err_set(err, EX_OSERR, "out of memory");
next:
		v = js_ws(end, e);
		if (*v == ']')
			break;
	}
	if (j->nkeys == 0)
		return mi_err_set(err, EX_CONFIG, "'%s' holds no RSA or P-256 "
		    "signing key", file);
	return 0;
}

static int
load_pem(struct mi_jwt *j, const char *file, const char *p, size_t n,
    struct mi_err *err)
{
	EVP_PKEY *k = NULL;
	X509 *cert;
	BIO *bio;
	int type;

	if ((bio = BIO_new_mem_buf(p, (int)n)) == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	if ((k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) == NULL) {
		/* A certificate holding the key will do as well. */
		(void)BIO_reset(bio);
		if ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
			k = X509_get_pubkey(cert);
			X509_free(cert);
		}
	}
	BIO_free(bio);
	if (k == NULL)
		return mi_err_set(err, EX_CONFIG, "'%s' holds no PEM public key "
		    "nor a JWKS", file);
	if (!key_usable(k, &type)) {
		EVP_PKEY_free(k);
		return mi_err_set(err, EX_CONFIG, "'%s' is not an RSA key of "
		    "2048 bits or more nor a P-256 key", file);
	}
	if (add_key(j, k, type, "", "") == -1)
		return mi_err_set(err, EX_OSERR, "out of memory");
	return 0;
}

static int
load_keys(struct mi_jwt *j, const char *file, struct mi_err *err)
{
	struct stat st;
	const char *p;
	char *buf;
	size_t n;
	FILE *fp;
	int r;

	if ((fp = fopen(file, "r")) == NULL)
		return mi_err_set_errno(err, EX_CONFIG, "unable to open '%s'",
		    file);
	if (fstat(fileno(fp), &st) == -1 || st.st_size > KEYFILE_MAX ||
	    (buf = malloc((size_t)st.st_size + 1)) == NULL) {
		fclose(fp);
		return mi_err_set(err, EX_CONFIG, "'%s' is not a key file",
		    file);
	}
	n = fread(buf, 1, (size_t)st.st_size, fp);
	fclose(fp);
	buf[n] = '\0';
	p = js_ws(buf, buf + n);
	if (p < buf + n && *p == '{')
		r = load_jwks(j, file, buf, buf + n, err);
	else
		r = load_pem(j, file, buf, n, err);
	free(buf);
	return r;
}

struct mi_jwt *
mi_jwt_new(const struct mi_jwt_opts *o, struct mi_err *err)
{
	struct mi_jwt *j;

	if ((o->secret == NULL || *o->secret == '\0') &&
	    (o->public_key_file == NULL || *o->public_key_file == '\0')) {
		mi_err_set(err, EX_CONFIG, "no JWT key configured");
		return NULL;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	if (o->secret != NULL && *o->secret) {
		j->secret = strdup(o->secret);
		j->secret_len = strlen(o->secret);
	}
	if (o->public_key_file != NULL && *o->public_key_file &&
	    load_keys(j, o->public_key_file, err) == -1) {
		mi_jwt_free(j);
		return NULL;
	}
	j->issuer = dup_or_null(o->issuer);
	j->audience = dup_or_null(o->audience);
	j->claims = strdup(o->tenant_claim && *o->tenant_claim ?
	    o->tenant_claim : "org_id,o.id");
	j->leeway = o->leeway_s < 0 ? 30 : o->leeway_s;
	if ((o->secret != NULL && *o->secret && j->secret == NULL) ||
	    j->claims == NULL) {
		mi_jwt_free(j);
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	return j;
}

void
mi_jwt_free(struct mi_jwt *j)
{
	size_t i;

	if (j == NULL)
		return;
	if (j->secret != NULL) {
		explicit_bzero(j->secret, j->secret_len);
		free(j->secret);
	}
	for (i = 0; i < j->nkeys; i++)
		EVP_PKEY_free(j->keys[i].pk);
	free(j->keys);
	free(j->issuer);
	free(j->audience);
	free(j->claims);
	free(j);
}

size_t
mi_jwt_nkeys(const struct mi_jwt *j)
{
	return j->nkeys;
}

/* Signatures. */

static int
verify_with(const struct key *k, const char *alg, const unsigned char *sig,
    size_t n, const char *msg, size_t msglen)
{
	unsigned char der[80], *d = der;
	EVP_PKEY_CTX *pctx = NULL;
	ECDSA_SIG *es = NULL;
	BIGNUM *r, *s;
	EVP_MD_CTX *ctx;
	int ok = 0, dl;

	if (strcmp(alg, "ES256") == 0) {
		/* JWS carries r || s; OpenSSL wants DER. */
		if (n != 64 || (es = ECDSA_SIG_new()) == NULL)
			return 0;
		r = BN_bin2bn(sig, 32, NULL);
		s = BN_bin2bn(sig + 32, 32, NULL);
		if (r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
			BN_free(r);
			BN_free(s);
			ECDSA_SIG_free(es);
			return 0;
		}
		dl = i2d_ECDSA_SIG(es, &d);
		ECDSA_SIG_free(es);
		if (dl <= 0)
			return 0;
		sig = der;
		n = (size_t)dl;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return 0;
	if (EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, k->pk) == 1 &&
	    (strcmp(alg, "PS256") != 0 ||
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) ==
	    1)))
		ok = EVP_DigestVerify(ctx, sig, n, (const unsigned char *)msg,
		    msglen) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

static int
check_sig(const struct mi_jwt *j, const char *alg, const char *kid,
    const char *signed_part, size_t signed_len, const char *sig64,
    size_t sig64_len, struct mi_err *err)
{
	unsigned char sig[1024], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	int type, tries = 0, known = 0;
	size_t i;
	long n;

	if (strcmp(alg, "none") == 0)
		return mi_err_set(err, EX_NOPERM, "alg none");
	if (strcmp(alg, "HS256") == 0 && j->secret != NULL)
		type = -1;
	else if ((strcmp(alg, "RS256") == 0 || strcmp(alg, "PS256") == 0))
		type = K_RSA;
	else if (strcmp(alg, "ES256") == 0)
		type = K_EC;
	else
		return mi_err_set(err, EX_NOPERM, "alg not accepted");
	if (sig64_len == 0 || sig64_len > sizeof(sig) * 4 / 3 ||
	    (n = b64url_decode(sig64, sig64_len, sig)) <= 0)
		return mi_err_set(err, EX_NOPERM, "bad signature");
	if (type == -1) {
		if (HMAC(EVP_sha256(), j->secret, (int)j->secret_len,
		    (const unsigned char *)signed_part, signed_len, mac,
		    &maclen) == NULL || (long)maclen != n ||
		    CRYPTO_memcmp(mac, sig, maclen) != 0)
			return mi_err_set(err, EX_NOPERM, "bad signature");
		return 0;
	}
	for (i = 0; i < j->nkeys && tries < MAX_TRIES; i++) {
		const struct key *k = &j->keys[i];

		if (k->type != type || (k->alg[0] && strcmp(k->alg, alg) != 0))
			continue;
		if (kid[0] && k->kid[0] && strcmp(kid, k->kid) != 0)
			continue;
		known = 1;
		tries++;
		if (verify_with(k, alg, sig, (size_t)n, signed_part,
		    signed_len))
			return 0;
	}
	if (!known)
		return mi_err_set(err, EX_NOPERM, kid[0] ? "unknown kid" :
		    "alg not accepted");
	return mi_err_set(err, EX_NOPERM, "bad signature");
}

/* Claims. */

static int
aud_ok(const char *c, const char *e, const char *want)
{
	char s[512];
	const char *v;

	if (js_member(c, e, "aud", &v) != 1)
		return 0;
	if (*v == '"')
		return js_str(v, s, sizeof(s)) >= 0 && strcmp(s, want) == 0;
	if (*v != '[')
		return 0;
	for (v = js_ws(v + 1, e); *v != ']';) {
		if (*v == '"' && js_str(v, s, sizeof(s)) >= 0 &&
		    strcmp(s, want) == 0)
			return 1;
		v = js_ws(js_value_end(v, e, 0), e);
		if (*v == ',')
			v = js_ws(v + 1, e);
	}
	return 0;
}

/*
 * The first claim path of the comma list that holds a string: 0, -1 when
 * none does, -2 when the first one that holds a string holds a NUL or is
 * too long.
 */
static int
tenant_claim(const struct mi_jwt *j, const char *c, const char *e,
    char *out, size_t outsz)
{
	const char *p = j->claims, *v;
	char key[256];
	size_t n, k, seg;

	while (*p) {
		n = strcspn(p, ",");
		v = c;
		for (k = 0; k < n && v != NULL && *v == '{';) {
			seg = strcspn(p + k, ".,");
			if (seg >= sizeof(key))
				seg = sizeof(key) - 1;
			memcpy(key, p + k, seg);
			key[seg] = '\0';
			if (js_member(v, e, key, &v) != 1)
				v = NULL;
			k += seg + (p[k + seg] == '.');
		}
		if (k >= n && v != NULL && *v == '"')
			return js_str(v, out, outsz) > 0 ? 0 : -2;
		p += n + (p[n] == ',');
	}
	return -1;
}

static int
check_claims(const struct mi_jwt *j, const char *c, const char *e,
    long long now, char *tenant, size_t tenantsz, long long *until,
    struct mi_err *err)
{
	char iss[512];
	double x, nbf;
	int k;

	if (js_object_doc(c, e) == -1)
		return mi_err_set(err, EX_NOPERM, "malformed claims");
	c = js_ws(c, e);
	if (js_get_num(c, e, "exp", &x) != 1)
		return mi_err_set(err, EX_NOPERM, "no exp");
	if ((double)now > x + (double)j->leeway)
		return mi_err_set(err, EX_NOPERM, "expired");
	if ((k = js_get_num(c, e, "nbf", &nbf)) == -1 ||
	    (k == 1 && (double)now + (double)j->leeway < nbf))
		return mi_err_set(err, EX_NOPERM, "not yet valid");
	if (j->issuer != NULL && (js_get_str(c, e, "iss", iss,
	    sizeof(iss)) != 1 || strcmp(iss, j->issuer) != 0))
		return mi_err_set(err, EX_NOPERM, "wrong issuer");
	if (j->audience != NULL && !aud_ok(c, e, j->audience))
		return mi_err_set(err, EX_NOPERM, "wrong audience");
	if ((k = tenant_claim(j, c, e, tenant, tenantsz)) == -1)
		return mi_err_set(err, EX_NOPERM, "no tenant claim");
	if (k == -2)
		return mi_err_set(err, EX_NOPERM, "bad tenant claim");
	*until = x > 9e18 ? (long long)9e18 : (long long)x + j->leeway;
	return 0;
}

int
mi_jwt_verify(const struct mi_jwt *j, const char *token, size_t len,
    long long now, char *tenant, size_t tenantsz, long long *until,
    struct mi_err *err)
{
	unsigned char hdr[MI_JWT_HEADER_MAX * 3 / 4 + 1];
	const char *d1, *d2, *h, *he;
	char alg[16], kid[128];
	unsigned char *claims;
	const char *v;
	long n;
	int r;

	if (len == 0 || len > MI_JWT_TOKEN_MAX ||
	    (d1 = memchr(token, '.', len)) == NULL ||
	    (d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token))) ==
	    NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
		return mi_err_set(err, EX_NOPERM, "malformed token");
	if ((size_t)(d1 - token) > MI_JWT_HEADER_MAX)
		return mi_err_set(err, EX_NOPERM, "header too long");
	if ((n = b64url_decode(token, (size_t)(d1 - token), hdr)) <= 0)
		return mi_err_set(err, EX_NOPERM, "malformed header");
	h = (const char *)hdr;
	he = h + n;
	if (js_object_doc(h, he) == -1)
		return mi_err_set(err, EX_NOPERM, "malformed header");
	h = js_ws(h, he);
	if ((r = js_get_str(h, he, "alg", alg, sizeof(alg))) == 0)
		return mi_err_set(err, EX_NOPERM, "no alg");
	if (r == -1)
		return mi_err_set(err, EX_NOPERM, "alg not accepted");
	if ((r = js_get_str(h, he, "kid", kid, sizeof(kid))) == -1)
		return mi_err_set(err, EX_NOPERM, "bad kid");
	if (r == 0)
		kid[0] = '\0';
	/* Extensions that must be understood: none are. */
	if (js_member(h, he, "crit", &v) != 0)
		return mi_err_set(err, EX_NOPERM, "crit header");
	if (check_sig(j, alg, kid, token, (size_t)(d2 - token), d2 + 1,
	    len - (size_t)(d2 + 1 - token), err) == -1)
		return -1;
	/* Signed by the issuer from here on. */
	if ((claims = malloc((size_t)(d2 - d1) * 3 / 4 + 1)) == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	if ((n = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), claims)) <= 0)
		r = mi_err_set(err, EX_NOPERM, "malformed claims");
	else
		r = check_claims(j, (const char *)claims,
		    (const char *)claims + n, now, tenant, tenantsz, until,
		    err);
	free(claims);
	return r;
}
