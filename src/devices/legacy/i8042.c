/* i8042 PS/2 controller.
 *
 * Controller commands (port 0x64): 0x20 read / 0x60 write the command byte,
 * 0xA7/0xA8 disable/enable the aux port, 0xA9 aux interface test (0: ok),
 * 0xAA self test (0x55), 0xAB keyboard interface test (0), 0xAD/0xAE
 * disable/enable the keyboard port, 0xC0 read input port, 0xD0/0xD1 read /
 * write output port, 0xD2/0xD3 write the keyboard/aux output buffer (the
 * loopback Linux uses to test the aux IRQ), 0xD4 write to the aux device,
 * 0xF0-0xFF pulse output lines (bit 0 clear pulses reset: 0xFE).
 *
 * Devices: the keyboard port has a keyboard that ACKs its commands (reset
 * answers 0xAA, identify answers 0xAB 0x83) and never sends keys. The aux
 * port has nothing attached: a byte sent to it comes back as 0xFE with the
 * timeout bit, as a real controller reports a missing mouse, so Linux's
 * psmouse gives up at once instead of waiting for timeouts.
 *
 * IRQ 1 (keyboard) and 12 (aux) are edge-triggered ISA lines: pulsed when a
 * byte reaches the output buffer with its interrupt enabled in the command
 * byte. Bytes queue behind each other; the next one is loaded when the
 * guest reads the data port. */
#include "devices/legacy/i8042.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "util/log.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

#define QUEUE_SIZE 16

/* Everything the guest can observe: the saved state. */
struct i8042_state {
	uint8_t ctr;          /* command byte */
	uint8_t outport;      /* bit 0: reset line (1 = running), bit 1: A20 */
	uint8_t status_extra; /* CMDDAT: the last write went to port 0x64 */
	uint8_t pending_cmd;  /* controller command waiting for its data byte */
	uint8_t kbd_pending;  /* keyboard command waiting for its parameter */
	/* Output queue: each byte with whether it came from the aux port and
	 * whether it signals a timeout. */
	uint8_t q[QUEUE_SIZE], q_aux[QUEUE_SIZE], q_timeout[QUEUE_SIZE];
	unsigned q_head, q_count;
	uint8_t last;         /* what the data port reads when empty */
};

#define I8042_STATE_VERSION 1

struct i8042 {
	pthread_mutex_t lock;
	struct vm *vm;
	struct i8042_state s;
};

static void raise_for_head(struct i8042 *k)
{
	if (!k->s.q_count || !k->vm)
		return;
	bool aux = k->s.q_aux[k->s.q_head];
	if (aux && (k->s.ctr & I8042_CTR_AUXINT))
		vm_irq_pulse(k->vm, IRQ_I8042_MOUSE);
	else if (!aux && (k->s.ctr & I8042_CTR_KBDINT))
		vm_irq_pulse(k->vm, IRQ_I8042);
}

static void push(struct i8042 *k, uint8_t v, bool aux, bool timeout)
{
	if (k->s.q_count == QUEUE_SIZE)
		return; /* the guest is not reading: drop, as the 8042 would */
	unsigned i = (k->s.q_head + k->s.q_count) % QUEUE_SIZE;
	k->s.q[i] = v;
	k->s.q_aux[i] = aux;
	k->s.q_timeout[i] = timeout;
	if (++k->s.q_count == 1)
		raise_for_head(k);
}

static void reset_line(struct i8042 *k)
{
	kite_info("i8042: guest requested a reset");
	vm_request_stop(k->vm, VM_STOP_RESET, 0);
}

/* A byte written to the data port with no controller command pending
 * goes to the keyboard. */
static void keyboard_write(struct i8042 *k, uint8_t v)
{
	if (k->s.kbd_pending) {
		uint8_t cmd = k->s.kbd_pending;
		k->s.kbd_pending = 0;
		push(k, 0xFA, false, false);
		if (cmd == 0xF0 && v == 0) /* query scan code set: set 2 */
			push(k, 0x02, false, false);
		return;
	}
	switch (v) {
	case 0xED: /* LEDs */
	case 0xF3: /* typematic rate */
	case 0xF0: /* scan code set */
		k->s.kbd_pending = v;
		push(k, 0xFA, false, false);
		break;
	case 0xEE: /* echo */
		push(k, 0xEE, false, false);
		break;
	case 0xF2: /* identify: an MF2 keyboard */
		push(k, 0xFA, false, false);
		push(k, 0xAB, false, false);
		push(k, 0x83, false, false);
		break;
	case 0xFF: /* reset and self test */
		push(k, 0xFA, false, false);
		push(k, 0xAA, false, false);
		break;
	default: /* enable, disable, set defaults, ...: acknowledged */
		push(k, 0xFA, false, false);
		break;
	}
}

static void controller_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case 0x20:
		push(k, k->s.ctr, false, false);
		break;
	case 0x60: case 0xD1: case 0xD2: case 0xD3: case 0xD4:
		k->s.pending_cmd = cmd;
		break;
	case 0xA7:
		k->s.ctr |= I8042_CTR_AUXDIS;
		break;
	case 0xA8:
		k->s.ctr &= (uint8_t)~I8042_CTR_AUXDIS;
		break;
	case 0xA9: case 0xAB: /* interface tests: no error */
		push(k, 0x00, false, false);
		break;
	case 0xAA:
		k->s.ctr |= I8042_CTR_SYS;
		push(k, 0x55, false, false);
		break;
	case 0xAD:
		k->s.ctr |= I8042_CTR_KBDDIS;
		break;
	case 0xAE:
		k->s.ctr &= (uint8_t)~I8042_CTR_KBDDIS;
		break;
	case 0xC0: /* input port: keyboard not inhibited */
		push(k, 0x80, false, false);
		break;
	case 0xD0:
		push(k, k->s.outport, false, false);
		break;
	default:
		if ((cmd & 0xF0) == 0xF0) {
			if (!(cmd & 0x01))
				reset_line(k);
		} else {
			kite_debug("i8042: unknown command 0x%02x ignored", cmd);
		}
		break;
	}
}

static void data_write(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->s.pending_cmd;
	k->s.pending_cmd = 0;
	switch (cmd) {
	case 0x60:
		k->s.ctr = v;
		break;
	case 0xD1:
		k->s.outport = v;
		if (!(v & 0x01))
			reset_line(k);
		break;
	case 0xD2:
		push(k, v, false, false);
		break;
	case 0xD3:
		push(k, v, true, false);
		break;
	case 0xD4: /* to the mouse: nobody there */
		push(k, 0xFE, true, true);
		break;
	default:
		keyboard_write(k, v);
		break;
	}
}

static uint8_t status(const struct i8042 *k)
{
	uint8_t st = I8042_STR_KEYLOCK | k->s.status_extra;
	if (k->s.ctr & I8042_CTR_SYS)
		st |= I8042_STR_SYS;
	if (k->s.q_count) {
		st |= I8042_STR_OBF;
		if (k->s.q_aux[k->s.q_head])
			st |= I8042_STR_AUXDATA;
		if (k->s.q_timeout[k->s.q_head])
			st |= I8042_STR_TIMEOUT;
	}
	return st;
}

static uint8_t data_read(struct i8042 *k)
{
	if (!k->s.q_count)
		return k->s.last;
	k->s.last = k->s.q[k->s.q_head];
	k->s.q_head = (k->s.q_head + 1) % QUEUE_SIZE;
	k->s.q_count--;
	raise_for_head(k);
	return k->s.last;
}

static uint64_t port60_read(void *opaque, uint64_t offset, unsigned size)
{
	struct i8042 *k = opaque;
	(void)offset; (void)size;
	pthread_mutex_lock(&k->lock);
	uint8_t v = data_read(k);
	pthread_mutex_unlock(&k->lock);
	return v;
}

static void port60_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct i8042 *k = opaque;
	(void)offset; (void)size;
	pthread_mutex_lock(&k->lock);
	k->s.status_extra &= (uint8_t)~I8042_STR_CMDDAT;
	data_write(k, (uint8_t)value);
	pthread_mutex_unlock(&k->lock);
}

static uint64_t port64_read(void *opaque, uint64_t offset, unsigned size)
{
	struct i8042 *k = opaque;
	(void)offset; (void)size;
	pthread_mutex_lock(&k->lock);
	uint8_t v = status(k);
	pthread_mutex_unlock(&k->lock);
	return v;
}

static void port64_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct i8042 *k = opaque;
	(void)offset; (void)size;
	pthread_mutex_lock(&k->lock);
	k->s.status_extra |= I8042_STR_CMDDAT;
	k->s.pending_cmd = 0;
	controller_command(k, (uint8_t)value);
	pthread_mutex_unlock(&k->lock);
}

static void i8042_reset_locked(struct i8042 *k)
{
	k->s.ctr = I8042_CTR_KBDINT | I8042_CTR_AUXINT | I8042_CTR_SYS | I8042_CTR_XLATE;
	k->s.outport = 0x03; /* reset line high (not in reset), A20 on */
	k->s.status_extra = 0;
	k->s.pending_cmd = k->s.kbd_pending = 0;
	k->s.q_head = k->s.q_count = 0;
	k->s.last = 0;
}

static void i8042_reset(void *dev)
{
	struct i8042 *k = dev;
	pthread_mutex_lock(&k->lock);
	i8042_reset_locked(k);
	pthread_mutex_unlock(&k->lock);
}

static size_t i8042_save(void *dev, void *buf, size_t len)
{
	struct i8042 *k = dev;
	size_t need = 1 + sizeof(struct i8042_state);
	if (len < need)
		return need;
	pthread_mutex_lock(&k->lock);
	((uint8_t *)buf)[0] = I8042_STATE_VERSION;
	memcpy((uint8_t *)buf + 1, &k->s, sizeof(k->s));
	pthread_mutex_unlock(&k->lock);
	return need;
}

static int i8042_restore(void *dev, const void *buf, size_t len)
{
	struct i8042 *k = dev;
	struct i8042_state st;
	if (len != 1 + sizeof(st) || ((const uint8_t *)buf)[0] != I8042_STATE_VERSION)
		return -EINVAL;
	memcpy(&st, (const uint8_t *)buf + 1, sizeof(st));
	if (st.q_head >= QUEUE_SIZE || st.q_count > QUEUE_SIZE)
		return -EINVAL;
	pthread_mutex_lock(&k->lock);
	k->s = st;
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static void i8042_destroy(void *dev)
{
	struct i8042 *k = dev;
	if (k->vm) {
		bus_unregister(&k->vm->pio, PORT_I8042_DATA, k);
		bus_unregister(&k->vm->pio, PORT_I8042_CMD, k);
	}
	pthread_mutex_destroy(&k->lock);
	free(k);
}

int i8042_send_ctrl_alt_del(struct i8042 *k)
{
	/* Ctrl, Alt, Delete pressed then released, as the keyboard sends them in
	 * scan code set 2; with translation on (Linux's default) the controller
	 * hands the guest the set 1 equivalents instead. */
	static const uint8_t set1[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
	static const uint8_t set2[] = { 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71,
					0xf0, 0x11, 0xf0, 0x14 };
	pthread_mutex_lock(&k->lock);
	bool xlate = k->s.ctr & I8042_CTR_XLATE;
	const uint8_t *seq = xlate ? set1 : set2;
	size_t n = xlate ? sizeof(set1) : sizeof(set2);
	int ret = 0;
	if (k->s.q_count + n > QUEUE_SIZE)
		ret = -EBUSY; /* the guest is not reading its keyboard */
	else
		for (size_t i = 0; i < n; i++)
			push(k, seq[i], false, false);
	pthread_mutex_unlock(&k->lock);
	return ret;
}

const struct device_ops i8042_ops = {
	.name = "i8042", .reset = i8042_reset, .save = i8042_save, .restore = i8042_restore,
	.destroy = i8042_destroy,
};

int i8042_create(struct vm *vm, struct i8042 **out)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	pthread_mutex_init(&k->lock, NULL);
	k->vm = vm;
	i8042_reset_locked(k);
	int ret = bus_register(&vm->pio, PORT_I8042_DATA, 1, port60_read, port60_write, k, "i8042");
	if (!ret) {
		ret = bus_register(&vm->pio, PORT_I8042_CMD, 1, port64_read, port64_write, k, "i8042");
		if (ret)
			bus_unregister(&vm->pio, PORT_I8042_DATA, k);
	}
	if (!ret)
		ret = vm_add_device(vm, &i8042_ops, k);
	if (ret) {
		i8042_destroy(k);
		return ret;
	}
	if (out)
		*out = k;
	return 0;
}
