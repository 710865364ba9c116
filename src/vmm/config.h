/* What a VM is made of, filled from flags (later a config file or the API).
 * Everything here is validated before vm_create sees it. */
#ifndef KITE_VMM_CONFIG_H
#define KITE_VMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

enum engine_choice { ENGINE_AUTO, ENGINE_KVM, ENGINE_SOFT };
enum serial_mode { SERIAL_STDIO, SERIAL_NONE, SERIAL_FILE };
enum reboot_action { REBOOT_EXIT, REBOOT_RESTART };
enum console_mode { CONSOLE_SERIAL, CONSOLE_VIRTIO };

struct disk_config; /* backends/block/block.h */
struct net_config;  /* backends/net/net.h */
struct placement;   /* vmm/placement.h */
struct shm_config;  /* devices/pci/ivshmem.h */
#define VM_MAX_SHMS 4
#define VM_MAX_NICS 8
/* PCI slots 1-31 are shared by disks, virtio-rng and virtio-console. */
#define VM_MAX_DISKS 16

#define VM_MIN_MEMORY (16ULL << 20)
#define VM_DEFAULT_MEMORY (256ULL << 20)
#define VM_MAX_CPUS 255

struct vm_config {
	const char *kernel_path;
	const char *initrd_path;  /* NULL: none */
	const char *cmdline;      /* never NULL once parsed ("" for none) */
	uint64_t mem_size;        /* bytes */
	unsigned nr_cpus;
	enum engine_choice engine;
	bool debug_exit;          /* port 0xf4 isa-debug-exit */
	enum serial_mode serial;
	const char *serial_path;  /* for SERIAL_FILE */
	enum reboot_action on_reboot;
	const struct disk_config *disks; /* --disk, in order: vda, vdb, ... */
	unsigned nr_disks;
	bool rng;                 /* virtio-rng */
	const struct net_config *nets; /* --net, in order: eth0, eth1, ... */
	unsigned nr_nets;
	enum console_mode console;/* where the --serial backend goes: COM1 or hvc0 */
	const struct placement *placement; /* --cpu-affinity/--io-affinity/--sched; NULL: none */
	const struct shm_config *shms;     /* --shm: ivshmem devices, after the NICs */
	unsigned nr_shms;
};

void vm_config_defaults(struct vm_config *cfg);

#endif
