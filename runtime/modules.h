/*
 * modules.h -- the list of C modules every VM preloads (modules.c).  A
 * face: the embedding API passes it to px_runtime_new (runtime.h).
 */
#ifndef PX_MODULES_H
#define PX_MODULES_H

#include "core/runtime.h"

extern const px_module px_modules[];

#endif
