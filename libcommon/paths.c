/*
 * paths.c - the share directory.
 */
#include <stdio.h>
#include <stdlib.h>

#include "paths.h"
#include "banned.h"

const char *
mi_sharedir(void)
{
	const char *d = getenv("MI_SHAREDIR");

	return d && *d ? d : MI_SHAREDIR;
}

int
mi_share_path(const char *sub, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s/%s", mi_sharedir(), sub);

	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}
