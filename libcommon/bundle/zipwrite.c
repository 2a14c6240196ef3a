/*
 * zipwrite.c - reproducible zips over libarchive's zip writer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "bundle/zipwrite.h"
#include "banned.h"

struct mi_zipw {
	struct archive *a;
	int failed;
};

static int
fail(struct mi_zipw *w, struct mi_err *err, const char *what)
{
	w->failed = 1;
	return mi_err_set(err, EX_IOERR, "%s: %s", what,
	    archive_error_string(w->a) ? archive_error_string(w->a)
				       : "libarchive failed");
}

struct mi_zipw *
mi_zipw_new(int fd, struct mi_err *err)
{
	struct mi_zipw *w = calloc(1, sizeof(*w));

	if (w == NULL || (w->a = archive_write_new()) == NULL) {
		free(w);
		mi_err_set(err, EX_OSERR, "out of memory");
		return NULL;
	}
	if (archive_write_set_format_zip(w->a) != ARCHIVE_OK ||
	    archive_write_set_options(w->a, "zip:compression-level=9") !=
		ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(w->a, 1) != ARCHIVE_OK ||
	    archive_write_open_fd(w->a, fd) != ARCHIVE_OK) {
		fail(w, err, "unable to start the zip");
		archive_write_free(w->a);
		free(w);
		return NULL;
	}
	return w;
}

int
mi_zipw_add(struct mi_zipw *w, const char *name, int deflate, const void *mem,
    int src_fd, uint64_t size, struct mi_err *err)
{
	struct archive_entry *e;
	char buf[65536];
	uint64_t done = 0;
	ssize_t n;

	if ((e = archive_entry_new()) == NULL)
		return mi_err_set(err, EX_OSERR, "out of memory");
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_mtime(e, (time_t)MI_ZIPW_MTIME, 0);
	archive_entry_set_size(e, (la_int64_t)size);
	/* An empty entry is stored: there is nothing to deflate. */
	if (deflate && size > 0)
		archive_write_zip_set_compression_deflate(w->a);
	else
		archive_write_zip_set_compression_store(w->a);
	if (archive_write_header(w->a, e) != ARCHIVE_OK) {
		archive_entry_free(e);
		return fail(w, err, name);
	}
	archive_entry_free(e);
	if (mem != NULL) {
		if (size > 0 &&
		    archive_write_data(w->a, mem, size) != (la_ssize_t)size)
			return fail(w, err, name);
	} else {
		if (lseek(src_fd, 0, SEEK_SET) == -1)
			return mi_err_set_errno(err, EX_IOERR, "%s", name);
		while (done < size) {
			n = read(src_fd, buf,
			    size - done < sizeof(buf) ? (size_t)(size - done)
						      : sizeof(buf));
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				return mi_err_set(err, EX_IOERR,
				    "%s: short "
				    "read",
				    name);
			if (archive_write_data(w->a, buf, (size_t)n) != n)
				return fail(w, err, name);
			done += (uint64_t)n;
		}
	}
	if (archive_write_finish_entry(w->a) != ARCHIVE_OK)
		return fail(w, err, name);
	return 0;
}

int
mi_zipw_close(struct mi_zipw *w, struct mi_err *err)
{
	int r = 0;

	if (w == NULL)
		return 0;
	if (archive_write_close(w->a) != ARCHIVE_OK && !w->failed)
		r = fail(w, err, "unable to finish the zip");
	else if (w->failed)
		r = -1;
	archive_write_free(w->a);
	free(w);
	return r;
}
