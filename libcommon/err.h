/*
 * err.h - error values and the command-line helpers every mi program uses.
 *
 * libcommon functions never print or exit: they return -1 (or NULL) and
 * fill a struct mi_err whose code is a <sysexits.h> value and whose msg
 * names what failed.  Only commands (cmd/) call mi_die/mi_warn, which
 * prefix the program name set by mi_setprogname().
 */
#ifndef MI_ERR_H
#define MI_ERR_H

#include <stdarg.h>
#include <stddef.h>
#include <sysexits.h>

struct mi_err {
	int code;		/* sysexits value; 0 when no error */
	char msg[256];
};

#define MI_ERR_INIT { 0, "" }

/* Fills err (may be NULL) and returns -1, so "return mi_err_set(...)". */
int mi_err_set(struct mi_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like mi_err_set, appending ": strerror(errno)". */
int mi_err_set_errno(struct mi_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix msg with "what: " (for adding context on the way up). */
int mi_err_prefix(struct mi_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The SPEC.md error code ("STORAGE_ERROR", ...) stored alongside a message. */
const char *mi_err_name(const struct mi_err *err);

void mi_setprogname(const char *argv0);
const char *mi_getprogname(void);
/* A fatal exit: the message, then exit(code); in a LeakSanitizer build
 * without the leak check, which is for the normal exits (err.c). */
void mi_die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
void mi_die_err(const struct mi_err *err) __attribute__((noreturn));
void mi_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mi_verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern int mi_verbosity;

/* The levels of the notes libcommon's engines hand their command. */
enum {
	MI_NOTE_INFO,		/* always shown: costs */
	MI_NOTE_VERBOSE,	/* with -v */
	MI_NOTE_WARN
};
/* For commands: a note on standard error (a warning as mi_warn, info
 * always, verbose with -v); as a note callback (arg unused). */
void mi_note(int level, const char *msg);
void mi_note_cb(void *arg, int level, const char *msg);
/* For engines: fmt and ap formatted whole (however long) and handed to
 * note(arg, level, text); nothing when note is NULL. */
void mi_note_send(void (*note)(void *, int, const char *), void *arg,
    int level, const char *fmt, va_list ap);
/* For commands: a fatal-error callback (arg unused): mi_die_err. */
void mi_die_cb(void *arg, const struct mi_err *err)
    __attribute__((noreturn));

/* "usage: ..." to stderr, exit 64; or to stdout, exit 0 for --help. */
void mi_usage(const char *usage, int status) __attribute__((noreturn));
void mi_version(void) __attribute__((noreturn));
/* Reports an unknown option and exits 64 with the usage line. */
void mi_bad_option(const char *usage, const char *arg)
    __attribute__((noreturn));

/* strtoull with end-pointer and range checks. */
int mi_parse_uint(const char *s, unsigned long long min,
    unsigned long long max, unsigned long long *out);
/* "0.5", "2" -> double with full-string check. */
int mi_parse_double(const char *s, double *out);

/*
 * fflush/ferror/fclose of stdout; exits 74 on failure, naming the cause:
 * the errno given to mi_note_write_error (first one wins) by whoever saw
 * a write to stdout fail, else what fflush/fclose say.
 */
void mi_close_stdout(void);
void mi_note_write_error(int errnum);

/* Monotonic milliseconds, and wall-clock milliseconds since the epoch. */
long long mi_now_ms(void);
long long mi_wall_ms(void);
void mi_sleep_ms(long long ms);

#endif
