#include <criterion/criterion.h>
#include <errno.h>

#include "arch/x86/layout.h"
#include "devices/legacy/i8042.h"
#include "fake_vm.h"

static struct vm vm;
static struct vm_config cfg;
static struct fake_engine fe;

static void setup(void)
{
	fake_vm_init(&vm, &cfg, &fe, 0);
	cr_assert_eq(i8042_create(&vm, NULL), 0);
}

static void teardown(void)
{
	vm_destroy(&vm);
}

static uint8_t status(void) { return (uint8_t)pio_in(&vm, PORT_I8042_CMD, 1); }
static uint8_t data(void) { return (uint8_t)pio_in(&vm, PORT_I8042_DATA, 1); }
static void cmd(uint8_t c) { pio_out(&vm, PORT_I8042_CMD, 1, c); }
static void put(uint8_t v) { pio_out(&vm, PORT_I8042_DATA, 1, v); }

/* Issue a command with an answer, as Linux's i8042_command does. */
static uint8_t ask(uint8_t c)
{
	cmd(c);
	cr_assert(status() & I8042_STR_OBF, "command 0x%02x answers", c);
	return data();
}

TestSuite(i8042, .init = setup, .fini = teardown);

Test(i8042, empty_and_flush)
{
	cr_assert_eq(status() & I8042_STR_OBF, 0);
	cr_assert_eq(status() & I8042_STR_IBF, 0, "never busy: Linux never waits");
	cr_assert_neq(status(), 0xFF, "a controller is present");
}

Test(i8042, self_test_and_interface_tests)
{
	cr_assert_eq(ask(0xAA), 0x55);
	cr_assert(status() & I8042_STR_SYS);
	cr_assert_eq(ask(0xAB), 0x00);
	cr_assert_eq(ask(0xA9), 0x00);
	cr_assert_eq(status() & I8042_STR_OBF, 0);
}

Test(i8042, command_byte_and_port_enables)
{
	uint8_t ctr = ask(0x20);
	cr_assert(ctr & I8042_CTR_XLATE);
	cmd(0x60);
	put(ctr & ~(I8042_CTR_KBDINT | I8042_CTR_AUXINT));
	cr_assert_eq(ask(0x20), ctr & ~(I8042_CTR_KBDINT | I8042_CTR_AUXINT));
	unsigned calls = fe.calls;
	cmd(0xA7);
	cr_assert(ask(0x20) & I8042_CTR_AUXDIS);
	cmd(0xA8);
	cr_assert_not(ask(0x20) & I8042_CTR_AUXDIS);
	cmd(0xAD);
	cr_assert(ask(0x20) & I8042_CTR_KBDDIS);
	cmd(0xAE);
	cr_assert_not(ask(0x20) & I8042_CTR_KBDDIS);
	cr_assert_eq(fe.calls, calls, "interrupts were off");
}

Test(i8042, aux_loopback_interrupts_on_irq12)
{
	cmd(0xD3);
	put(0x5A);
	cr_assert_eq(fe.raises[IRQ_I8042_MOUSE], 1);
	cr_assert_not(fe.level[IRQ_I8042_MOUSE], "edge: pulsed");
	uint8_t st = status();
	cr_assert(st & I8042_STR_OBF);
	cr_assert(st & I8042_STR_AUXDATA);
	cr_assert_eq(data(), 0x5A);
	cr_assert_eq(status() & (I8042_STR_OBF | I8042_STR_AUXDATA), 0);
}

Test(i8042, no_mouse_answers_with_timeout)
{
	cmd(0xD4);
	put(0xFF);
	uint8_t st = status();
	cr_assert(st & I8042_STR_AUXDATA);
	cr_assert(st & I8042_STR_TIMEOUT);
	cr_assert_eq(data(), 0xFE);
}

Test(i8042, keyboard_answers_its_commands)
{
	put(0xFF); /* reset */
	cr_assert_eq(fe.raises[IRQ_I8042], 1);
	cr_assert_eq(data(), 0xFA);
	cr_assert_eq(fe.raises[IRQ_I8042], 2, "next byte, next interrupt");
	cr_assert_eq(data(), 0xAA);
	put(0xF2); /* identify */
	cr_assert_eq(data(), 0xFA);
	cr_assert_eq(data(), 0xAB);
	cr_assert_eq(data(), 0x83);
	put(0xED); /* LEDs + parameter */
	cr_assert_eq(data(), 0xFA);
	put(0x07);
	cr_assert_eq(data(), 0xFA);
	cr_assert_eq(status() & I8042_STR_OBF, 0);
	cr_assert_eq(data(), 0xFA, "an empty buffer reads the last byte");
}

Test(i8042, reset_command_stops_the_vm)
{
	cmd(0xD0);
	cr_assert(data() & 0x01, "reset line high");
	cr_assert_eq(stop_reason(&vm), VM_RUNNING);
	cmd(0xFE);
	cr_assert_eq(stop_reason(&vm), VM_STOP_RESET);
}

Test(i8042, output_port_reset_bit)
{
	cmd(0xD1);
	put(0x03);
	cr_assert_eq(stop_reason(&vm), VM_RUNNING);
	cmd(0xD1);
	put(0x02);
	cr_assert_eq(stop_reason(&vm), VM_STOP_RESET);
}

Test(i8042, unknown_commands_and_reset)
{
	cmd(0x42);
	cmd(0xFF); /* pulse nothing */
	cr_assert_eq(stop_reason(&vm), VM_RUNNING);
	cmd(0xD2);
	put(0x11);
	i8042_ops.reset(vm.devices[0].dev);
	cr_assert_eq(status() & I8042_STR_OBF, 0);
}

Test(i8042, save_restore)
{
	void *dev = vm.devices[0].dev;
	cmd(0xD2);
	put(0x42);
	uint8_t blob[128];
	size_t n = i8042_ops.save(dev, blob, sizeof(blob));
	cr_assert(n <= sizeof(blob));
	cr_assert_eq(data(), 0x42);
	cr_assert_eq(i8042_ops.restore(dev, blob, n), 0);
	cr_assert(status() & I8042_STR_OBF);
	cr_assert_eq(data(), 0x42);
	blob[0] = 7;
	cr_assert_eq(i8042_ops.restore(dev, blob, n), -EINVAL);
}
