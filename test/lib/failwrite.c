/*
 * failwrite.c - an LD_PRELOAD shim for tests of the store's failure paths.
 *   MI_FAULT_COUNT=N       the first N writes (write, pwrite,
 *                          copy_file_range, fsync) to regular files fail
 *                          with $MI_FAULT_ERRNO (default ENOSPC)
 *   MI_FAULT_DIR_COUNT=N   the first N fsyncs of directories fail so too
 *   MI_FAULT_MKDIR=S       every mkdir of a path containing S fails with
 *                          $MI_FAULT_MKDIR_ERRNO (default EACCES: tests run
 *                          as root, where permissions do not fail)
 *   MI_FAULT_NO_TMPFILE=1  open(O_TMPFILE) fails with EOPNOTSUPP, as on a
 *                          filesystem without it
 *   MI_FAULT_LOG=F         one line per failed call, naming the call
 *   MI_FSYNC_LOG=F         the path of every directory fsynced
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int remaining = -1, dir_remaining = -1;

static void
logline(const char *env, const char *what)
{
	const char *log = getenv(env);
	int l;

	if (log == NULL)
		return;
	if ((l = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) !=
	    -1) {
		dprintf(l, "%s\n", what);
		close(l);
	}
}

static int
env_int(const char *name, int def)
{
	const char *c = getenv(name);

	return c ? (int)strtol(c, NULL, 10) : def;
}

static int
fault_errno(void)
{
	return env_int("MI_FAULT_ERRNO", ENOSPC);
}

static int
should_fail(int fd, const char *what)
{
	struct stat sb;

	if (remaining == -1)
		remaining = env_int("MI_FAULT_COUNT", 0);
	if (remaining <= 0 || fd <= 2 || fstat(fd, &sb) == -1 ||
	    !S_ISREG(sb.st_mode))
		return 0;
	__atomic_sub_fetch(&remaining, 1, __ATOMIC_SEQ_CST);
	logline("MI_FAULT_LOG", what);
	errno = fault_errno();
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
	struct stat sb;

	REAL(fsync);
	if (fd > 2 && fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		char proc[64], path[PATH_MAX];
		ssize_t n;

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		if ((n = readlink(proc, path, sizeof(path) - 1)) > 0) {
			path[n] = '\0';
			logline("MI_FSYNC_LOG", path);
		}
		if (dir_remaining == -1)
			dir_remaining = env_int("MI_FAULT_DIR_COUNT", 0);
		if (dir_remaining > 0) {
			__atomic_sub_fetch(&dir_remaining, 1, __ATOMIC_SEQ_CST);
			logline("MI_FAULT_LOG", "fsync-dir");
			errno = fault_errno();
			return -1;
		}
		return real(fd);
	}
	if (should_fail(fd, "fsync"))
		return -1;
	return real(fd);
}

int
mkdir(const char *path, mode_t mode)
{
	const char *s = getenv("MI_FAULT_MKDIR");

	REAL(mkdir);
	if (s && *s && strstr(path, s)) {
		logline("MI_FAULT_LOG", "mkdir");
		errno = env_int("MI_FAULT_MKDIR_ERRNO", EACCES);
		return -1;
	}
	return real(path, mode);
}

static int
no_tmpfile(int flags)
{
	if ((flags & O_TMPFILE) == O_TMPFILE && getenv("MI_FAULT_NO_TMPFILE")) {
		errno = EOPNOTSUPP;
		return 1;
	}
	return 0;
}

#define OPEN_WRAPPER(name) \
int \
name(const char *path, int flags, ...) \
{ \
	mode_t mode = 0; \
	REAL(name); \
	if (flags & (O_CREAT | __O_TMPFILE)) { \
		va_list ap; \
		va_start(ap, flags); \
		mode = (mode_t)va_arg(ap, int); \
		va_end(ap); \
	} \
	if (no_tmpfile(flags)) \
		return -1; \
	return real(path, flags, mode); \
}

OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)
