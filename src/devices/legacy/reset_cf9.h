/* The PIIX/ICH reset control register at port 0xCF9, also the FADT's
 * RESET_REG. It sits inside the PCI config-address dword 0xCF8-0xCFB, so
 * it is not on the port bus by itself: the PCI host bridge forwards byte
 * accesses to 0xCF9 here (pci_host_bridge_create takes it). */
#ifndef KITE_DEVICES_LEGACY_RESET_CF9_H
#define KITE_DEVICES_LEGACY_RESET_CF9_H

#include <stdint.h>

#include "vmm/device.h"

struct vm;
struct reset_cf9;

#define CF9_SYS_RST  0x02 /* with RST_CPU: a full (not only CPU) reset */
#define CF9_RST_CPU  0x04 /* writing 1 starts the reset */
#define CF9_FULL_RST 0x08

int reset_cf9_create(struct vm *vm, struct reset_cf9 **out);
uint8_t reset_cf9_read(struct reset_cf9 *r);
void reset_cf9_write(struct reset_cf9 *r, uint8_t value);
extern const struct device_ops reset_cf9_ops;

#endif
