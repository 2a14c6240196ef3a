/*
 * hash.c - SHA-256 and HMAC-SHA256 over OpenSSL EVP.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hash.h"
#include "banned.h"

struct mi_sha256 {
	EVP_MD_CTX *ctx;
};

static void
tohex(const unsigned char *d, size_t n, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[2 * n] = '\0';
}

struct mi_sha256 *
mi_sha256_new(struct mi_err *err)
{
	struct mi_sha256 *h = OPENSSL_zalloc(sizeof(*h));

	if (h == NULL || (h->ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		mi_sha256_free(h);
		mi_err_set(err, EX_SOFTWARE, "unable to start SHA-256");
		return NULL;
	}
	return h;
}

int
mi_sha256_update(struct mi_sha256 *h, const void *data, size_t len)
{
	return EVP_DigestUpdate(h->ctx, data, len) == 1 ? 0 : -1;
}

int
mi_sha256_final(struct mi_sha256 *h, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (EVP_DigestFinal_ex(h->ctx, md, &n) != 1 || n != 32)
		return -1;
	tohex(md, n, hex);
	return 0;
}

void
mi_sha256_free(struct mi_sha256 *h)
{
	if (h == NULL)
		return;
	EVP_MD_CTX_free(h->ctx);
	OPENSSL_free(h);
}

void
mi_sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char md[32];
	unsigned int n = 32;

	EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
	tohex(md, 32, hex);
}

int
mi_hmac_sha256_hex(const void *key, size_t keylen, const void *data,
    size_t len, char hex[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (HMAC(EVP_sha256(), key, (int)keylen, data, len, md, &n) == NULL ||
	    n != 32)
		return -1;
	tohex(md, 32, hex);
	return 0;
}

int
mi_str_ct_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la != lb)
		return 0;
	return CRYPTO_memcmp(a, b, la) == 0;
}
