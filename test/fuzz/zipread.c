/*
 * libFuzzer target for the zip reader (libcommon/bundle/zipread.c) that
 * mi-serve runs on the bytes of every stored bundle it serves entries
 * from.  The input is a whole zip file.  Besides the sanitizers' checks it
 * asserts what the server relies on: every entry's data inside the file,
 * servable names in the grammar and found by name, extraction that never
 * writes past the declared size.
 *
 *   make fuzz FUZZ_TARGETS=zipread FUZZ_TIME=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bundle/zipread.h"

struct mem {
	const uint8_t *data;
	size_t size;
};

static int
read_mem(void *arg, void *buf, size_t len, uint64_t off)
{
	const struct mem *m = arg;

	if (off > m->size || len > m->size - off)
		return -1;
	memcpy(buf, m->data + off, len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mem m = { data, size };
	struct mi_err err = MI_ERR_INIT;
	const struct mi_zip_entry *e;
	struct mi_zip *z;
	size_t i;

	if ((z = mi_zip_open(read_mem, &m, size, &err)) == NULL)
		return 0;
	for (i = 0; i < mi_zip_count(z); i++) {
		e = mi_zip_entry_at(z, i);
		if (e->data_off > size || e->csize > size - e->data_off)
			abort();
		if (e->refused != NULL)
			continue;
		if (!mi_zip_name_ok(e->name, e->name_len) ||
		    mi_zip_find(z, e->name, e->name_len) != e)
			abort();
		if (e->usize <= (1 << 20)) {
			/* A guard byte past the declared size stays put. */
			unsigned char *out = malloc(e->usize + 1);

			if (out == NULL)
				abort();
			out[e->usize] = 0xa5;
			(void)mi_zip_extract(e, read_mem, &m, out, e->usize,
			    &err);
			if (out[e->usize] != 0xa5)
				abort();
			free(out);
		}
	}
	if (mi_zip_find(z, "../x", 4) != NULL || mi_zip_find(z, "", 0) != NULL)
		abort();
	mi_zip_free(z);
	return 0;
}
