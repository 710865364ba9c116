/* Runtime of the test guests: polling COM1 output and a printf-lite. */
#include "runtime.h"

#define COM1 0x3F8
#define LSR_THRE 0x20 /* transmit holding register empty */

void serial_init(void)
{
	outb(COM1 + 1, 0x00);  /* no interrupts */
	outb(COM1 + 3, 0x80);  /* DLAB */
	outb(COM1 + 0, 0x01);  /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);  /* 8n1 */
	outb(COM1 + 2, 0x07);  /* FIFO on, cleared */
	outb(COM1 + 4, 0x03);  /* DTR RTS */
}

void putc(char c)
{
	/* Bounded wait: a missing UART must not hang the guest forever. */
	for (unsigned i = 0; i < 100000 && !(inb(COM1 + 5) & LSR_THRE); i++)
		;
	outb(COM1, (uint8_t)c);
}

void puts(const char *s)
{
	while (*s) {
		if (*s == '\n')
			putc('\r');
		putc(*s++);
	}
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

static void put_num(uint32_t v, unsigned base, int width, char pad, int neg)
{
	char buf[16];
	int n = 0;
	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		buf[n++] = '-';
	while (n < width--)
		putc(pad);
	while (n)
		putc(buf[--n]);
}

int vprintf(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			if (*fmt == '\n')
				putc('\r');
			putc(*fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		int width = 0, lng = 0;
		if (*fmt == '0')
			pad = '0', fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l')
			lng++, fmt++;
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			puts(s ? s : "(null)");
			break;
		}
		case 'c':
			putc((char)va_arg(ap, int));
			break;
		case 'd': {
			int v = va_arg(ap, int);
			put_num(v < 0 ? -(uint32_t)v : (uint32_t)v, 10, width, pad, v < 0);
			break;
		}
		case 'u':
			put_num(va_arg(ap, uint32_t), 10, width, pad, 0);
			break;
		case 'x':
			if (lng >= 2) { /* %llx: 64-bit, printed as two halves */
				uint64_t v = va_arg(ap, uint64_t);
				if (v >> 32) {
					put_num((uint32_t)(v >> 32), 16, width > 8 ? width - 8 : 0, pad, 0);
					put_num((uint32_t)v, 16, 8, '0', 0);
				} else {
					put_num((uint32_t)v, 16, width, pad, 0);
				}
			} else {
				put_num(va_arg(ap, uint32_t), 16, width, pad, 0);
			}
			break;
		case '%':
			putc('%');
			break;
		default:
			putc('?');
		}
	}
	return 0;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	return 0;
}

void guest_exit(uint32_t v)
{
	outb(0xf4, (uint8_t)v);
	/* Without --debug-exit nothing happens: stop here. */
	for (;;)
		__asm__ volatile("cli; hlt");
}

void guest_entry(uint32_t magic, const struct multiboot_info *mbi);
void guest_entry(uint32_t magic, const struct multiboot_info *mbi)
{
	serial_init();
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
		printf("guest: bad boot magic 0x%x (want 0x2badb002)\n", magic);
		guest_exit(GUEST_BAD_BOOT);
	}
	guest_main(mbi);
}
