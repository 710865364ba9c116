/* Placeholder until the soft engine lands: reports itself unavailable. */
#include <errno.h>
#include <stdio.h>

#include "engine/engine.h"

static int soft_probe(char *why, size_t len)
{
	snprintf(why, len, "the soft engine is not available yet");
	return -ENOSYS;
}

const struct engine_ops soft_engine = { .name = "soft", .probe = soft_probe };
