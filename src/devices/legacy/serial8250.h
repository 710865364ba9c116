/* 8250/16550A UART (COM1 on a PC: port 0x3F8, IRQ 4). Transmit goes to a
 * char backend at once; receive comes from the backend through the event
 * loop into a 16-byte FIFO, with backpressure instead of overruns. */
#ifndef KITE_DEVICES_LEGACY_SERIAL8250_H
#define KITE_DEVICES_LEGACY_SERIAL8250_H

#include <stdint.h>

#include "vmm/device.h"

struct vm;
struct char_backend;
struct serial8250;

/* Register ports [base, base+8) on vm->pio and attach to be (the UART
 * owns be from now on: destroy frees it). The device is added to the VM's
 * device list. Returns 0 or a negative errno. */
int serial8250_create(struct vm *vm, uint16_t base, unsigned gsi, struct char_backend *be,
		      struct serial8250 **out);

extern const struct device_ops serial8250_ops;

/* Register offsets and bits, for tests and for whoever reads this. */
enum {
	UART_RBR = 0, UART_THR = 0, UART_DLL = 0,
	UART_IER = 1, UART_DLM = 1,
	UART_IIR = 2, UART_FCR = 2,
	UART_LCR = 3, UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};
#define UART_IER_RDI  0x01
#define UART_IER_THRI 0x02
#define UART_IER_RLSI 0x04
#define UART_IER_MSI  0x08
#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI  0x00
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI  0x04
#define UART_IIR_RLSI 0x06
#define UART_IIR_CTI  0x0C
#define UART_IIR_FIFO 0xC0
#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04
#define UART_LCR_DLAB 0x80
#define UART_MCR_DTR  0x01
#define UART_MCR_RTS  0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10
#define UART_LSR_DR   0x01
#define UART_LSR_OE   0x02
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_MSR_DCTS 0x01
#define UART_MSR_DDSR 0x02
#define UART_MSR_TERI 0x04
#define UART_MSR_DDCD 0x08
#define UART_MSR_CTS  0x10
#define UART_MSR_DSR  0x20
#define UART_MSR_RI   0x40
#define UART_MSR_DCD  0x80
#define UART_FIFO_SIZE 16

#endif
