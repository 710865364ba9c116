/* ivshmem: QEMU's inter-VM shared memory PCI device (1af4:1110, revision
 * 1), as its docs/specs/ivshmem-spec.rst describes it:
 *   BAR0  256 bytes of registers: IntrMask, IntrStatus, IVPosition, Doorbell
 *   BAR1  MSI-X table and PBA (doorbell mode only)
 *   BAR2  the shared memory itself, mapped into the guest in place
 * Two modes, as QEMU's ivshmem-plain and ivshmem-doorbell:
 *   --shm path=FILE[,size=SIZE]      a shared file (created at SIZE when it
 *                                    does not exist); no interrupts
 *   --shm server=SOCKET[,vectors=N]  join an ivshmem server (kite shm-server
 *                                    or anything speaking its protocol): the
 *                                    server hands out the memory, this
 *                                    peer's ID and the peers' eventfds, so a
 *                                    Doorbell write interrupts a peer
 * The memory size is a power of two between 4 KiB and 256 MiB (a BAR). */
#ifndef KITE_DEVICES_PCI_IVSHMEM_H
#define KITE_DEVICES_PCI_IVSHMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IVSHMEM_VENDOR_ID 0x1af4
#define IVSHMEM_DEVICE_ID 0x1110
#define IVSHMEM_MIN_SIZE  (4ULL << 10)
#define IVSHMEM_MAX_SIZE  (256ULL << 20)
#define IVSHMEM_MAX_VECTORS 64
#define IVSHMEM_MAX_PEERS   65536

/* BAR0 register offsets */
#define IVSHMEM_INTR_MASK   0x00
#define IVSHMEM_INTR_STATUS 0x04
#define IVSHMEM_IV_POSITION 0x08
#define IVSHMEM_DOORBELL    0x0c
#define IVSHMEM_REG_SIZE    256

struct shm_config {
	char path[256];       /* plain: the shared file */
	char server[108];     /* doorbell: the server's Unix socket */
	uint64_t size;        /* plain: 0 = the file's size */
	unsigned vectors;     /* doorbell: MSI-X vectors (default 1) */
};

/* Parse one --shm: 0 or -EINVAL having written why to err. */
int shm_config_parse(const char *text, struct shm_config *out, char *err, size_t errlen);

struct vm;
struct pci_mmio_window;

/* Create the device in PCI slot slot with its BARs from win. Reports its
 * own errors (naming the file or the socket); 0 or a negative errno. */
int ivshmem_create(struct vm *vm, const struct shm_config *cfg, unsigned slot,
		   struct pci_mmio_window *win);

/* The pieces of the BAR0 register file, for unit tests: a doorbell write
 * decodes to (peer, vector); a reading of IntrStatus clears it. */
static inline uint16_t ivshmem_doorbell_peer(uint32_t v) { return (uint16_t)(v >> 16); }
static inline uint16_t ivshmem_doorbell_vector(uint32_t v) { return (uint16_t)v; }

#endif
