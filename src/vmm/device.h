/* What every device model provides to the VM besides its bus callbacks:
 * reset, teardown and (from the start, for snapshots and migration later)
 * save/restore of its state as an opaque blob. */
#ifndef KITE_VMM_DEVICE_H
#define KITE_VMM_DEVICE_H

#include <stddef.h>

struct device_ops {
	const char *name;
	void (*reset)(void *dev);
	/* Serialise state into buf (at most len bytes); returns bytes needed
	 * (a call with len too small writes nothing and returns the size). */
	size_t (*save)(void *dev, void *buf, size_t len);
	/* Returns 0 or -EINVAL for a blob this version cannot read. */
	int (*restore)(void *dev, const void *buf, size_t len);
	void (*destroy)(void *dev);
};

struct device {
	const struct device_ops *ops;
	void *dev;
};

#endif
