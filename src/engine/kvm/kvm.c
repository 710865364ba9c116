/* Placeholder until the kvm engine lands: reports itself unavailable. */
#include <errno.h>
#include <stdio.h>

#include "engine/engine.h"

static int kvm_probe(char *why, size_t len)
{
	snprintf(why, len, "the kvm engine is not built yet");
	return -ENOSYS;
}

const struct engine_ops kvm_engine = { .name = "kvm", .probe = kvm_probe };
