/*
 * failwrite.c - an LD_PRELOAD shim for tests: the first $MI_FAULT_COUNT
 * writes (write, pwrite, copy_file_range, fsync) to regular files fail with
 * $MI_FAULT_ERRNO (default ENOSPC).  Each failure is counted in
 * $MI_FAULT_LOG (one line per failed call) so tests can see the retries.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int remaining = -1;

static int
should_fail(int fd, const char *what)
{
	struct stat sb;
	const char *log;

	if (remaining == -1) {
		const char *c = getenv("MI_FAULT_COUNT");
		remaining = c ? (int)strtol(c, NULL, 10) : 0;
	}
	if (remaining <= 0 || fd <= 2 || fstat(fd, &sb) == -1 ||
	    !S_ISREG(sb.st_mode))
		return 0;
	__atomic_sub_fetch(&remaining, 1, __ATOMIC_SEQ_CST);
	if ((log = getenv("MI_FAULT_LOG")) != NULL) {
		int l = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
		if (l != -1) {
			dprintf(l, "%s\n", what);
			close(l);
		}
	}
	errno = getenv("MI_FAULT_ERRNO") ? (int)strtol(getenv("MI_FAULT_ERRNO"),
	    NULL, 10) : ENOSPC;
	return 1;
}

#define REAL(name) static __typeof__(name) *real; \
	if (!real) real = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

ssize_t
write(int fd, const void *buf, size_t n)
{
	REAL(write);
	if (should_fail(fd, "write"))
		return -1;
	return real(fd, buf, n);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite);
	if (should_fail(fd, "pwrite"))
		return -1;
	return real(fd, buf, n, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite64);
	if (should_fail(fd, "pwrite"))
		return -1;
	return real(fd, buf, n, off);
}

ssize_t
copy_file_range(int in, loff_t *io, int out, loff_t *oo, size_t n,
    unsigned int flags)
{
	REAL(copy_file_range);
	if (should_fail(out, "copy_file_range"))
		return -1;
	return real(in, io, out, oo, n, flags);
}

int
fsync(int fd)
{
	REAL(fsync);
	if (should_fail(fd, "fsync"))
		return -1;
	return real(fd);
}
