/*
 * paths.h - where installed data lives.  The compiled-in share directory
 * is a default: $MI_SHAREDIR overrides it, so tests run from the tree.
 */
#ifndef MI_PATHS_H
#define MI_PATHS_H

#include <stddef.h>

/* The share directory ("/usr/local/share/mi"). */
const char *mi_sharedir(void);
/* sharedir + "/" + sub into out; -1 when it does not fit. */
int mi_share_path(const char *sub, char *out, size_t outsz);

#endif
