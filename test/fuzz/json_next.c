/*
 * libFuzzer target for mi_json_next (libcommon/json.c), the record reader
 * of every mi program that reads a stream.  The input is the whole stream.
 * Besides the sanitizers' checks (and jv's own asserts, which abort) it
 * asserts what the programs rely on: reading ends, every call returns one
 * of the documented results, a returned value is valid and prints, an
 * error names its record, and the record count only grows.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *       -DMI_VERSION='"0"' -Ilibcommon test/fuzz/json_next.c \
 *       libcommon/json.c libcommon/err.c -ljq
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mi_json_in *in;
	unsigned long last = 0, calls = 0;
	FILE *fp;
	jv v;
	int r;

	if (size == 0)
		return 0;
	if ((fp = fmemopen((void *)data, size, "r")) == NULL)
		abort();
	if ((in = mi_json_in_new(fp)) == NULL)
		abort();
	for (;;) {
		struct mi_err err = MI_ERR_INIT;

		r = mi_json_next(in, &v, &err);
		/* Each call consumes at least one record or the input. */
		if (++calls > size + 2)
			abort();
		if (r == 0 || r == -2)
			break;
		if (r == 1) {
			char *s;
			const char *str;

			if (!jv_is_valid(v))
				abort();
			s = mi_json_dump(v);
			if (s == NULL)
				abort();
			free(s);
			/* The typed getters must hold on any value. */
			(void)mi_json_str(v, "path", &str, 0, NULL);
			(void)mi_json_has_error(v);
			jv_free(v);
		} else if (r != -1 || strncmp(err.msg, "record ", 7) != 0 ||
		    err.code != EX_DATAERR)
			abort();
		if (mi_json_count(in) <= last)
			abort();
		last = mi_json_count(in);
	}
	/* The end is sticky. */
	if (r == 0 && mi_json_next(in, &v, NULL) != 0)
		abort();
	mi_json_in_free(in);
	fclose(fp);
	return 0;
}
