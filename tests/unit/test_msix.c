/* MSI-X on its own: the capability, the table and PBA as a guest reaches
 * them, masking and pending bits, delivery through the engine, and the
 * accesses a hostile guest makes. */
#include <criterion/criterion.h>

#include "devices/pci/msix.h"
#include "fake_vm.h"

#define CAP 0x50
#define NR 5

static struct vm vm;
static struct vm_config cfg;
static struct fake_engine fe;
static struct pci_device dev;
static struct msix m;
static unsigned sent;
static uint64_t last_addr;
static uint32_t last_data;

static int rec_msi(struct vm *v, uint64_t addr, uint32_t data)
{
	(void)v;
	sent++;
	last_addr = addr;
	last_data = data;
	return 0;
}

static const struct engine_ops msi_engine = {
	.name = "fake-msi", .irq_line = fake_irq_line, .irq_msi = rec_msi,
	.vm_destroy = fake_vm_destroy_engine,
};

static void setup(void)
{
	fake_vm_init(&vm, &cfg, &fe, 0);
	vm.engine = &msi_engine;
	sent = 0;
	memset(&dev, 0, sizeof(dev));
	pci_device_init(&dev, "msix-test", 0x1234, 0x5678, 0xFF0000, 0, false);
	cr_assert_eq(msix_init(&m, &vm, &dev, CAP, NR, 2, 0x1000, 0x1800), 0);
}

static void teardown(void)
{
	msix_fini(&m);
	vm_destroy(&vm);
}

/* A config write as the PCI bus would do it: mask applied, then the hook. */
static void ctl_write(uint16_t v)
{
	for (unsigned i = 0; i < 2; i++) {
		uint8_t *c = &dev.config[CAP + 2 + i], wm = dev.wmask[CAP + 2 + i];
		*c = (uint8_t)((*c & ~wm) | ((v >> (8 * i)) & wm));
	}
	msix_config_write(&m, &dev, CAP + 2, 2);
}

static void program(unsigned v, uint32_t data, bool masked)
{
	msix_table_write(&m, 16 * v, 8, 0xFEE00000ULL);
	msix_table_write(&m, 16 * v + 8, 4, data);
	msix_table_write(&m, 16 * v + 12, 4, masked);
}

TestSuite(msix, .init = setup, .fini = teardown);

Test(msix, capability_layout)
{
	cr_assert_eq(dev.config[CAP], PCI_CAP_ID_MSIX);
	cr_assert_eq(pci_get_word(dev.config, CAP + 2), NR - 1);
	cr_assert_eq(pci_get_long(dev.config, CAP + 4), 0x1000 | 2);
	cr_assert_eq(pci_get_long(dev.config, CAP + 8), 0x1800 | 2);
	cr_assert_eq(pci_get_word(dev.wmask, CAP + 2), 0xC000, "only ENABLE and MASKALL");
	cr_assert_eq(pci_get_long(dev.wmask, CAP + 4), 0);
	cr_assert_eq(msix_table_bytes(NR), 80);
	cr_assert_eq(msix_pba_bytes(NR), 8);
	struct msix bad;
	cr_assert_eq(msix_init(&bad, &vm, &dev, CAP, 0, 2, 0, 0x800), -EINVAL);
	cr_assert_eq(msix_init(&bad, &vm, &dev, CAP, 2049, 2, 0, 0x800), -EINVAL);
	cr_assert_eq(msix_init(&bad, &vm, &dev, CAP, 4, 6, 0, 0x800), -EINVAL);
	cr_assert_eq(msix_init(&bad, &vm, &dev, CAP, 4, 0, 4, 0x800), -EINVAL);
	cr_assert_eq(msix_init(&bad, &vm, &dev, 0xF8, 4, 0, 0, 0x800), -EINVAL);
}

Test(msix, entries_start_masked_and_table_reads_back)
{
	for (unsigned v = 0; v < NR; v++)
		cr_assert_eq(msix_table_read(&m, 16 * v + 12, 4), 1);
	program(3, 0x1234, false);
	cr_assert_eq(msix_table_read(&m, 48, 4), 0xFEE00000);
	cr_assert_eq(msix_table_read(&m, 48, 8), 0xFEE00000);
	cr_assert_eq(msix_table_read(&m, 56, 8), 0x1234);
	cr_assert_eq(msix_table_read(&m, 57, 1), 0x12);
	cr_assert_eq(msix_table_read(&m, 58, 2), 0);
	/* byte write inside a dword */
	msix_table_write(&m, 56, 1, 0xAB);
	cr_assert_eq(msix_table_read(&m, 56, 4), 0x12AB);
	/* reserved vector-control bits stay 0 */
	msix_table_write(&m, 60, 4, 0xFFFFFFFE);
	cr_assert_eq(msix_table_read(&m, 60, 4), 0);
}

Test(msix, disabled_means_intx)
{
	program(0, 0x30, false);
	cr_assert_eq(msix_notify(&m, 0), -ENODEV);
	cr_assert_eq(sent, 0);
	ctl_write(PCI_MSIX_FLAGS_ENABLE);
	cr_assert(msix_enabled(&m));
	cr_assert_eq(msix_notify(&m, 0), 0);
	cr_assert_eq(sent, 1);
	cr_assert_eq(last_addr, 0xFEE00000);
	cr_assert_eq(last_data, 0x30);
}

Test(msix, masked_sets_pending_and_unmask_sends)
{
	ctl_write(PCI_MSIX_FLAGS_ENABLE);
	program(4, 0x44, true);
	cr_assert_eq(msix_notify(&m, 4), 1);
	cr_assert_eq(msix_notify(&m, 4), 1, "still one pending bit");
	cr_assert(msix_is_pending(&m, 4));
	cr_assert_eq(msix_pba_read(&m, 0, 8), 1u << 4);
	cr_assert_eq(msix_pba_read(&m, 0, 1), 1u << 4);
	cr_assert_eq(sent, 0);
	msix_table_write(&m, 4 * 16 + 12, 4, 0);
	cr_assert_eq(sent, 1, "one message for the pending bit");
	cr_assert_eq(last_data, 0x44);
	cr_assert_eq(msix_pba_read(&m, 0, 8), 0);
}

Test(msix, function_mask)
{
	ctl_write(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	program(1, 0x11, false);
	program(2, 0x22, true);
	cr_assert_eq(msix_notify(&m, 1), 1);
	cr_assert_eq(msix_notify(&m, 2), 1);
	ctl_write(PCI_MSIX_FLAGS_ENABLE);
	cr_assert_eq(sent, 1, "vector 1 fires, vector 2 still masked itself");
	cr_assert_eq(last_data, 0x11);
	cr_assert(msix_is_pending(&m, 2));
	msix_table_write(&m, 2 * 16 + 12, 4, 0);
	cr_assert_eq(sent, 2);
	/* pending while disabled does not fire on a later enable-less write */
	ctl_write(0);
	cr_assert_not(msix_enabled(&m));
}

Test(msix, hostile_accesses)
{
	ctl_write(PCI_MSIX_FLAGS_ENABLE);
	cr_assert_eq(msix_notify(&m, NR), -EINVAL);
	cr_assert_eq(msix_notify(&m, 0xFFFF), -EINVAL);
	cr_assert_eq(msix_table_read(&m, 16 * NR, 4), ~0ULL, "past the table");
	cr_assert_eq(msix_table_read(&m, ~0ULL - 3, 4), ~0ULL);
	cr_assert_eq(msix_table_read(&m, 2, 4), ~0ULL, "misaligned");
	cr_assert_eq(msix_table_read(&m, 0, 3), ~0ULL, "odd size");
	cr_assert_eq(msix_table_read(&m, 0, 16), ~0ULL);
	msix_table_write(&m, 16 * NR, 4, 0);
	msix_table_write(&m, 1, 2, 0xFFFF);
	msix_table_write(&m, 0, 0, 0);
	msix_table_write(&m, 0x7FFFFFFFFFFFFFF0ULL, 8, 0);
	cr_assert_eq(msix_table_read(&m, 0, 4), 0, "nothing written");
	cr_assert_eq(msix_pba_read(&m, 8, 8), ~0ULL, "past the PBA");
	cr_assert_eq(msix_pba_read(&m, 3, 2), ~0ULL);
	/* a message to a non-interrupt address is dropped */
	msix_table_write(&m, 0, 4, 0x1000);
	msix_table_write(&m, 12, 4, 0);
	cr_assert_eq(msix_notify(&m, 0), 0);
	cr_assert_eq(sent, 0);
	/* reset: all masked, nothing pending, disabled */
	program(1, 1, true);
	msix_notify(&m, 1);
	msix_reset(&m, &dev);
	cr_assert_not(msix_enabled(&m));
	cr_assert_not(msix_is_pending(&m, 1));
	cr_assert_eq(msix_table_read(&m, 12, 4), 1);
	cr_assert_eq(pci_get_word(dev.config, CAP + 2), NR - 1);
}

Test(msix, save_restore)
{
	ctl_write(PCI_MSIX_FLAGS_ENABLE);
	program(2, 0x22, true);
	msix_notify(&m, 2);
	size_t need = msix_save(&m, NULL, 0);
	uint8_t buf[512];
	cr_assert_leq(need, sizeof(buf));
	cr_assert_eq(msix_save(&m, buf, sizeof(buf)), need);
	msix_reset(&m, &dev);
	cr_assert_eq(msix_restore(&m, buf, need - 1), -EINVAL);
	buf[0] ^= 1;
	cr_assert_eq(msix_restore(&m, buf, need), -EINVAL);
	buf[0] ^= 1;
	cr_assert_eq(msix_restore(&m, buf, need), 0);
	cr_assert(msix_enabled(&m));
	cr_assert(msix_is_pending(&m, 2));
	cr_assert_eq(msix_table_read(&m, 2 * 16 + 8, 4), 0x22);
	msix_table_write(&m, 2 * 16 + 12, 4, 0);
	cr_assert_eq(sent, 1, "the pending message survives");
}
