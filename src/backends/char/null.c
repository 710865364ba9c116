/* --serial none: guest output is discarded, there is never input. */
#include <errno.h>
#include <stdlib.h>

#include "backends/char/char.h"

static void null_write(struct char_backend *be, const uint8_t *buf, size_t len)
{
	(void)be; (void)buf; (void)len;
}

static void null_destroy(struct char_backend *be)
{
	free(be);
}

static const struct char_backend_ops null_ops = {
	.name = "none", .write = null_write, .destroy = null_destroy,
};

int char_null_create(struct char_backend **out)
{
	struct char_backend *be = calloc(1, sizeof(*be));
	if (!be)
		return -ENOMEM;
	be->ops = &null_ops;
	*out = be;
	return 0;
}
