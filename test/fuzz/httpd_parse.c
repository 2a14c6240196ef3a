/*
 * libFuzzer target for mi_http_parse (libcommon/httpd_parse.c), the
 * parser that reads every request head mi-serve receives.  Besides the
 * sanitizers' checks it asserts what the server relies on: a head length
 * within the input, NUL-terminated strings inside the buffer, an
 * origin-form path, header values without CR, LF or NUL.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *       -Ilibcommon test/fuzz/httpd_parse.c libcommon/httpd_parse.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

static void
inside(const char *s, const char *buf, size_t len)
{
	size_t n;

	if (s[0] == '\0' && (s < buf || s >= buf + len))
		return;		/* a constant "" */
	if (s < buf || s >= buf + len)
		abort();
	n = strnlen(s, (size_t)(buf + len - s));
	if (s + n >= buf + len)
		abort();	/* not terminated inside the buffer */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mi_http_req req;
	char *buf;
	size_t i;
	int r;

	if (size > MI_HTTP_BUF_SIZE)
		return 0;
	/* An exact-size copy so that ASan sees any read past the end. */
	if ((buf = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	r = mi_http_parse(buf, size, &req);
	if (r > (int)size)
		abort();
	if (r < 0 && r != -400 && r != -414 && r != -431 && r != -505)
		abort();
	if (r > 0) {
		inside(req.method_name, buf, size);
		inside(req.path, buf, size);
		inside(req.query, buf, size);
		if (req.path[0] != '/' && strcmp(req.path, "*") != 0)
			abort();
		if (req.version != 10 && req.version != 11)
			abort();
		if (req.nheaders > MI_HTTP_MAX_HEADERS)
			abort();
		for (i = 0; i < req.nheaders; i++) {
			inside(req.headers[i].name, buf, size);
			inside(req.headers[i].value, buf, size);
			if (strpbrk(req.headers[i].value, "\r\n") != NULL)
				abort();
		}
		(void)mi_http_header(&req, "Host");
	}
	free(buf);
	return 0;
}
