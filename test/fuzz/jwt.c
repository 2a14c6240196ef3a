/*
 * libFuzzer target for mi_jwt_verify (libcommon/jwt.c), which reads
 * tokens from anyone.  The first byte chooses what the rest is:
 *   even: a token as it comes in an Authorization header;
 *   odd:  "HEADER\nCLAIMS", two JSON texts that the target encodes and
 *         signs with the verifier's HS256 secret, so that the claims
 *         reader sees inputs that pass the signature check.
 * Besides the sanitizers' checks it asserts what mi-serve relies on: on
 * success the tenant is a non-empty NUL-terminated string of the buffer
 * without NUL inside, and the token was not expired.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "jwt.h"

#define SECRET "fuzz-secret"
#define NOW 1700000000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
b64url(const uint8_t *in, size_t n, char *out)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
	    "opqrstuvwxyz0123456789-_";
	size_t i, o = 0;
	unsigned long v;

	for (i = 0; i + 2 < n; i += 3) {
		v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 |
		    in[i + 2];
		out[o++] = abc[v >> 18];
		out[o++] = abc[(v >> 12) & 63];
		out[o++] = abc[(v >> 6) & 63];
		out[o++] = abc[v & 63];
	}
	if (n - i == 1) {
		v = (unsigned long)in[i] << 16;
		out[o++] = abc[v >> 18];
		out[o++] = abc[(v >> 12) & 63];
	} else if (n - i == 2) {
		v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8;
		out[o++] = abc[v >> 18];
		out[o++] = abc[(v >> 12) & 63];
		out[o++] = abc[(v >> 6) & 63];
	}
	return o;
}

static void
check(const struct mi_jwt *j, const char *tok, size_t len)
{
	struct mi_err err = MI_ERR_INIT;
	char tenant[256];
	long long until = 0;

	memset(tenant, 'x', sizeof(tenant));
	if (mi_jwt_verify(j, tok, len, NOW, tenant, sizeof(tenant), &until,
	    &err) == 0) {
		if (strnlen(tenant, sizeof(tenant)) == sizeof(tenant) ||
		    tenant[0] == '\0' || until < NOW)
			abort();
	} else if (err.msg[0] == '\0')
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mi_jwt *j;
	struct mi_jwt_opts o;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen;
	const uint8_t *nl;
	char *tok;
	size_t n, hl;

	if (j == NULL) {
		memset(&o, 0, sizeof(o));
		o.secret = SECRET;
		o.leeway_s = -1;
		if ((j = mi_jwt_new(&o, NULL)) == NULL)
			abort();
	}
	if (size == 0 || size > 2 * MI_JWT_TOKEN_MAX)
		return 0;
	if ((data[0] & 1) == 0) {
		/* An exact-size copy so that ASan sees any read past the end. */
		if ((tok = malloc(size - 1 ? size - 1 : 1)) == NULL)
			return 0;
		memcpy(tok, data + 1, size - 1);
		check(j, tok, size - 1);
		free(tok);
		return 0;
	}
	data++;
	size--;
	if ((nl = memchr(data, '\n', size)) == NULL)
		return 0;
	hl = (size_t)(nl - data);
	if ((tok = malloc(size * 2 + 64)) == NULL)
		return 0;
	n = b64url(data, hl, tok);
	tok[n++] = '.';
	n += b64url(nl + 1, size - hl - 1, tok + n);
	HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)tok,
	    n, mac, &maclen);
	tok[n++] = '.';
	n += b64url(mac, maclen, tok + n);
	check(j, tok, n);
	free(tok);
	return 0;
}
