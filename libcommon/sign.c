/*
 * sign.c - signed asset URLs (HMAC-SHA256 over "path\nexp").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "sign.h"
#include "banned.h"

const char *
mi_sign_key(void)
{
	const char *k = getenv("MI_URL_SIGNING_KEY");

	return k && *k ? k : NULL;
}

long long
mi_sign_ttl(struct mi_err *err)
{
	const char *t = getenv("MI_URL_TTL");
	unsigned long long v;

	if (t == NULL || *t == '\0')
		return MI_SIGN_TTL_DEFAULT;
	if (mi_parse_uint(t, 1, MI_SIGN_TTL_MAX, &v) == -1)
		return mi_err_set(err, EX_CONFIG, "MI_URL_TTL '%s' is not a "
		    "number of seconds from 1 to %d", t, MI_SIGN_TTL_MAX);
	return (long long)v;
}

static int
mac(const char *key, const char *path, const char *exp, char hex[65])
{
	size_t n = strlen(path) + strlen(exp) + 2;
	char *msg = malloc(n);
	int r;

	if (msg == NULL)
		return -1;
	snprintf(msg, n, "%s\n%s", path, exp);
	r = mi_hmac_sha256_hex(key, strlen(key), msg, n - 1, hex);
	free(msg);
	return r;
}

int
mi_sign_url(const char *key, const char *path, long long exp, char *out,
    size_t outsz, struct mi_err *err)
{
	char e[32], hex[65];
	int n;

	if (exp < 1 || exp > MI_SIGN_EXP_MAX)
		return mi_err_set(err, EX_SOFTWARE, "URL expiry %lld out of "
		    "range", exp);
	snprintf(e, sizeof(e), "%lld", exp);
	if (mac(key, path, e, hex) == -1)
		return mi_err_set(err, EX_SOFTWARE, "unable to sign URL");
	n = snprintf(out, outsz, "%s?exp=%s&sig=%s", path, e, hex);
	if (n < 0 || (size_t)n >= outsz)
		return mi_err_set(err, EX_SOFTWARE, "signed URL too long");
	return 0;
}

int
mi_sign_check(const char *key, const char *path, const char *exp,
    const char *sig, long long now)
{
	unsigned long long e;
	char hex[65];
	const char *p;

	if (key == NULL || exp == NULL || sig == NULL)
		return 0;
	for (p = exp; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	if (*exp == '\0' || strlen(exp) > 19)
		return 0;
	e = strtoull(exp, NULL, 10);
	if ((long long)e < now)
		return 0;
	if (mac(key, path, exp, hex) == -1)
		return 0;
	return mi_str_ct_equal(hex, sig);
}
