/*
 * err.c - struct mi_err, and the reporting helpers of commands.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include "err.h"
#include "banned.h"

#if defined(__SANITIZE_ADDRESS__)
#define MI_LEAK_CHECKED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MI_LEAK_CHECKED 1
#endif
#endif

static const char *progname = "mi";
static int output_errno;	/* first failed write to stdout */
int mi_verbosity;

int
mi_err_set(struct mi_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* Appends ": text" at offset n, truncating to fit. */
static void
mi_err_append(struct mi_err *err, size_t n, const char *text)
{
	size_t room = sizeof(err->msg) - n, tl = strlen(text);

	if (room < 4)
		return;
	err->msg[n++] = ':';
	err->msg[n++] = ' ';
	room -= 3;
	if (tl > room)
		tl = room;
	memcpy(err->msg + n, text, tl);
	err->msg[n + tl] = '\0';
}

int
mi_err_set_errno(struct mi_err *err, int code, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;
	size_t n;

	if (err == NULL)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	n = strlen(err->msg);
	mi_err_append(err, n, strerror(saved));
	errno = saved;
	return -1;
}

int
mi_err_prefix(struct mi_err *err, const char *fmt, ...)
{
	char pre[256], old[sizeof(err->msg)];
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	if ((size_t)snprintf(err->msg, sizeof(err->msg), "%s: %s", pre, old) >=
	    sizeof(err->msg))
		err->msg[sizeof(err->msg) - 1] = '\0';	/* truncated: fine */
	return -1;
}

/* One mapping from sysexits to the error codes of records. */
const char *
mi_err_name(const struct mi_err *err)
{
	switch (err->code) {
	case EX_DATAERR:
	case EX_USAGE:
		return "VALIDATION_ERROR";
	case EX_IOERR:
	case EX_CANTCREAT:
	case EX_NOPERM:
		return "STORAGE_ERROR";
	case EX_UNAVAILABLE:
		return "PROVIDER_UNAVAILABLE";
	case EX_TEMPFAIL:
		return "TIMEOUT";
	case EX_PROTOCOL:
		return "PROVIDER_ERROR";
	case EX_CONFIG:
		return "CONFIG_ERROR";
	case EX_NOINPUT:
		return "NOT_FOUND";
	default:
		return "PROVIDER_ERROR";
	}
}

void
mi_setprogname(const char *argv0)
{
	const char *p = strrchr(argv0, '/');

	progname = p ? p + 1 : argv0;
}

const char *
mi_getprogname(void)
{
	return progname;
}

static void
vreport(const char *prefix, const char *fmt, va_list ap)
{
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, "%s: %s%s\n", progname, prefix, line);
}

/*
 * A fatal exit leaves what the program holds (operations under way, rows
 * in hand) to the kernel.  In a build with LeakSanitizer the leak check,
 * which is for the normal exits, is skipped: exit() would run it and
 * turn the status into LeakSanitizer's.  Only the output streams are
 * flushed (stdin's lock may be held by a reader thread, inq.h).
 */
static void __attribute__((noreturn))
fatal_exit(int code)
{
#ifdef MI_LEAK_CHECKED
	fflush(stdout);
	fflush(stderr);
	_exit(code);
#else
	exit(code);
#endif
}

void
mi_die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport("", fmt, ap);
	va_end(ap);
	fatal_exit(code);
}

void
mi_die_err(const struct mi_err *err)
{
	fprintf(stderr, "%s: %s\n", progname, err->msg);
	fatal_exit(err->code ? err->code : EX_SOFTWARE);
}

void
mi_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport("warning: ", fmt, ap);
	va_end(ap);
}

void
mi_note(int level, const char *msg)
{
	if (level == MI_NOTE_WARN)
		mi_warn("%s", msg);
	else if (level == MI_NOTE_INFO || mi_verbosity > 0)
		fprintf(stderr, "%s: %s\n", mi_getprogname(), msg);
}

void
mi_note_cb(void *arg, int level, const char *msg)
{
	(void)arg;
	mi_note(level, msg);
}

void
mi_note_send(void (*note)(void *, int, const char *), void *arg, int level,
    const char *fmt, va_list ap)
{
	char small[1024], *msg = small;
	va_list again;
	int n;

	if (note == NULL)
		return;
	va_copy(again, ap);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	if (n >= (int)sizeof(small) && (msg = malloc((size_t)n + 1)) != NULL)
		vsnprintf(msg, (size_t)n + 1, fmt, again);
	else
		msg = small;
	va_end(again);
	note(arg, level, msg);
	if (msg != small)
		free(msg);
}

void
mi_die_cb(void *arg, const struct mi_err *err)
{
	(void)arg;
	mi_die_err(err);
}

void
mi_verbose(const char *fmt, ...)
{
	va_list ap;

	if (mi_verbosity <= 0)
		return;
	va_start(ap, fmt);
	vreport("", fmt, ap);
	va_end(ap);
}

void
mi_usage(const char *usage, int status)
{
	fprintf(status == 0 ? stdout : stderr, "%s\n", usage);
	if (status == 0)
		mi_close_stdout();
	exit(status);
}

void
mi_version(void)
{
	printf("%s %s\n", progname, MI_VERSION);
	mi_close_stdout();
	exit(0);
}

void
mi_bad_option(const char *usage, const char *arg)
{
	fprintf(stderr, "%s: unknown option '%s'\n", progname, arg);
	mi_usage(usage, EX_USAGE);
}

int
mi_parse_uint(const char *s, unsigned long long min, unsigned long long max,
    unsigned long long *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s == '\0' || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
mi_parse_double(const char *s, double *out)
{
	char *end;
	double v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno == ERANGE || *end != '\0' || v != v)
		return -1;
	*out = v;
	return 0;
}

void
mi_note_write_error(int errnum)
{
	if (output_errno == 0 && errnum != 0)
		output_errno = errnum;
}

/*
 * The errno of a failed write is gone by the time stdout is closed (a
 * later successful call may even leave 0): report the first one noted,
 * else the one fflush or fclose gives now, else EIO.
 */
void
mi_close_stdout(void)
{
	int e = 0, bad = 0;

	if (fflush(stdout) != 0) {
		e = errno;
		bad = 1;
	}
	if (ferror(stdout) || output_errno != 0)
		bad = 1;
	if (fclose(stdout) != 0) {
		if (e == 0)
			e = errno;
		bad = 1;
	}
	if (bad) {
		if (output_errno != 0)
			e = output_errno;
		fprintf(stderr, "%s: unable to write output: %s\n", progname,
		    strerror(e ? e : EIO));
		exit(EX_IOERR);
	}
}

long long
mi_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long
mi_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
mi_sleep_ms(long long ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}
