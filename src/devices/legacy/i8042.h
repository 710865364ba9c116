/* i8042 PS/2 controller: ports 0x60 (data) and 0x64 (status/command).
 * Enough for Linux's i8042 and atkbd drivers to probe quietly (a keyboard
 * that answers its commands but never types; no mouse) and for the reset
 * line: command 0xFE (or a write of the output port with bit 0 clear)
 * requests a VM reset. */
#ifndef KITE_DEVICES_LEGACY_I8042_H
#define KITE_DEVICES_LEGACY_I8042_H

#include "vmm/device.h"

struct vm;
struct i8042;

int i8042_create(struct vm *vm, struct i8042 **out);
extern const struct device_ops i8042_ops;
/* Type Ctrl-Alt-Del on the keyboard (the API's SendCtrlAltDel). 0, or
 * -EBUSY when the output queue has no room for the sequence. */
int i8042_send_ctrl_alt_del(struct i8042 *k);

#define I8042_STR_OBF     0x01
#define I8042_STR_IBF     0x02
#define I8042_STR_SYS     0x04
#define I8042_STR_CMDDAT  0x08
#define I8042_STR_KEYLOCK 0x10
#define I8042_STR_AUXDATA 0x20
#define I8042_STR_TIMEOUT 0x40
#define I8042_CTR_KBDINT  0x01
#define I8042_CTR_AUXINT  0x02
#define I8042_CTR_SYS     0x04
#define I8042_CTR_KBDDIS  0x10
#define I8042_CTR_AUXDIS  0x20
#define I8042_CTR_XLATE   0x40

#endif
