/*
 * jwt.c - JWT verification over OpenSSL EVP; claims parsed with jv.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "jwt.h"
#include "banned.h"

#define TOKEN_MAX 16384

struct mi_jwt {
	char *secret;
	size_t secret_len;
	EVP_PKEY *pkey;
	char *issuer;
	char *audience;
	char *claims;
	long long leeway;
};

static char *
dup_or_null(const char *s)
{
	return s != NULL && *s ? strdup(s) : NULL;
}

static EVP_PKEY *
load_key(const char *file, struct mi_err *err)
{
	EVP_PKEY *k = NULL;
	X509 *cert;
	FILE *fp;

	if ((fp = fopen(file, "r")) == NULL) {
		mi_err_set_errno(err, EX_CONFIG, "unable to open '%s'", file);
		return NULL;
	}
	if ((k = PEM_read_PUBKEY(fp, NULL, NULL, NULL)) == NULL) {
		/* A certificate holding the key will do as well. */
		rewind(fp);
		if ((cert = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL) {
			k = X509_get_pubkey(cert);
			X509_free(cert);
		}
	}
	fclose(fp);
	if (k == NULL) {
		mi_err_set(err, EX_CONFIG, "'%s' holds no PEM public key",
		    file);
		return NULL;
	}
	if (EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA ||
	    EVP_PKEY_get_bits(k) < 2048) {
		EVP_PKEY_free(k);
		mi_err_set(err, EX_CONFIG,
		    "'%s' is not an RSA key of 2048 bits or more", file);
		return NULL;
	}
	return k;
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
	    (j->pkey = load_key(o->public_key_file, err)) == NULL) {
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
	if (j == NULL)
		return;
	if (j->secret != NULL) {
		explicit_bzero(j->secret, j->secret_len);
		free(j->secret);
	}
	EVP_PKEY_free(j->pkey);
	free(j->issuer);
	free(j->audience);
	free(j->claims);
	free(j);
}

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

/* Decodes one part and parses it as a JSON object. */
static jv
part_json(const char *s, size_t len)
{
	unsigned char *buf;
	long n;
	jv v;

	if (len == 0 || (buf = malloc(len * 3 / 4 + 1)) == NULL)
		return jv_invalid();
	if ((n = b64url_decode(s, len, buf)) <= 0) {
		free(buf);
		return jv_invalid();
	}
	v = jv_parse_sized((const char *)buf, (int)n);
	free(buf);
	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		jv_free(v);
		return jv_invalid();
	}
	return v;
}

static int
check_sig(const struct mi_jwt *j, const char *alg, const char *signed_part,
    size_t signed_len, const char *sig64, size_t sig64_len,
    struct mi_err *err)
{
	unsigned char sig[1024], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	EVP_MD_CTX *ctx;
	long n;
	int ok;

	if (sig64_len == 0 || sig64_len > sizeof(sig) * 4 / 3 ||
	    (n = b64url_decode(sig64, sig64_len, sig)) <= 0)
		return mi_err_set(err, EX_NOPERM, "bad signature");
	if (strcmp(alg, "HS256") == 0 && j->secret != NULL) {
		if (HMAC(EVP_sha256(), j->secret, (int)j->secret_len,
		    (const unsigned char *)signed_part, signed_len, mac,
		    &maclen) == NULL || (long)maclen != n ||
		    CRYPTO_memcmp(mac, sig, maclen) != 0)
			return mi_err_set(err, EX_NOPERM, "bad signature");
		return 0;
	}
	if (strcmp(alg, "RS256") == 0 && j->pkey != NULL) {
		if ((ctx = EVP_MD_CTX_new()) == NULL)
			return mi_err_set(err, EX_OSERR, "out of memory");
		ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL,
		    j->pkey) == 1 && EVP_DigestVerify(ctx, sig, (size_t)n,
		    (const unsigned char *)signed_part, signed_len) == 1;
		EVP_MD_CTX_free(ctx);
		return ok ? 0 : mi_err_set(err, EX_NOPERM, "bad signature");
	}
	if (strcmp(alg, "none") == 0)
		return mi_err_set(err, EX_NOPERM, "alg none");
	return mi_err_set(err, EX_NOPERM, "alg not accepted");
}

/* A number claim; 1 found, 0 absent, -1 not a number. */
static int
num_claim(jv claims, const char *key, double *out)
{
	jv v = jv_object_get(jv_copy(claims), jv_string(key));
	int r = 0;

	if (jv_get_kind(v) == JV_KIND_NUMBER) {
		*out = jv_number_value(v);
		r = 1;
	} else if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL)
		r = -1;
	jv_free(v);
	return r;
}

static int
str_claim_is(jv claims, const char *key, const char *want)
{
	jv v = jv_object_get(jv_copy(claims), jv_string(key));
	int r = jv_get_kind(v) == JV_KIND_STRING &&
	    strcmp(jv_string_value(v), want) == 0;

	jv_free(v);
	return r;
}

static int
aud_ok(jv claims, const char *want)
{
	jv v = jv_object_get(jv_copy(claims), jv_string("aud"));
	int r = 0, i, n;

	if (jv_get_kind(v) == JV_KIND_STRING)
		r = strcmp(jv_string_value(v), want) == 0;
	else if (jv_get_kind(v) == JV_KIND_ARRAY) {
		n = jv_array_length(jv_copy(v));
		for (i = 0; i < n && !r; i++) {
			jv e = jv_array_get(jv_copy(v), i);

			r = jv_get_kind(e) == JV_KIND_STRING &&
			    strcmp(jv_string_value(e), want) == 0;
			jv_free(e);
		}
	}
	jv_free(v);
	return r;
}

/* The first claim path of the comma list that holds a string. */
static int
tenant_claim(const struct mi_jwt *j, jv claims, char *out, size_t outsz)
{
	const char *p = j->claims;
	char key[256];
	size_t n, k;
	jv v;

	while (*p) {
		n = strcspn(p, ",");
		v = jv_copy(claims);
		for (k = 0; k < n && jv_get_kind(v) == JV_KIND_OBJECT;) {
			size_t seg = strcspn(p + k, ".,");

			if (seg >= sizeof(key))
				seg = sizeof(key) - 1;
			memcpy(key, p + k, seg);
			key[seg] = '\0';
			v = jv_object_get(v, jv_string(key));
			k += seg + (p[k + seg] == '.');
		}
		if (k >= n && jv_get_kind(v) == JV_KIND_STRING &&
		    (size_t)jv_string_length_bytes(jv_copy(v)) < outsz) {
			snprintf(out, outsz, "%s", jv_string_value(v));
			jv_free(v);
			return 0;
		}
		jv_free(v);
		p += n + (p[n] == ',');
	}
	return -1;
}

int
mi_jwt_verify(const struct mi_jwt *j, const char *token, size_t len,
    long long now, char *tenant, size_t tenantsz, long long *until,
    struct mi_err *err)
{
	const char *d1, *d2;
	jv hdr = jv_invalid(), claims = jv_invalid(), alg;
	double e, nbf;
	int r = -1, k;

	if (len == 0 || len > TOKEN_MAX ||
	    (d1 = memchr(token, '.', len)) == NULL ||
	    (d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token))) ==
	    NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
		return mi_err_set(err, EX_NOPERM, "malformed token");
	hdr = part_json(token, (size_t)(d1 - token));
	if (!jv_is_valid(hdr)) {
		mi_err_set(err, EX_NOPERM, "malformed header");
		goto out;
	}
	alg = jv_object_get(jv_copy(hdr), jv_string("alg"));
	if (jv_get_kind(alg) != JV_KIND_STRING) {
		jv_free(alg);
		mi_err_set(err, EX_NOPERM, "no alg");
		goto out;
	}
	/* Extensions that must be understood: none are. */
	if (jv_object_has(jv_copy(hdr), jv_string("crit"))) {
		jv_free(alg);
		mi_err_set(err, EX_NOPERM, "crit header");
		goto out;
	}
	k = check_sig(j, jv_string_value(alg), token, (size_t)(d2 - token),
	    d2 + 1, len - (size_t)(d2 + 1 - token), err);
	jv_free(alg);
	if (k != 0)
		goto out;
	claims = part_json(d1 + 1, (size_t)(d2 - d1 - 1));
	if (!jv_is_valid(claims)) {
		mi_err_set(err, EX_NOPERM, "malformed claims");
		goto out;
	}
	if (num_claim(claims, "exp", &e) != 1) {
		mi_err_set(err, EX_NOPERM, "no exp");
		goto out;
	}
	if ((double)now > e + (double)j->leeway) {
		mi_err_set(err, EX_NOPERM, "expired");
		goto out;
	}
	if ((k = num_claim(claims, "nbf", &nbf)) == -1 ||
	    (k == 1 && (double)now + (double)j->leeway < nbf)) {
		mi_err_set(err, EX_NOPERM, "not yet valid");
		goto out;
	}
	if (j->issuer != NULL && !str_claim_is(claims, "iss", j->issuer)) {
		mi_err_set(err, EX_NOPERM, "wrong issuer");
		goto out;
	}
	if (j->audience != NULL && !aud_ok(claims, j->audience)) {
		mi_err_set(err, EX_NOPERM, "wrong audience");
		goto out;
	}
	if (tenant_claim(j, claims, tenant, tenantsz) == -1) {
		mi_err_set(err, EX_NOPERM, "no tenant claim");
		goto out;
	}
	*until = e > 9e18 ? (long long)9e18 : (long long)e + j->leeway;
	r = 0;
out:
	jv_free(hdr);
	jv_free(claims);
	return r;
}
