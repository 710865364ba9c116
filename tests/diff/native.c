/* Native runner: executes cases on the host CPU in a forked child.
 *
 * The child maps the code page (a memfd mapped twice: read+execute at
 * DIFF_CODE_BASE, read+write elsewhere for us to fill) and the data area at
 * their fixed addresses, then per case: fill code and data, load every
 * register from kd_in with a small trampoline and jump to the code. The
 * case stops on a signal (the INT3 trailer gives SIGTRAP; faults give
 * SIGSEGV/SIGBUS/SIGFPE/SIGILL; a timer gives SIGALRM for a hang). The
 * handler, running on an alternate stack, copies the register state out of
 * the ucontext (trap number, error code, CR2 included) and rewrites the
 * context so that sigreturn lands in kd_resume, which returns to C.
 *
 * Results go back through MAP_SHARED memory; if the child dies anyway the
 * parent marks the case it was on as crashed and forks a new child for the
 * rest of the batch. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
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

#define XMM_LOAD(n) "movdqu kd_in+160+16*" #n "(%rip), %xmm" #n "\n"
__asm__(
	".text\n"
	".globl kd_enter\n"
	".type kd_enter,@function\n"
	"kd_enter:\n"
	"push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
	"mov %rsp, kd_host_rsp(%rip)\n"
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
	".globl kd_resume\n"
	".type kd_resume,@function\n"
	"kd_resume:\n"
	"mov kd_host_rsp(%rip), %rsp\n"
	"cld\n"
	"pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
	"ret\n"
	".size kd_resume, .-kd_resume\n");

static volatile sig_atomic_t in_guest;
static struct diff_result *cur_res;   /* where the handler writes */

static void handler(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	struct diff_result *r = cur_res;

	if (!in_guest) {
		if (sig == SIGALRM)
			return; /* the timer fired just after the case ended */
		/* a fault in the harness itself: die loudly */
		signal(sig, SIG_DFL);
		return;
	}
	in_guest = 0;
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
	if (sig == SIGALRM) {
		r->stop = STOP_TIMEOUT;
	} else {
		r->stop = STOP_EXCEPTION;
		r->vector = (uint8_t)g[REG_TRAPNO];
		r->err = (uint32_t)g[REG_ERR];
		r->cr2 = (r->vector == 14) ? (uint64_t)(uintptr_t)si->si_addr : 0;
	}
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
	int sigs[] = { SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGALRM };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -errno;
	return 0;
}

static void child_run_one(uint8_t *code_rw, const struct diff_case *c, struct diff_result *r)
{
	memset(code_rw, 0xCC, DIFF_CODE_SIZE);
	memcpy(code_rw, c->code, c->code_len);
	diff_fill_data(c, (uint8_t *)DIFF_DATA_BASE);
	memset(r, 0, offsetof(struct diff_result, data));
	kd_in = c->in;
	cur_res = r;

	struct itimerval t = { .it_value = { .tv_sec = 0, .tv_usec = 200000 } };
	struct itimerval off = { 0 };
	setitimer(ITIMER_REAL, &t, NULL);
	in_guest = 1;
	kd_enter();
	setitimer(ITIMER_REAL, &off, NULL);
	memcpy(r->data, (void *)DIFF_DATA_BASE, DIFF_DATA_SIZE);
}

struct shared_batch {
	volatile int done; /* cases finished by the child */
};

int diff_native_run(const struct diff_case *cases, struct diff_result *res, int n)
{
	size_t shsize = sizeof(struct shared_batch) + 64 + (size_t)n * sizeof(struct diff_result);
	uint8_t *sh = mmap(NULL, shsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return -errno;
	struct shared_batch *b = (struct shared_batch *)sh;
	struct diff_result *sres = (struct diff_result *)(sh + 64);
	int start = 0, rc = 0;

	while (start < n) {
		b->done = start;
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		if (pid < 0) {
			rc = -errno;
			break;
		}
		if (pid == 0) {
			uint8_t *code_rw = NULL;
			int e = child_setup(&code_rw);
			if (e < 0) {
				fprintf(stderr, "diff: native child setup failed: %s\n", strerror(-e));
				_exit(99);
			}
			for (int i = start; i < n; i++) {
				child_run_one(code_rw, &cases[i], &sres[i]);
				__atomic_store_n(&b->done, i + 1, __ATOMIC_RELEASE);
			}
			_exit(0);
		}
		int status;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		int done = __atomic_load_n(&b->done, __ATOMIC_ACQUIRE);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && done == n)
			break;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 99 && done == start) {
			rc = -EIO;
			break;
		}
		/* the child died on case `done`: record it and go on after it */
		memset(&sres[done], 0, sizeof(sres[done]));
		sres[done].stop = STOP_CRASH;
		start = done + 1;
	}
	if (rc == 0)
		memcpy(res, sres, (size_t)n * sizeof(*res));
	munmap(sh, shsize);
	return rc;
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
