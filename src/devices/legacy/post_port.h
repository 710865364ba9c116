/* Port 0x80: POST codes. Writes are recorded at debug log level and the
 * last one reads back; nothing else happens (Linux also uses the port as
 * an I/O delay). */
#ifndef KITE_DEVICES_LEGACY_POST_PORT_H
#define KITE_DEVICES_LEGACY_POST_PORT_H

#include "vmm/device.h"

struct vm;
struct post_port;

int post_port_create(struct vm *vm, struct post_port **out);
extern const struct device_ops post_port_ops;

#endif
