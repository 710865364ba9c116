/* The devices every kite PC has, created by the real vm_create and driven
 * through the port bus while fake vCPU threads run, then torn down by
 * vm_destroy (event loop included). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/serial8250.h"
#include "vmm/vm.h"

static struct fake_state {
	int dummy;
} fake;

static int f_vm_init(struct vm *vm) { vm->engine_data = &fake; return 0; }
static void f_vm_destroy(struct vm *vm) { vm->engine_data = NULL; }
static int f_vcpu_init(struct vcpu *v) { v->engine_data = &fake; return 0; }
static void f_vcpu_destroy(struct vcpu *v) { v->engine_data = NULL; }
static int f_vcpu_run(struct vcpu *v)
{
	while (!vm_should_stop(v->vm))
		usleep(1000);
	return 0;
}
static void f_vcpu_kick(struct vcpu *v) { (void)v; }
static int f_irq_line(struct vm *vm, unsigned gsi, bool level)
{
	(void)vm; (void)gsi; (void)level;
	return 0;
}

static const struct engine_ops fake_full = {
	.name = "fake", .vm_init = f_vm_init, .vm_destroy = f_vm_destroy,
	.vcpu_init = f_vcpu_init, .vcpu_destroy = f_vcpu_destroy, .vcpu_run = f_vcpu_run,
	.vcpu_kick = f_vcpu_kick, .irq_line = f_irq_line,
};

static bool claimed(struct vm *vm, uint16_t port)
{
	uint64_t v;
	return bus_read(&vm->pio, port, 1, &v);
}

Test(vm_devices, created_run_and_destroyed)
{
	char dir[] = "/tmp/kite-vm-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/serial.txt", dir);
	struct vm_config cfg;
	vm_config_defaults(&cfg);
	cfg.mem_size = 32 << 20;
	cfg.nr_cpus = 2;
	cfg.serial = SERIAL_FILE;
	cfg.serial_path = path;
	struct vm *vm = calloc(1, sizeof(*vm));
	cr_assert_eq(vm_create(vm, &cfg, &fake_full), 0);
	const uint16_t ports[] = { PORT_COM1, PORT_COM1 + 7, PORT_I8042_DATA, PORT_I8042_CMD,
				   PORT_CMOS, PORT_CMOS + 1, PORT_POST, PORT_ACPI_PM1_EVT,
				   PORT_ACPI_PM1_CNT, PORT_ACPI_PM_TMR, PORT_PCI_CONFIG,
				   PORT_RESET_CF9, 0xCFC, 0xCFF };
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
		cr_assert(claimed(vm, ports[i]), "port 0x%x claimed", ports[i]);
	cr_assert_not(claimed(vm, PORT_PIT_CH2_GATE), "0x61 belongs to the platform");
	cr_assert_not(claimed(vm, PORT_DEBUG_EXIT), "0xf4 is not created here");
	uint64_t v;
	cr_assert(bus_read(&vm->mmio, LAYOUT_PCI_ECAM_BASE, 4, &v));
	cr_assert_eq(v, 0x00081b36);
	cr_assert_not_null(vm->pci);
	cr_assert_not_null(vm->loop);

	cr_assert_eq(vm_run(vm), 0);
	for (const char *s = "guest says hi\n"; *s; s++)
		bus_write(&vm->pio, PORT_COM1 + UART_THR, 1, (uint8_t)*s);
	bus_write(&vm->pio, PORT_ACPI_PM1_CNT, 2,
		  (ACPI_PM_SLP_TYP_S5 << ACPI_PM1_CNT_SLP_TYP_SHIFT) | ACPI_PM1_CNT_SLP_EN);
	vm_join(vm);
	cr_assert_eq(atomic_load(&vm->stop_reason), VM_STOP_POWEROFF);
	vm_destroy(vm);
	free(vm);

	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char line[64] = { 0 };
	cr_assert_not_null(fgets(line, sizeof(line), f));
	fclose(f);
	cr_assert_str_eq(line, "guest says hi\n", "nothing lost at exit");
	unlink(path);
	rmdir(dir);
}

Test(vm_devices, serial_file_error_names_the_path)
{
	struct vm_config cfg;
	vm_config_defaults(&cfg);
	cfg.mem_size = 16 << 20;
	cfg.serial = SERIAL_FILE;
	cfg.serial_path = "/nonexistent-kite-dir/serial.txt";
	struct vm *vm = calloc(1, sizeof(*vm));
	cr_assert_eq(vm_create(vm, &cfg, &fake_full), -ENOENT);
	free(vm);
}

/* A hostile guest: random accesses of every size to every port and to
 * ECAM must never crash kite (run under make SAN=1 too). */
Test(vm_devices, random_accesses_do_not_crash)
{
	struct vm_config cfg;
	vm_config_defaults(&cfg);
	cfg.mem_size = 16 << 20;
	cfg.serial = SERIAL_NONE;
	struct vm *vm = calloc(1, sizeof(*vm));
	cr_assert_eq(vm_create(vm, &cfg, &fake_full), 0);
	static const uint16_t bases[] = { PORT_COM1, PORT_I8042_DATA, PORT_I8042_CMD, PORT_CMOS,
					  PORT_POST, PORT_ACPI_PM_BASE, PORT_PCI_CONFIG };
	static const unsigned sizes[] = { 1, 2, 4 };
	uint32_t x = 12345;
	for (int i = 0; i < 200000; i++) {
		x = x * 1103515245 + 12345;
		uint16_t port = (uint16_t)(bases[(x >> 8) % 7] + (x >> 16) % 12);
		unsigned size = sizes[(x >> 4) % 3];
		uint64_t v = (uint64_t)x * 2654435761u;
		/* Keep the guest from powering off or resetting so that every
		 * access reaches a live machine: skip the requests that do. */
		if ((port == PORT_I8042_CMD && ((v & 0xF1) == 0xF0 || (v & 0xFF) == 0xD1)) ||
		    (port >= PORT_ACPI_PM1_CNT && port <= PORT_ACPI_PM1_CNT + 1) ||
		    (port == PORT_RESET_CF9 && size == 1))
			continue;
		if (x & 1) {
			bus_write(&vm->pio, port, size, v);
		} else {
			uint64_t r;
			bus_read(&vm->pio, port, size, &r);
		}
		uint64_t off = ((uint64_t)x << 4) % LAYOUT_PCI_ECAM_SIZE;
		uint64_t r;
		if (x & 2)
			bus_write(&vm->mmio, LAYOUT_PCI_ECAM_BASE + off, size, v);
		else
			bus_read(&vm->mmio, LAYOUT_PCI_ECAM_BASE + off, size, &r);
	}
	uint64_t v;
	cr_assert(bus_read(&vm->mmio, LAYOUT_PCI_ECAM_BASE, 4, &v));
	cr_assert_eq(v, 0x00081b36, "the host bridge is intact");
	vm_destroy(vm);
	free(vm);
}
