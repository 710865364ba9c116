#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "backends/char/char.h"
#include "devices/legacy/serial8250.h"
#include "fake_vm.h"
#include "util/event_loop.h"

/* A backend that records what the UART does with it. */
struct capture {
	struct char_backend be;
	uint8_t out[4096];
	size_t out_len;
	int rx_on, rx_off;
	bool destroyed;
};

static void cap_write(struct char_backend *be, const uint8_t *buf, size_t len)
{
	struct capture *c = (struct capture *)be;
	for (size_t i = 0; i < len && c->out_len < sizeof(c->out); i++)
		c->out[c->out_len++] = buf[i];
}

static void cap_set_rx(struct char_backend *be, bool on)
{
	struct capture *c = (struct capture *)be;
	if (on)
		c->rx_on++;
	else
		c->rx_off++;
}

static void cap_destroy(struct char_backend *be)
{
	((struct capture *)be)->destroyed = true;
}

static const struct char_backend_ops cap_ops = {
	.name = "capture", .write = cap_write, .set_rx = cap_set_rx, .destroy = cap_destroy,
};

static struct vm vm;
static struct vm_config cfg;
static struct fake_engine fe;
static struct capture cap;
static struct serial8250 *uart;

static void setup(void)
{
	fake_vm_init(&vm, &cfg, &fe, 0);
	memset(&cap, 0, sizeof(cap));
	cap.be.ops = &cap_ops;
	cr_assert_eq(serial8250_create(&vm, PORT_COM1, IRQ_COM1, &cap.be, &uart), 0);
}

static void teardown(void)
{
	vm_destroy(&vm);
	cr_assert(cap.destroyed, "the UART owns and destroys its backend");
}

static uint8_t in(unsigned reg) { return (uint8_t)pio_in(&vm, PORT_COM1 + reg, 1); }
static void out(unsigned reg, uint8_t v) { pio_out(&vm, PORT_COM1 + reg, 1, v); }

/* Feed host input as the event loop would. */
static size_t feed(const char *s, size_t n)
{
	size_t room = cap.be.fe.can_receive(cap.be.fe.opaque);
	if (n > room)
		n = room;
	if (n)
		cap.be.fe.receive(cap.be.fe.opaque, (const uint8_t *)s, n);
	return n;
}

TestSuite(serial, .init = setup, .fini = teardown);

Test(serial, power_on_state)
{
	cr_assert_eq(in(UART_IER), 0);
	cr_assert_eq(in(UART_IIR), UART_IIR_NO_INT);
	cr_assert_eq(in(UART_LCR), 0);
	cr_assert_eq(in(UART_MCR), 0);
	cr_assert_eq(in(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	cr_assert_eq(in(UART_MSR), UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
}

/* The probes of Linux's 8250 autoconfig(), in its order. */
Test(serial, linux_autoconfig_finds_a_16550a)
{
	/* IER test */
	out(UART_IER, 0);
	cr_assert_eq(in(UART_IER) & 0x0F, 0);
	out(UART_IER, 0x0F);
	cr_assert_eq(in(UART_IER) & 0x0F, 0x0F);
	out(UART_IER, 0);
	/* loopback test: RTS|OUT2 -> CTS|DCD */
	out(UART_MCR, UART_MCR_LOOP | 0x0A);
	cr_assert_eq(in(UART_MSR) & 0xF0, 0x90);
	out(UART_MCR, 0);
	/* scratch */
	out(UART_SCR, 0xA5);
	cr_assert_eq(in(UART_SCR), 0xA5);
	/* FIFO: IIR bits 7:6 == 3 is the 16550A family */
	out(UART_FCR, UART_FCR_ENABLE);
	cr_assert_eq(in(UART_IIR) >> 6, 3);
	/* No EFR (a 16650 would read 0 at offset 2 with LCR 0xBF) */
	out(UART_LCR, 0xBF);
	cr_assert_neq(in(UART_IIR), 0);
	out(UART_LCR, 0x80);
	cr_assert_neq(in(UART_IIR), 0);
	/* Not a 16750: the 64-byte FIFO bit does not stick */
	out(UART_LCR, 0);
	out(UART_FCR, UART_FCR_ENABLE | 0x20);
	unsigned s1 = in(UART_IIR) >> 5;
	out(UART_FCR, UART_FCR_ENABLE);
	out(UART_LCR, 0x80);
	out(UART_FCR, UART_FCR_ENABLE | 0x20);
	unsigned s2 = in(UART_IIR) >> 5;
	out(UART_LCR, 0);
	cr_assert_not(s1 == 6 && s2 == 7);
	/* Not an XScale: IER's UUE bit does not stick */
	out(UART_IER, 0x40);
	cr_assert_eq(in(UART_IER) & 0x40, 0);
}

Test(serial, divisor_latch)
{
	out(UART_IER, 0x05);
	out(UART_LCR, UART_LCR_DLAB | 0x03);
	out(UART_DLL, 0x01);
	out(UART_DLM, 0x02);
	cr_assert_eq(in(UART_DLL), 0x01);
	cr_assert_eq(in(UART_DLM), 0x02);
	out(UART_LCR, 0x03);
	cr_assert_eq(in(UART_IER), 0x05, "IER untouched by DLM writes");
	cr_assert_eq(cap.out_len, 0, "DLL writes are not output");
	out(UART_THR, 'k');
	cr_assert_eq(cap.out_len, 1);
	cr_assert_eq(cap.out[0], 'k');
}

Test(serial, transmit_and_thre_interrupt)
{
	out(UART_MCR, UART_MCR_OUT2);
	cr_assert_not(fe.level[IRQ_COM1]);
	out(UART_IER, UART_IER_THRI);  /* THR is empty: THRE pending at once */
	cr_assert(fe.level[IRQ_COM1]);
	cr_assert_eq(in(UART_IIR), UART_IIR_THRI);
	cr_assert_not(fe.level[IRQ_COM1], "reading IIR acknowledges THRE");
	cr_assert_eq(in(UART_IIR), UART_IIR_NO_INT);
	out(UART_THR, 'h');
	out(UART_THR, 'i');
	cr_assert(fe.level[IRQ_COM1], "THRE again after a write");
	cr_assert_eq(cap.out_len, 2);
	cr_assert_eq(memcmp(cap.out, "hi", 2), 0);
	cr_assert_eq(in(UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT), UART_LSR_THRE | UART_LSR_TEMT);
	out(UART_IER, 0);
	cr_assert_not(fe.level[IRQ_COM1]);
}

Test(serial, out2_gates_the_irq)
{
	out(UART_IER, UART_IER_THRI);
	cr_assert_eq(in(UART_IIR) & 0x0F, UART_IIR_THRI, "pending (and acknowledged) while gated");
	out(UART_THR, 'x');
	cr_assert_eq(fe.raises[IRQ_COM1], 0, "no OUT2: the line stays low");
	out(UART_MCR, UART_MCR_OUT2);
	cr_assert(fe.level[IRQ_COM1]);
	out(UART_MCR, 0);
	cr_assert_not(fe.level[IRQ_COM1]);
}

Test(serial, receive_with_fifo_trigger_levels)
{
	out(UART_MCR, UART_MCR_OUT2);
	out(UART_FCR, UART_FCR_ENABLE | 0x80); /* trigger at 8 */
	out(UART_IER, UART_IER_RDI);
	cr_assert_not(fe.level[IRQ_COM1]);
	cr_assert_eq(feed("a", 1), 1);
	cr_assert(fe.level[IRQ_COM1]);
	cr_assert_eq(in(UART_IIR), UART_IIR_FIFO | UART_IIR_CTI, "below trigger: timeout");
	cr_assert_eq(feed("bcdefgh", 7), 7);
	cr_assert_eq(in(UART_IIR), UART_IIR_FIFO | UART_IIR_RDI, "at trigger");
	char got[9] = { 0 };
	for (int i = 0; i < 8; i++) {
		cr_assert(in(UART_LSR) & UART_LSR_DR);
		got[i] = (char)in(UART_RBR);
	}
	cr_assert_str_eq(got, "abcdefgh");
	cr_assert_not(in(UART_LSR) & UART_LSR_DR);
	cr_assert_not(fe.level[IRQ_COM1]);
}

Test(serial, backpressure_instead_of_overrun)
{
	out(UART_FCR, UART_FCR_ENABLE);
	char data[20];
	for (int i = 0; i < 20; i++)
		data[i] = (char)('A' + i);
	cr_assert_eq(feed(data, 20), UART_FIFO_SIZE, "the FIFO takes 16");
	cr_assert_eq(cap.rx_off, 0);
	cr_assert_eq(feed(data + 16, 4), 0);
	cr_assert_eq(cap.rx_off, 1, "full: the backend is paused");
	cr_assert_eq(in(UART_RBR), 'A');
	cr_assert_eq(cap.rx_on, 1, "room again: resumed");
	cr_assert_eq(feed(data + 16, 4), 1);
	cr_assert_not(in(UART_LSR) & UART_LSR_OE, "nothing was lost");
	for (int i = 1; i < 17; i++)
		cr_assert_eq(in(UART_RBR), 'A' + i);
}

Test(serial, no_fifo_holds_one_byte)
{
	cr_assert_eq(feed("xy", 2), 1);
	cr_assert_eq(in(UART_IIR), UART_IIR_NO_INT, "no FIFO bits, no interrupt enabled");
	cr_assert_eq(in(UART_RBR), 'x');
}

Test(serial, loopback_and_overrun)
{
	out(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	out(UART_IER, UART_IER_RDI | UART_IER_RLSI);
	out(UART_FCR, UART_FCR_ENABLE);
	cr_assert_eq(cap.be.fe.can_receive(cap.be.fe.opaque), 0, "line input off in loop mode");
	for (int i = 0; i < UART_FIFO_SIZE + 1; i++)
		out(UART_THR, (uint8_t)i);
	cr_assert_eq(cap.out_len, 0, "loop mode sends nothing out");
	cr_assert_not(fe.level[IRQ_COM1], "loop mode keeps the IRQ line low");
	cr_assert_eq(in(UART_IIR) & 0x0F, UART_IIR_RLSI, "line status has top priority");
	uint8_t lsr = in(UART_LSR);
	cr_assert(lsr & UART_LSR_OE);
	cr_assert(lsr & UART_LSR_DR);
	cr_assert_not(in(UART_LSR) & UART_LSR_OE, "OE clears on read");
	cr_assert_eq(in(UART_IIR) & 0x0F, UART_IIR_RDI);
	for (int i = 0; i < UART_FIFO_SIZE; i++)
		cr_assert_eq(in(UART_RBR), i);
}

Test(serial, modem_status_deltas)
{
	out(UART_IER, UART_IER_MSI);
	out(UART_MCR, UART_MCR_LOOP | UART_MCR_DTR);
	uint8_t msr = in(UART_MSR);
	/* Leaving "host attached" for the loop: CTS and DCD dropped, DSR kept. */
	cr_assert_eq(msr & 0xF0, UART_MSR_DSR);
	cr_assert_eq(msr & 0x0F, UART_MSR_DCTS | UART_MSR_DDCD);
	cr_assert_eq(in(UART_MSR) & 0x0F, 0, "deltas clear on read");
	out(UART_MCR, UART_MCR_LOOP | UART_MCR_DTR | UART_MCR_OUT1);
	out(UART_MCR, UART_MCR_LOOP | UART_MCR_DTR);
	cr_assert_eq(in(UART_IIR) & 0x0F, UART_IIR_MSI);
	cr_assert(in(UART_MSR) & UART_MSR_TERI, "trailing edge of RI");
}

Test(serial, wide_and_odd_accesses)
{
	pio_out(&vm, PORT_COM1 + UART_LCR, 2, 0x0B03); /* LCR=3, MCR=0x0B */
	cr_assert_eq(in(UART_LCR), 0x03);
	cr_assert_eq(in(UART_MCR), 0x0B);
	out(UART_LSR, 0);
	cr_assert_eq(in(UART_LSR) & UART_LSR_THRE, UART_LSR_THRE, "LSR is read-only");
	cr_assert_eq(in(UART_RBR), 0, "empty RBR reads 0");
}

Test(serial, save_restore_and_reset)
{
	out(UART_LCR, 0x03);
	out(UART_SCR, 0x5A);
	out(UART_FCR, UART_FCR_ENABLE);
	feed("q", 1);
	uint8_t blob[128];
	size_t n = serial8250_ops.save(uart, blob, sizeof(blob));
	cr_assert(n > 0 && n <= sizeof(blob));
	cr_assert_eq(serial8250_ops.save(uart, blob, 1), n, "too small: size only");
	serial8250_ops.reset(uart);
	cr_assert_eq(in(UART_SCR), 0);
	cr_assert_eq(serial8250_ops.restore(uart, blob, n), 0);
	cr_assert_eq(in(UART_SCR), 0x5A);
	cr_assert_eq(in(UART_LCR), 0x03);
	cr_assert_eq(in(UART_RBR), 'q');
	blob[0] = 99;
	cr_assert_eq(serial8250_ops.restore(uart, blob, n), -EINVAL);
	cr_assert_eq(serial8250_ops.restore(uart, blob, n - 1), -EINVAL);
}

/* ---- the real backends ---- */

static void wait_until(bool (*cond)(void *), void *arg)
{
	for (int i = 0; i < 400 && !cond(arg); i++)
		usleep(5000);
}

struct sink {
	pthread_mutex_t lock;
	char got[256];
	size_t n;
	size_t room;
};

static size_t sink_can(void *o)
{
	struct sink *s = o;
	pthread_mutex_lock(&s->lock);
	size_t r = s->room;
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void sink_recv(void *o, const uint8_t *b, size_t len)
{
	struct sink *s = o;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < len; i++)
		s->got[s->n++] = (char)b[i];
	s->room -= len;
	pthread_mutex_unlock(&s->lock);
}

static bool stopped(void *arg)
{
	return vm_should_stop(arg);
}

Test(serial_stdio, escapes_and_eof)
{
	struct vm v;
	struct vm_config c;
	struct fake_engine f;
	fake_vm_init(&v, &c, &f, 0);
	int inp[2], outp[2];
	cr_assert_eq(pipe(inp), 0);
	cr_assert_eq(pipe(outp), 0);
	struct event_loop *el;
	cr_assert_eq(event_loop_create(&el), 0);
	struct char_backend *be;
	cr_assert_eq(char_stdio_create_fds(&v, el, inp[0], outp[1], &be), 0);
	struct sink s = { .lock = PTHREAD_MUTEX_INITIALIZER, .room = 200 };
	struct char_frontend fr = { sink_can, sink_recv, &s };
	char_backend_attach(be, &fr);
	cr_assert_eq(char_backend_start(be), 0);
	cr_assert_eq(event_loop_start(el), 0);
	/* a, Ctrl-A Ctrl-A -> one Ctrl-A, Ctrl-A b -> both, then Ctrl-A x */
	const char input[] = "a\x01\x01" "\x01" "b\x01x" "ignored";
	cr_assert_eq(write(inp[1], input, sizeof(input) - 1), (ssize_t)sizeof(input) - 1);
	wait_until(stopped, &v);
	cr_assert_eq(stop_reason(&v), VM_STOP_SIGNAL);
	event_loop_stop(el);
	cr_assert_eq(s.n, 4);
	cr_assert_eq(memcmp(s.got, "a\x01\x01" "b", 4), 0);
	char_backend_write(be, (const uint8_t *)"out", 3);
	char buf[8];
	cr_assert_eq(read(outp[0], buf, sizeof(buf)), 3);
	char_backend_destroy(be);
	event_loop_destroy(el);
	close(inp[0]); close(inp[1]); close(outp[0]); close(outp[1]);
	vm_destroy(&v);
}

Test(serial_stdio, backpressure_through_the_loop)
{
	struct vm v;
	struct vm_config c;
	struct fake_engine f;
	fake_vm_init(&v, &c, &f, 0);
	int inp[2], outp[2];
	cr_assert_eq(pipe(inp), 0);
	cr_assert_eq(pipe(outp), 0);
	struct event_loop *el;
	cr_assert_eq(event_loop_create(&el), 0);
	v.loop = el;
	struct char_backend *be;
	cr_assert_eq(char_stdio_create_fds(&v, el, inp[0], outp[1], &be), 0);
	struct serial8250 *u;
	cr_assert_eq(serial8250_create(&v, PORT_COM1, IRQ_COM1, be, &u), 0);
	cr_assert_eq(event_loop_start(el), 0);
	pio_out(&v, PORT_COM1 + UART_FCR, 1, UART_FCR_ENABLE);
	char data[100];
	for (int i = 0; i < 100; i++)
		data[i] = (char)(' ' + i % 90);
	cr_assert_eq(write(inp[1], data, 100), 100);
	close(inp[1]); /* EOF after the data: not an error */
	char got[100];
	int n = 0;
	for (int spins = 0; n < 100 && spins < 2000; spins++) {
		if (pio_in(&v, PORT_COM1 + UART_LSR, 1) & UART_LSR_DR)
			got[n++] = (char)pio_in(&v, PORT_COM1 + UART_RBR, 1);
		else
			usleep(1000);
	}
	cr_assert_eq(n, 100, "every byte arrived");
	cr_assert_eq(memcmp(got, data, 100), 0, "in order");
	pio_out(&v, PORT_COM1, 1, 'z');
	char o;
	cr_assert_eq(read(outp[0], &o, 1), 1);
	cr_assert_eq(o, 'z');
	vm_destroy(&v); /* stops the loop, destroys the UART and its backend */
	close(inp[0]); close(outp[0]); close(outp[1]);
}

Test(serial_file, output_and_errors)
{
	char dir[] = "/tmp/kite-serial-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/out.txt", dir);
	struct char_backend *be;
	cr_assert_eq(char_file_create(path, &be), 0);
	char_backend_write(be, (const uint8_t *)"hello\n", 6);
	char_backend_destroy(be);
	FILE *fp = fopen(path, "r");
	cr_assert_not_null(fp);
	char line[32] = { 0 };
	cr_assert_not_null(fgets(line, sizeof(line), fp));
	fclose(fp);
	cr_assert_str_eq(line, "hello\n");
	unlink(path);
	snprintf(path, sizeof(path), "%s/missing/out.txt", dir);
	cr_assert_eq(char_file_create(path, &be), -ENOENT);
	rmdir(dir);
}

Test(serial_file, config_picks_the_backend)
{
	struct vm_config c;
	vm_config_defaults(&c);
	c.serial = SERIAL_NONE;
	struct char_backend *be;
	cr_assert_eq(char_backend_create(&c, NULL, NULL, &be), 0);
	cr_assert_str_eq(be->ops->name, "none");
	char_backend_write(be, (const uint8_t *)"x", 1);
	char_backend_destroy(be);
	c.serial = SERIAL_STDIO;
	cr_assert_eq(char_backend_create(&c, NULL, NULL, &be), 0);
	cr_assert_str_eq(be->ops->name, "stdio");
	char_backend_destroy(be);
}

/* ---- the terminal: raw while kite runs, restored on every way out ---- */

#include <sys/wait.h>
#include <termios.h>

/* Make a pty's slave our stdin (criterion runs each test in its own
 * process). Returns the master fd. */
static int pty_as_stdin(void)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	cr_assert(master >= 0);
	cr_assert_eq(grantpt(master), 0);
	cr_assert_eq(unlockpt(master), 0);
	int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	cr_assert(slave >= 0);
	cr_assert_eq(dup2(slave, STDIN_FILENO), STDIN_FILENO);
	close(slave);
	struct termios t;
	cr_assert_eq(tcgetattr(STDIN_FILENO, &t), 0);
	cr_assert(t.c_lflag & ICANON, "a fresh pty is cooked");
	return master;
}

static bool stdin_is_raw(void)
{
	struct termios t;
	cr_assert_eq(tcgetattr(STDIN_FILENO, &t), 0);
	return !(t.c_lflag & (ICANON | ECHO | ISIG));
}

Test(serial_tty, raw_then_restored_by_destroy)
{
	int master = pty_as_stdin();
	struct event_loop *el;
	cr_assert_eq(event_loop_create(&el), 0);
	struct char_backend *be;
	cr_assert_eq(char_stdio_create(NULL, el, &be), 0);
	cr_assert(stdin_is_raw());
	struct termios t;
	tcgetattr(STDIN_FILENO, &t);
	cr_assert(t.c_oflag & OPOST, "output processing kept");
	char_backend_destroy(be);
	cr_assert_not(stdin_is_raw());
	event_loop_destroy(el);
	close(master);
}

Test(serial_tty, restored_at_exit)
{
	int master = pty_as_stdin();
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		struct event_loop *el;
		struct char_backend *be;
		if (event_loop_create(&el) || char_stdio_create(NULL, el, &be))
			_exit(2);
		if (!stdin_is_raw())
			_exit(3);
		exit(0); /* runs the atexit handler */
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child saw raw mode");
	cr_assert_not(stdin_is_raw(), "atexit restored the terminal");
	close(master);
}

Test(serial_stdio, unpollable_stdin_means_no_input)
{
	struct event_loop *el;
	cr_assert_eq(event_loop_create(&el), 0);
	int devnull = open("/dev/null", O_RDONLY);
	int outp[2];
	cr_assert_eq(pipe(outp), 0);
	struct char_backend *be;
	cr_assert_eq(char_stdio_create_fds(NULL, el, devnull, outp[1], &be), 0);
	struct sink s = { .lock = PTHREAD_MUTEX_INITIALIZER, .room = 10 };
	struct char_frontend fr = { sink_can, sink_recv, &s };
	char_backend_attach(be, &fr);
	cr_assert_eq(char_backend_start(be), 0, "not an error");
	char_backend_set_rx(be, false);
	char_backend_set_rx(be, true);
	char_backend_write(be, (const uint8_t *)"ok", 2);
	char buf[4];
	cr_assert_eq(read(outp[0], buf, sizeof(buf)), 2);
	char_backend_destroy(be);
	event_loop_destroy(el);
	close(devnull); close(outp[0]); close(outp[1]);
}
