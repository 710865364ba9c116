/* 8250/16550A UART.
 *
 * What a guest sees: a 16550A with 16-byte FIFOs. Transmission is instant
 * (THR and the shift register are always empty again after a write), so LSR
 * always has THRE and TEMT, and a THRE interrupt is pending after every
 * write while enabled. Interrupt priority, highest first: line status
 * (overrun), received data (IIR 0x4 at or above the FIFO trigger level, 0xC
 * "character timeout" below it: the timeout is taken as already expired, so
 * a lone typed key interrupts at once), THR empty, modem status.
 *
 * The IRQ is a level: high while an enabled interrupt is pending and the
 * PC's OUT2 gate (MCR bit 3) is on; in loop mode OUT2 is looped back
 * internally, so the line stays low, as on a real UART.
 *
 * Receive: the backend asks can_receive() first and never hands over more
 * than fits; when the FIFO is full (or in loop mode, where the receiver is
 * disconnected from the line) the UART pauses the backend, and resumes it
 * when the guest reads. Overrun therefore happens only in loop mode. */
#include "devices/legacy/serial8250.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backends/char/char.h"
#include "util/log.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

/* Everything the guest can observe: this is the saved state. */
struct serial_regs {
	uint8_t rx[UART_FIFO_SIZE];
	uint8_t rx_head, rx_count;
	uint8_t ier, lcr, mcr, msr, scr, dll, dlm, fcr;
	uint8_t overrun;      /* LSR.OE, cleared by reading LSR */
	uint8_t thr_pending;  /* THRE interrupt condition */
};

#define SERIAL_STATE_VERSION 1

struct serial8250 {
	pthread_mutex_t lock;
	struct vm *vm;
	unsigned gsi;
	uint16_t base;
	struct char_backend *be;
	struct serial_regs r;
	bool irq_level;
	bool rx_paused;  /* the backend was told to stop reading */
};

static unsigned rx_capacity(const struct serial8250 *s)
{
	return (s->r.fcr & UART_FCR_ENABLE) ? UART_FIFO_SIZE : 1;
}

static unsigned rx_trigger(const struct serial8250 *s)
{
	static const uint8_t levels[4] = { 1, 4, 8, 14 };
	return (s->r.fcr & UART_FCR_ENABLE) ? levels[s->r.fcr >> 6] : 1;
}

static uint8_t compute_iir(const struct serial8250 *s)
{
	const struct serial_regs *r = &s->r;
	uint8_t iir;
	if ((r->ier & UART_IER_RLSI) && r->overrun)
		iir = UART_IIR_RLSI;
	else if ((r->ier & UART_IER_RDI) && r->rx_count)
		iir = r->rx_count >= rx_trigger(s) ? UART_IIR_RDI : UART_IIR_CTI;
	else if ((r->ier & UART_IER_THRI) && r->thr_pending)
		iir = UART_IIR_THRI;
	else if ((r->ier & UART_IER_MSI) && (r->msr & 0x0F))
		iir = UART_IIR_MSI;
	else
		iir = UART_IIR_NO_INT;
	if (r->fcr & UART_FCR_ENABLE)
		iir |= UART_IIR_FIFO;
	return iir;
}

static void update_irq(struct serial8250 *s)
{
	bool level = !(compute_iir(s) & UART_IIR_NO_INT) && (s->r.mcr & UART_MCR_OUT2) &&
		     !(s->r.mcr & UART_MCR_LOOP);
	if (level != s->irq_level) {
		s->irq_level = level;
		if (s->vm)
			vm_irq_line(s->vm, s->gsi, level);
	}
}

/* MSR status bits: the modem lines, or in loop mode the MCR outputs. The
 * delta bits record changes since the guest last read MSR. */
static void update_msr(struct serial8250 *s)
{
	uint8_t mcr = s->r.mcr, now;
	if (mcr & UART_MCR_LOOP)
		now = ((mcr & UART_MCR_RTS) ? UART_MSR_CTS : 0) |
		      ((mcr & UART_MCR_DTR) ? UART_MSR_DSR : 0) |
		      ((mcr & UART_MCR_OUT1) ? UART_MSR_RI : 0) |
		      ((mcr & UART_MCR_OUT2) ? UART_MSR_DCD : 0);
	else
		now = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS; /* a host is attached */
	uint8_t old = s->r.msr & 0xF0, changed = old ^ now, delta = s->r.msr & 0x0F;
	if (changed & UART_MSR_CTS) delta |= UART_MSR_DCTS;
	if (changed & UART_MSR_DSR) delta |= UART_MSR_DDSR;
	if ((old & UART_MSR_RI) && !(now & UART_MSR_RI)) delta |= UART_MSR_TERI;
	if (changed & UART_MSR_DCD) delta |= UART_MSR_DDCD;
	s->r.msr = now | delta;
}

static bool can_take_input(const struct serial8250 *s)
{
	return !(s->r.mcr & UART_MCR_LOOP) && s->r.rx_count < rx_capacity(s);
}

/* Resume the backend when the guest made room (called with the lock). */
static void maybe_resume(struct serial8250 *s)
{
	if (s->rx_paused && can_take_input(s)) {
		s->rx_paused = false;
		char_backend_set_rx(s->be, true);
	}
}

static void rx_clear(struct serial8250 *s)
{
	s->r.rx_head = s->r.rx_count = 0;
	maybe_resume(s);
}

static void rx_push(struct serial8250 *s, uint8_t c)
{
	struct serial_regs *r = &s->r;
	unsigned cap = rx_capacity(s);
	if (r->rx_count >= cap) {
		r->overrun = 1;
		if (cap == 1) /* no FIFO: the new byte replaces the old */
			r->rx[r->rx_head] = c;
		return;
	}
	r->rx[(r->rx_head + r->rx_count) % UART_FIFO_SIZE] = c;
	r->rx_count++;
}

static uint8_t rx_pop(struct serial8250 *s)
{
	struct serial_regs *r = &s->r;
	if (!r->rx_count)
		return 0;
	uint8_t c = r->rx[r->rx_head];
	r->rx_head = (r->rx_head + 1) % UART_FIFO_SIZE;
	r->rx_count--;
	maybe_resume(s);
	return c;
}

static uint8_t reg_read(struct serial8250 *s, unsigned reg)
{
	struct serial_regs *r = &s->r;
	uint8_t v = 0xFF;
	bool dlab = r->lcr & UART_LCR_DLAB;
	switch (reg) {
	case 0:
		v = dlab ? r->dll : rx_pop(s);
		break;
	case 1:
		v = dlab ? r->dlm : r->ier;
		break;
	case 2:
		v = compute_iir(s);
		if ((v & 0x0F) == UART_IIR_THRI)
			r->thr_pending = 0; /* reading IIR acknowledges THRE */
		break;
	case 3:
		v = r->lcr;
		break;
	case 4:
		v = r->mcr;
		break;
	case 5:
		v = UART_LSR_THRE | UART_LSR_TEMT | (r->rx_count ? UART_LSR_DR : 0) |
		    (r->overrun ? UART_LSR_OE : 0);
		r->overrun = 0;
		break;
	case 6:
		v = r->msr;
		r->msr &= 0xF0;
		break;
	case 7:
		v = r->scr;
		break;
	}
	update_irq(s);
	return v;
}

static void reg_write(struct serial8250 *s, unsigned reg, uint8_t v)
{
	struct serial_regs *r = &s->r;
	bool dlab = r->lcr & UART_LCR_DLAB;
	switch (reg) {
	case 0:
		if (dlab) {
			r->dll = v;
		} else {
			if (r->mcr & UART_MCR_LOOP)
				rx_push(s, v);
			else if (s->be)
				char_backend_write(s->be, &v, 1);
			r->thr_pending = 1; /* sent at once: THR is empty again */
		}
		break;
	case 1:
		if (dlab) {
			r->dlm = v;
		} else {
			/* Enabling THRE with THR empty raises it (as a 16550 does). */
			if ((v & UART_IER_THRI) && !(r->ier & UART_IER_THRI))
				r->thr_pending = 1;
			r->ier = v & 0x0F;
		}
		break;
	case 2: {
		uint8_t old = r->fcr;
		r->fcr = (v & UART_FCR_ENABLE) ? (v & 0xC9) : 0;
		if (((old ^ r->fcr) & UART_FCR_ENABLE) || (v & UART_FCR_CLEAR_RX))
			rx_clear(s);
		break;
	}
	case 3:
		r->lcr = v;
		break;
	case 4:
		r->mcr = v & 0x1F;
		update_msr(s);
		maybe_resume(s);
		break;
	case 7:
		r->scr = v;
		break;
	default: /* LSR and MSR are read-only */
		break;
	}
	update_irq(s);
}

/* Port accesses wider than a byte touch consecutive registers. */
static uint64_t serial_read(void *opaque, uint64_t offset, unsigned size)
{
	struct serial8250 *s = opaque;
	uint64_t v = 0;
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < size && offset + i < 8; i++)
		v |= (uint64_t)reg_read(s, (unsigned)offset + i) << (8 * i);
	pthread_mutex_unlock(&s->lock);
	return v;
}

static void serial_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct serial8250 *s = opaque;
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < size && offset + i < 8; i++)
		reg_write(s, (unsigned)offset + i, (uint8_t)(value >> (8 * i)));
	pthread_mutex_unlock(&s->lock);
}

static size_t fe_can_receive(void *opaque)
{
	struct serial8250 *s = opaque;
	pthread_mutex_lock(&s->lock);
	size_t room = can_take_input(s) ? rx_capacity(s) - s->r.rx_count : 0;
	if (!room && !s->rx_paused) {
		s->rx_paused = true;
		char_backend_set_rx(s->be, false);
	}
	pthread_mutex_unlock(&s->lock);
	return room;
}

static void fe_receive(void *opaque, const uint8_t *buf, size_t len)
{
	struct serial8250 *s = opaque;
	pthread_mutex_lock(&s->lock);
	/* The receiver is disconnected from the line in loop mode. */
	if (!(s->r.mcr & UART_MCR_LOOP))
		for (size_t i = 0; i < len; i++)
			rx_push(s, buf[i]);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_reset_locked(struct serial8250 *s)
{
	memset(&s->r, 0, sizeof(s->r));
	s->r.dll = 0x0C; /* 9600 baud, as firmware leaves it */
	update_msr(s);
	s->r.msr &= 0xF0;
	maybe_resume(s);
	update_irq(s);
}

static void serial_reset(void *dev)
{
	struct serial8250 *s = dev;
	pthread_mutex_lock(&s->lock);
	serial_reset_locked(s);
	pthread_mutex_unlock(&s->lock);
}

static size_t serial_save(void *dev, void *buf, size_t len)
{
	struct serial8250 *s = dev;
	size_t need = 1 + sizeof(struct serial_regs);
	if (len < need)
		return need;
	pthread_mutex_lock(&s->lock);
	((uint8_t *)buf)[0] = SERIAL_STATE_VERSION;
	memcpy((uint8_t *)buf + 1, &s->r, sizeof(s->r));
	pthread_mutex_unlock(&s->lock);
	return need;
}

static int serial_restore(void *dev, const void *buf, size_t len)
{
	struct serial8250 *s = dev;
	struct serial_regs r;
	if (len != 1 + sizeof(r) || ((const uint8_t *)buf)[0] != SERIAL_STATE_VERSION)
		return -EINVAL;
	memcpy(&r, (const uint8_t *)buf + 1, sizeof(r));
	/* A blob is input too: indices must be in range. */
	if (r.rx_head >= UART_FIFO_SIZE || r.rx_count > UART_FIFO_SIZE)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	s->r = r;
	maybe_resume(s);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void serial_destroy(void *dev)
{
	struct serial8250 *s = dev;
	if (s->vm)
		bus_unregister(&s->vm->pio, s->base, s);
	char_backend_destroy(s->be);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

const struct device_ops serial8250_ops = {
	.name = "serial8250",
	.reset = serial_reset,
	.save = serial_save,
	.restore = serial_restore,
	.destroy = serial_destroy,
};

int serial8250_create(struct vm *vm, uint16_t base, unsigned gsi, struct char_backend *be,
		      struct serial8250 **out)
{
	struct serial8250 *s = calloc(1, sizeof(*s));
	if (!s) {
		char_backend_destroy(be);
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->vm = vm;
	s->gsi = gsi;
	s->base = base;
	s->be = be;
	serial_reset_locked(s);
	int ret = 0;
	if (be) {
		struct char_frontend fe = { fe_can_receive, fe_receive, s };
		char_backend_attach(be, &fe);
		ret = char_backend_start(be);
	}
	if (!ret)
		ret = bus_register(&vm->pio, base, 8, serial_read, serial_write, s, "serial8250");
	if (!ret) {
		ret = vm_add_device(vm, &serial8250_ops, s);
		if (ret)
			bus_unregister(&vm->pio, base, s);
	}
	if (ret) {
		s->vm = NULL;
		serial_destroy(s);
		return ret;
	}
	if (out)
		*out = s;
	return 0;
}
