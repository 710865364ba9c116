/* The PCI host bridge at 00:00.0 and the two ways a guest reaches PCI
 * config space: configuration mechanism #1 (ports 0xCF8 address, 0xCFC-
 * 0xCFF data) and the ECAM window (MMIO at LAYOUT_PCI_ECAM_BASE, bus 0-255,
 * 4 KiB per function). Both lead to the same struct pci_bus. */
#ifndef KITE_DEVICES_PCI_HOST_BRIDGE_H
#define KITE_DEVICES_PCI_HOST_BRIDGE_H

#include <stdint.h>

#include "devices/pci/pci.h"
#include "vmm/device.h"

struct vm;
struct reset_cf9;
struct pci_host_bridge;

/* Red Hat's "QEMU PCIe host bridge" IDs (1b36:0008), class host bridge. */
#define PCI_VENDOR_REDHAT      0x1b36
#define PCI_DEVICE_REDHAT_PCIE_HOST 0x0008
#define PCI_CLASS_HOST_BRIDGE  0x060000

#define PCI_CF8_ENABLE 0x80000000u

/* Registers the ports and the ECAM window and plugs the bridge in at
 * 00:00.0. Byte accesses to port 0xCF9 (inside the address dword) go to
 * cf9 when given. The bus is reachable as pci_host_bridge_bus(). */
int pci_host_bridge_create(struct vm *vm, struct reset_cf9 *cf9, struct pci_host_bridge **out);
struct pci_bus *pci_host_bridge_bus(struct pci_host_bridge *hb);
extern const struct device_ops pci_host_bridge_ops;

#endif
