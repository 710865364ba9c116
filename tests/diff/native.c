/* Native runner: executes cases on the host CPU in a forked child.
 *
 * The child maps the code page (a memfd mapped twice: read+execute at
 * DIFF_CODE_BASE, read+write elsewhere for us to fill) and the data area at
 * their fixed addresses, then per case: fill code and data, load every
 * register from kd_in with a small trampoline and jump to the code. The
 * case stops on a signal (the INT3 trailer gives SIGTRAP; faults give
 * SIGSEGV/SIGBUS/SIGFPE/SIGILL). The handler, running on an alternate
 * stack, copies the register state out of the ucontext (trap number, error
 * code, CR2 included) and rewrites the context so that sigreturn lands in
 * kd_resume, which returns to C. Signals are slow on this host (a PVM
 * guest), so a case that falls through ends instead on a jump to
 * kd_capture, which saves the state without entering the kernel.
 *
 * Results go back through MAP_SHARED memory; if the child dies anyway the
 * parent marks the case it was on as crashed, if it makes no progress for
 * a second (an endless loop) the parent kills it and marks the case as a
 * timeout; either way a new child runs the rest of the batch. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "diff.h"

_Static_assert(offsetof(struct diff_regs, rip) == 128, "asm offsets");
_Static_assert(offsetof(struct diff_regs, rflags) == 136, "asm offsets");
_Static_assert(offsetof(struct diff_regs, mxcsr) == 144, "asm offsets");
_Static_assert(offsetof(struct diff_regs, xmm) == 160, "asm offsets");

/* Only touched inside the child; shared with the trampoline by name. */
struct diff_regs kd_in __attribute__((aligned(16)));
uint64_t kd_host_rsp;
void kd_enter(void);
void kd_resume(void);
/* the fast way out (no signal): the case's code is followed by a jump to
 * kd_capture, which stores the registers here and returns to C */
struct diff_regs kd_cap __attribute__((aligned(16)));
uint8_t kd_fx[512] __attribute__((aligned(16)));
volatile int kd_in_guest;
volatile int kd_fast;
const uint32_t kd_mxcsr_default = 0x1f80;
void kd_capture(void);

#define XMM_LOAD(n) "movdqu kd_in+160+16*" #n "(%rip), %xmm" #n "\n"
__asm__(
	".text\n"
	".globl kd_enter\n"
	".type kd_enter,@function\n"
	"kd_enter:\n"
	"push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
	"mov %rsp, kd_host_rsp(%rip)\n"
	/* FNINIT only tags the x87 registers empty; their contents stay
	 * from whatever ran before, and FNSAVE/FXSAVE store them. Zero all
	 * eight (as the soft side starts) so those images are comparable. */
	"fninit\n"
	"fldz\n fldz\n fldz\n fldz\n fldz\n fldz\n fldz\n fldz\n"
	"fninit\n"
	"ldmxcsr kd_in+144(%rip)\n"
	XMM_LOAD(0) XMM_LOAD(1) XMM_LOAD(2) XMM_LOAD(3)
	XMM_LOAD(4) XMM_LOAD(5) XMM_LOAD(6) XMM_LOAD(7)
	XMM_LOAD(8) XMM_LOAD(9) XMM_LOAD(10) XMM_LOAD(11)
	XMM_LOAD(12) XMM_LOAD(13) XMM_LOAD(14) XMM_LOAD(15)
	"pushq kd_in+136(%rip)\n"
	"popfq\n"
	"mov kd_in+0(%rip), %rax\n"
	"mov kd_in+8(%rip), %rcx\n"
	"mov kd_in+16(%rip), %rdx\n"
	"mov kd_in+24(%rip), %rbx\n"
	"mov kd_in+40(%rip), %rbp\n"
	"mov kd_in+48(%rip), %rsi\n"
	"mov kd_in+56(%rip), %rdi\n"
	"mov kd_in+64(%rip), %r8\n"
	"mov kd_in+72(%rip), %r9\n"
	"mov kd_in+80(%rip), %r10\n"
	"mov kd_in+88(%rip), %r11\n"
	"mov kd_in+96(%rip), %r12\n"
	"mov kd_in+104(%rip), %r13\n"
	"mov kd_in+112(%rip), %r14\n"
	"mov kd_in+120(%rip), %r15\n"
	"mov kd_in+32(%rip), %rsp\n"
	"jmp *kd_in+128(%rip)\n"
	".size kd_enter, .-kd_enter\n"
	".globl kd_capture\n"
	".type kd_capture,@function\n"
	"kd_capture:\n"
	"mov %rsp, kd_cap+32(%rip)\n"
	"mov kd_host_rsp(%rip), %rsp\n"
	"pushfq\n"
	"popq kd_cap+136(%rip)\n"
	"movl $0, kd_in_guest(%rip)\n"
	"mov %rax, kd_cap+0(%rip)\n"
	"mov %rcx, kd_cap+8(%rip)\n"
	"mov %rdx, kd_cap+16(%rip)\n"
	"mov %rbx, kd_cap+24(%rip)\n"
	"mov %rbp, kd_cap+40(%rip)\n"
	"mov %rsi, kd_cap+48(%rip)\n"
	"mov %rdi, kd_cap+56(%rip)\n"
	"mov %r8, kd_cap+64(%rip)\n"
	"mov %r9, kd_cap+72(%rip)\n"
	"mov %r10, kd_cap+80(%rip)\n"
	"mov %r11, kd_cap+88(%rip)\n"
	"mov %r12, kd_cap+96(%rip)\n"
	"mov %r13, kd_cap+104(%rip)\n"
	"mov %r14, kd_cap+112(%rip)\n"
	"mov %r15, kd_cap+120(%rip)\n"
	"fxsave64 kd_fx(%rip)\n"
	"fninit\n"
	"ldmxcsr kd_mxcsr_default(%rip)\n"
	"cld\n"
	"movl $1, kd_fast(%rip)\n"
	"pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
	"ret\n"
	".size kd_capture, .-kd_capture\n"
	".globl kd_resume\n"
	".type kd_resume,@function\n"
	"kd_resume:\n"
	"mov kd_host_rsp(%rip), %rsp\n"
	"cld\n"
	"pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
	"ret\n"
	".size kd_resume, .-kd_resume\n");

static struct diff_result *cur_res;   /* where the handler writes */

static void handler(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	struct diff_result *r = cur_res;

	if (!kd_in_guest) {
		/* a fault in the harness itself: die loudly */
		signal(sig, SIG_DFL);
		return;
	}
	kd_in_guest = 0;
	static const int map[16] = { REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP,
		REG_RBP, REG_RSI, REG_RDI, REG_R8, REG_R9, REG_R10, REG_R11,
		REG_R12, REG_R13, REG_R14, REG_R15 };
	for (int i = 0; i < 16; i++)
		r->out.gpr[i] = (uint64_t)g[map[i]];
	r->out.rip = (uint64_t)g[REG_RIP];
	r->out.rflags = (uint64_t)g[REG_EFL];
	if (uc->uc_mcontext.fpregs) {
		r->out.mxcsr = uc->uc_mcontext.fpregs->mxcsr;
		memcpy(r->out.xmm, uc->uc_mcontext.fpregs->_xmm, sizeof(r->out.xmm));
		r->out.fcw = uc->uc_mcontext.fpregs->cwd;
		r->out.fsw = uc->uc_mcontext.fpregs->swd;
		r->out.ftw = (uint8_t)uc->uc_mcontext.fpregs->ftw;
		for (int i = 0; i < 8; i++)
			memcpy(r->out.st[i], &uc->uc_mcontext.fpregs->_st[i], 10);
		/* host FP control state back for the harness */
		uc->uc_mcontext.fpregs->mxcsr = 0x1f80;
		uc->uc_mcontext.fpregs->cwd = 0x37f;
		uc->uc_mcontext.fpregs->swd = 0;
		uc->uc_mcontext.fpregs->ftw = 0;
	}
	r->stop = STOP_EXCEPTION;
	r->vector = (uint8_t)g[REG_TRAPNO];
	r->err = (uint32_t)g[REG_ERR];
	r->cr2 = (r->vector == 14) ? (uint64_t)(uintptr_t)si->si_addr : 0;
	g[REG_RIP] = (greg_t)(uintptr_t)kd_resume;
	g[REG_RSP] = (greg_t)kd_host_rsp;
	g[REG_EFL] = 0x202;
}

static int child_setup(uint8_t **code_rw)
{
	int fd = memfd_create("kite-diff-code", 0);
	if (fd < 0 || ftruncate(fd, DIFF_CODE_SIZE) < 0)
		return -errno;
	void *rx = mmap((void *)DIFF_CODE_BASE, DIFF_CODE_SIZE, PROT_READ | PROT_EXEC,
			MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	void *rw = mmap(NULL, DIFF_CODE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	void *data = mmap((void *)DIFF_DATA_BASE, DIFF_DATA_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	close(fd);
	if (rx != (void *)DIFF_CODE_BASE || rw == MAP_FAILED || data != (void *)DIFF_DATA_BASE)
		return -EEXIST;
	*code_rw = rw;

	static uint8_t altstack[64 * 1024] __attribute__((aligned(16)));
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	if (sigaltstack(&ss, NULL) < 0)
		return -errno;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	int sigs[] = { SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGILL };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -errno;
	return 0;
}

/* The fast end: "jmp [rip+0]; .quad kd_capture" right after the case's
 * code, for cases that fall through (gen.c sets native_trailer). Cases that
 * branch around or fault end on the INT3 fill and a signal. */
static size_t put_trailer(uint8_t *p)
{
	static const uint8_t jmp[6] = { 0xff, 0x25, 0, 0, 0, 0 };
	uint64_t target = (uint64_t)(uintptr_t)kd_capture;
	memcpy(p, jmp, 6);
	memcpy(p + 6, &target, 8);
	return 14;
}

static void from_fxsave(struct diff_regs *o, const uint8_t *fx)
{
	memcpy(&o->fcw, fx + 0, 2);
	memcpy(&o->fsw, fx + 2, 2);
	o->ftw = fx[4];
	memcpy(&o->mxcsr, fx + 24, 4);
	for (int i = 0; i < 8; i++)
		memcpy(o->st[i], fx + 32 + 16 * i, 10);
	memcpy(o->xmm, fx + 160, sizeof(o->xmm));
}

static void child_run_one(uint8_t *code_rw, const struct diff_case *c, struct diff_result *r)
{
	/* the code sits where RIP points in the code page (the end of the
	 * page for instruction-fetch cases); INT3 everywhere else */
	uint64_t off = c->in.rip - DIFF_CODE_BASE;
	memset(code_rw, 0xCC, DIFF_CODE_SIZE);
	if (off < DIFF_CODE_SIZE)
		memcpy(code_rw + off, c->code,
		       c->code_len < DIFF_CODE_SIZE - off ? c->code_len : DIFF_CODE_SIZE - off);
	if (c->native_trailer && off + c->code_len + 14 <= DIFF_CODE_SIZE)
		put_trailer(code_rw + off + c->code_len);
	diff_fill_data(c, (uint8_t *)DIFF_DATA_BASE);
	memset(r, 0, offsetof(struct diff_result, data));
	kd_in = c->in;
	cur_res = r;
	kd_fast = 0;
	kd_in_guest = 1;
	kd_enter();
	if (kd_fast) {
		/* as if the INT3 after the code had trapped */
		r->out = kd_cap;
		from_fxsave(&r->out, kd_fx);
		r->out.rip = c->in.rip + c->code_len + 1;
		r->stop = STOP_EXCEPTION;
		r->vector = 3;
	}
	memcpy(r->data, (void *)DIFF_DATA_BASE, DIFF_DATA_SIZE);
}

/* One worker child runs batch after batch (forking per batch costs page
 * faults on every shared page, which are slow on this host). Cases and
 * results live in MAP_SHARED memory; a pipe each way says "go" and
 * "done". If the worker dies or hangs, the parent records the case it was
 * on, starts a new worker and goes on after that case. */
struct shared_batch {
	volatile int start, n; /* run cases [start, n) */
	volatile int done;     /* cases finished by the worker */
};

static struct {
	pid_t pid;
	int go_w, done_r;       /* parent ends of the pipes */
	uint8_t *sh;
	size_t shsize;
	int cap;                /* cases the shared area holds */
} worker = { .pid = -1 };

static struct shared_batch *sh_batch(void) { return (struct shared_batch *)worker.sh; }
static struct diff_case *sh_cases(void) { return (struct diff_case *)(worker.sh + 4096); }
static struct diff_result *sh_results(void)
{
	size_t off = 4096 + (size_t)worker.cap * sizeof(struct diff_case);
	off = (off + 4095) & ~(size_t)4095;
	return (struct diff_result *)(worker.sh + off);
}

static void worker_main(int go_r, int done_w)
{
	uint8_t *code_rw = NULL;
	int e = child_setup(&code_rw);
	if (e < 0) {
		fprintf(stderr, "diff: native child setup failed: %s\n", strerror(-e));
		_exit(99);
	}
	struct shared_batch *b = sh_batch();
	char byte;
	while (read(go_r, &byte, 1) == 1) {
		for (int i = b->start; i < b->n; i++) {
			child_run_one(code_rw, &sh_cases()[i], &sh_results()[i]);
			__atomic_store_n(&b->done, i + 1, __ATOMIC_RELEASE);
		}
		if (write(done_w, "d", 1) != 1)
			_exit(1);
	}
	_exit(0);
}

static void worker_stop(void)
{
	if (worker.pid > 0) {
		close(worker.go_w);
		close(worker.done_r);
		kill(worker.pid, SIGKILL);
		while (waitpid(worker.pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	worker.pid = -1;
}

static int worker_start(void)
{
	int go[2], done[2];
	if (pipe2(go, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(done, O_CLOEXEC) < 0) {
		close(go[0]);
		close(go[1]);
		return -errno;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(go[1]);
		close(done[0]);
		worker_main(go[0], done[1]);
	}
	close(go[0]);
	close(done[1]);
	worker.pid = pid;
	worker.go_w = go[1];
	worker.done_r = done[0];
	return 0;
}

void diff_native_shutdown(void)
{
	worker_stop();
	if (worker.sh)
		munmap(worker.sh, worker.shsize);
	worker.sh = NULL;
	worker.cap = 0;
}

int diff_native_run(const struct diff_case *cases, struct diff_result *res, int n)
{
	if (n > worker.cap) {
		diff_native_shutdown();
		size_t size = 4096 + (size_t)n * sizeof(struct diff_case) + 4096 +
			      (size_t)n * sizeof(struct diff_result);
		uint8_t *sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (sh == MAP_FAILED)
			return -errno;
		worker.sh = sh;
		worker.shsize = size;
		worker.cap = n;
	}
	struct shared_batch *b = sh_batch();
	struct diff_result *sres = sh_results();
	memcpy(sh_cases(), cases, (size_t)n * sizeof(*cases));
	int start = 0;
	while (start < n) {
		if (worker.pid < 0) {
			int e = worker_start();
			if (e < 0)
				return e;
		}
		b->start = start;
		b->n = n;
		b->done = start;
		if (write(worker.go_w, "g", 1) != 1) {
			worker_stop();
			continue; /* a fresh worker takes it */
		}
		/* wait for "done"; a case that makes no progress for a second
		 * hangs (an endless loop natively) */
		int last = -1;
		enum { OK, DIED, HUNG } how = OK;
		for (;;) {
			struct pollfd p = { .fd = worker.done_r, .events = POLLIN };
			int pr = poll(&p, 1, 1000);
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr > 0) {
				char byte;
				how = read(worker.done_r, &byte, 1) == 1 ? OK : DIED;
				break;
			}
			int now = __atomic_load_n(&b->done, __ATOMIC_ACQUIRE);
			if (now == last) {
				how = HUNG;
				break;
			}
			last = now;
		}
		int done = __atomic_load_n(&b->done, __ATOMIC_ACQUIRE);
		if (how == OK && done == n)
			break;
		int status = 0;
		if (how == HUNG)
			kill(worker.pid, SIGKILL);
		close(worker.go_w);
		close(worker.done_r);
		while (waitpid(worker.pid, &status, 0) < 0 && errno == EINTR)
			;
		worker.pid = -1;
		if (how == DIED && WIFEXITED(status) && WEXITSTATUS(status) == 99)
			return -EIO; /* could not even set up */
		if (done >= n)
			break;
		memset(&sres[done], 0, sizeof(sres[done]));
		sres[done].stop = how == HUNG ? STOP_TIMEOUT : STOP_CRASH;
		start = done + 1;
	}
	memcpy(res, sres, (size_t)n * sizeof(*res));
	return 0;
}

/* The data area's initial contents: shared by both sides. */
void diff_fill_data(const struct diff_case *c, uint8_t *data)
{
	uint64_t s = c->fill_seed;
	switch (c->fill) {
	case FILL_ZERO:
		memset(data, 0, DIFF_DATA_SIZE);
		break;
	case FILL_SMALL:
		for (size_t i = 0; i < DIFF_DATA_SIZE; i += 64) {
			uint64_t v = diff_rand(&s);
			for (int j = 0; j < 64; j++)
				data[i + j] = (v >> j) & 1;
		}
		break;
	default:
		for (size_t i = 0; i < DIFF_DATA_SIZE; i += 8) {
			uint64_t v = diff_rand(&s);
			memcpy(data + i, &v, 8);
		}
	}
	for (int i = 0; i < DIFF_MAX_PATCH; i++) {
		const struct diff_patch *p = &c->patch[i];
		if (p->len && p->off + p->len <= DIFF_DATA_SIZE)
			memcpy(data + p->off, p->bytes, p->len);
	}
}
