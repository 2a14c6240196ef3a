/*
 * mi-route-audio - the audio router: mi-route in its audio mode (sound
 * effects and music only, their parameters checked against mi's audio
 * ranges, then routed like every request).  Runs the mi-route installed
 * next to it (else the one on PATH) under its own name, so usage,
 * messages and the version say mi-route-audio.  Exits as mi-route does:
 * 0, 1 (some error records), 64, 74 or 78 (no usable routing table, or
 * no mi-route).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "banned.h"

int
main(int argc, char **argv)
{
	char self[PATH_MAX], prog[PATH_MAX + 16], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	(void)argc;
	mi_setprogname(argv[0]);
	if (n > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			if ((size_t)snprintf(prog, sizeof(prog), "%s/mi-route",
			    self) < sizeof(prog))
				execv(prog, argv);
		}
	}
	execvp("mi-route", argv);
	mi_die(EX_CONFIG, "unable to run 'mi-route': %s", strerror(errno));
}
