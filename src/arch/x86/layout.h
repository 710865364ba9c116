/* Where things live in the guest-physical and port address spaces of a kite
 * PC. One table, so loaders, firmware tables and devices never collide. */
#ifndef KITE_ARCH_X86_LAYOUT_H
#define KITE_ARCH_X86_LAYOUT_H

/* Low memory, written by the loaders and firmware-table builders. */
#define LAYOUT_BOOT_GDT        0x00001000ULL /* GDT for the boot vCPU */
#define LAYOUT_BOOT_PML4       0x00002000ULL /* identity page tables: PML4, PDPT, 4 PDs (4 GiB with 2 MiB pages) */
#define LAYOUT_BOOT_PT_END     0x00008000ULL
#define LAYOUT_ZERO_PAGE       0x00008000ULL /* Linux boot_params */
#define LAYOUT_MULTIBOOT_INFO  0x00009000ULL /* multiboot info + mmap + module list (one page) */
#define LAYOUT_CMDLINE         0x00020000ULL /* kernel command line, up to LAYOUT_CMDLINE_MAX */
#define LAYOUT_CMDLINE_MAX     0x00010000ULL
#define LAYOUT_MP_TABLE        0x0009FC00ULL /* EBDA: reserved in e820 */
#define LAYOUT_EBDA_START      0x0009FC00ULL
#define LAYOUT_BIOS_START      0x000A0000ULL /* VGA hole + ROM area: reserved */
#define LAYOUT_ACPI_START      0x000E0000ULL /* RSDP + ACPI tables, reserved in e820 */
#define LAYOUT_ACPI_END        0x00100000ULL
#define LAYOUT_HIGH_MEMORY     0x00100000ULL /* kernels load at 1 MiB and above */

/* 32-bit MMIO hole (vmm/memory.h: MEM_PCI_HOLE_START .. 4 GiB). */
#define LAYOUT_PCI_MMIO32_START 0xC0000000ULL /* 32-bit PCI BARs */
#define LAYOUT_PCI_MMIO32_END   0xE0000000ULL
#define LAYOUT_PCI_ECAM_BASE    0xE0000000ULL /* PCIe ECAM, bus 0..255, reserved in e820 */
#define LAYOUT_PCI_ECAM_SIZE    0x10000000ULL
#define LAYOUT_IOAPIC_BASE      0xFEC00000ULL
#define LAYOUT_LAPIC_BASE       0xFEE00000ULL

/* Port I/O. */
#define PORT_PIC_MASTER   0x20
#define PORT_PIT          0x40
#define PORT_I8042_DATA   0x60
#define PORT_PIT_CH2_GATE 0x61 /* NMI status / speaker gate */
#define PORT_I8042_CMD    0x64
#define PORT_CMOS         0x70
#define PORT_POST         0x80
#define PORT_PIC_SLAVE    0xA0
#define PORT_ELCR         0x4D0
#define PORT_ACPI_PM_BASE 0x600 /* PM1a_EVT 0x600 (4), PM1a_CNT 0x604 (2), PM_TMR 0x608 (4) */
#define PORT_ACPI_PM1_EVT 0x600
#define PORT_ACPI_PM1_CNT 0x604
#define PORT_ACPI_PM_TMR  0x608
#define PORT_DEBUG_EXIT   0xF4
#define PORT_COM1         0x3F8
#define PORT_RESET_CF9    0xCF9 /* also the ACPI reset register */
#define PORT_PCI_CONFIG   0xCF8 /* 0xCF8 address, 0xCFC..0xCFF data */

/* Legacy IRQ lines (GSI = ISA IRQ on both PIC and IOAPIC, except IRQ0 -> GSI 2 override). */
#define IRQ_PIT   0
#define IRQ_I8042 1
#define IRQ_COM1  4
#define IRQ_RTC   8
#define IRQ_ACPI_SCI 9
#define IRQ_I8042_MOUSE 12

#endif
