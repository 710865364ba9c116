/* kite command line: `kite run ...`, `kite version`, `kite --help`. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "api/instance.h"
#include "backends/block/block.h"
#include "backends/net/net.h"
#include "devices/pci/ivshmem.h"
#include "engine/engine.h"
#include "tools/shm_server.h"
#include "util/log.h"
#include "util/size.h"
#include "vmm/config.h"
#include "vmm/placement.h"
#include "vmm/vm.h"

#define KITE_VERSION "0.1.0"

static const char usage_main[] =
	"usage: kite <command> [options]\n"
	"\n"
	"kite is a virtual machine monitor for x86-64 guests.\n"
	"\n"
	"commands:\n"
	"  run        boot a kernel in a new VM (see `kite run --help`)\n"
	"  shm-server serve shared memory and doorbells to ivshmem peers\n"
	"             (see `kite shm-server --help`)\n"
	"  version    print kite's version\n"
	"\n"
	"Firecracker-compatible mode (a REST API on a Unix socket, see README.md):\n"
	"  kite --api-sock PATH [--config-file FILE] [options]\n"
	"  kite --no-api --config-file FILE [options]\n"
	"  --api-sock PATH     serve the API on PATH (default /run/kite.socket); the VM\n"
	"                      starts at PUT /actions InstanceStart\n"
	"  --config-file FILE  Firecracker's JSON configuration: boot at once\n"
	"  --no-api            no API socket (needs --config-file)\n"
	"  --id ID             the instance id GET / reports (default anonymous-instance)\n"
	"  --engine E          auto, kvm or soft (default auto)\n"
	"  --serial S          the guest console: stdio (default), none or file:PATH\n"
	"  -v, --verbose       more messages on stderr (repeat for debug)\n"
	"\n"
	"options:\n"
	"  -h, --help     this text\n"
	"  -V, --version  same as `kite version`\n";

static const char usage_run[] =
	"usage: kite run --kernel PATH [options]\n"
	"\n"
	"Boot a kernel in a new VM; kite exits when the guest powers off.\n"
	"\n"
	"  --kernel PATH        kernel: Linux bzImage, ELF vmlinux, or multiboot v1 ELF (required)\n"
	"  --initrd PATH        initial ramdisk (for multiboot: the single boot module)\n"
	"  --cmdline STR        kernel command line\n"
	"  --memory SIZE        guest RAM, e.g. 256M, 1G, or plain MiB (default 256M, min 16M)\n"
	"  --cpus N             vCPUs, 1..255 (default 1)\n"
	"  --engine E           auto, kvm or soft (default auto: kvm if it runs guest kernel\n"
	"                       code natively, else soft)\n"
	"  --serial S           console backend: stdio (default), none, or file:PATH\n"
	"  --console C          where that backend goes: serial (default: COM1, the guest's\n"
	"                       ttyS0) or virtio (a virtio-console PCI device, the guest's\n"
	"                       hvc0: boot Linux with console=hvc0; COM1 is then unconnected)\n"
	"  --disk PATH[,readonly][,id=NAME][,io=sync|threads|uring]\n"
	"                       a raw disk image as a virtio-blk PCI device; repeatable, up\n"
	"                       to 16 (the first is the guest's vda); readonly: guest writes\n"
	"                       fail with an I/O error; id: the serial the guest reads (default\n"
	"                       the file name); io: the host I/O engine (default uring)\n"
	"  --rng                a virtio-rng PCI device fed by the host's getrandom()\n"
	"  --net tap=NAME[,mac=MAC]\n"
	"  --net user[,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...[,mac=MAC]\n"
	"                       a virtio-net PCI device; repeatable, up to 8 (the first is the\n"
	"                       guest's eth0). tap: an existing tap device (checksum/TSO\n"
	"                       offloads when the kernel allows). user: NAT through libslirp,\n"
	"                       no privilege needed: guest 10.0.2.15 by DHCP, gateway (the\n"
	"                       host) 10.0.2.2, DNS 10.0.2.3; hostfwd forwards a host port\n"
	"                       (HOSTADDR default 127.0.0.1) to the guest. mac: default is\n"
	"                       a stable locally administered address derived from the option\n"
	"                       text and the NIC index\n"
	"  --debug-exit         enable the debug-exit port 0xf4: a guest write of v ends\n"
	"                       kite with status (v << 1) | 1\n"
	"  --on-reboot A        exit (default) or restart when the guest reboots\n"
	"  --shm path=FILE[,size=SIZE] | --shm server=SOCKET[,vectors=N]\n"
	"                       an ivshmem PCI device (QEMU's 1af4:1110): BAR2 is the shared\n"
	"                       file itself (created at SIZE when missing; a power of two,\n"
	"                       4K..256M), or memory from an ivshmem server (kite shm-server)\n"
	"                       with doorbell interrupts between peers; repeatable, up to 4\n"
	"  --cpu-affinity VCPU=CPULIST[:VCPU=CPULIST...]\n"
	"                       pin vCPU threads to host CPUs (e.g. 0=0:1=1,3); unnamed\n"
	"                       vCPUs run where kite may run\n"
	"  --io-affinity CPULIST  pin kite's other threads (event loop, block I/O) there\n"
	"  --sched rt:PRIO|normal[:WEIGHT]\n"
	"                       vCPU threads: SCHED_FIFO at PRIO 1..99, or the normal policy\n"
	"                       with a relative WEIGHT 1..10000 (100 = default share; kite\n"
	"                       sets the nice value it maps to). A host refusal is an error\n"
	"  -v, --verbose        more messages on stderr (repeat for debug)\n"
	"  -h, --help           this text\n"
	"\n"
	"On the stdio console (COM1 or hvc0), Ctrl-A x quits and Ctrl-A Ctrl-A sends Ctrl-A.\n"
	"\n"
	"exit status: 0 guest powered off or reset, 1 kite error, 2 guest triple fault,\n"
	"             (v << 1) | 1 guest wrote v to the debug-exit port.\n";

static int check_readable(const char *what, const char *path)
{
	if (access(path, R_OK) != 0) {
		kite_err("cannot open %s '%s': %s", what, path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The most guest RAM we let a user ask for: what the host has in RAM plus
 * swap (mappings are lazy, but a VM that can never be backed is an error). */
static uint64_t host_memory_limit(void)
{
	struct sysinfo si;
	if (sysinfo(&si) != 0)
		return UINT64_MAX;
	return ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
}

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_MEMORY, OPT_CPUS, OPT_ENGINE,
       OPT_SERIAL, OPT_DEBUG_EXIT, OPT_ON_REBOOT, OPT_DISK, OPT_CONSOLE, OPT_RNG,
       OPT_NET, OPT_CPU_AFFINITY, OPT_IO_AFFINITY, OPT_SCHED, OPT_SHM };

/* Make room for one more element at the end of *array (n elements of size
 * bytes now, at most max): 0, or -1 having told the user why. */
static int grow_one(void **array, unsigned n, unsigned max, size_t size,
		    const char *flag, const char *what, const char *text)
{
	if (n >= max) {
		kite_err("%s '%s': at most %u %s", flag, text, max, what);
		return -1;
	}
	void *a = realloc(*array, (n + 1) * size);
	if (!a) {
		kite_err("%s '%s': out of memory", flag, text);
		return -1;
	}
	*array = a;
	return 0;
}

/* Append one --net to cfg->nets (an array the caller frees). */
static int add_net(struct vm_config *cfg, const char *text)
{
	void *a = (void *)cfg->nets;
	if (grow_one(&a, cfg->nr_nets, VM_MAX_NICS, sizeof(*cfg->nets), "--net", "NICs", text))
		return -1;
	cfg->nets = a;
	if (net_config_parse(text, cfg->nr_nets, (struct net_config *)&cfg->nets[cfg->nr_nets]))
		return -1; /* reported */
	cfg->nr_nets++;
	return 0;
}

/* Append one --shm to cfg->shms (an array the caller frees). */
static int add_shm(struct vm_config *cfg, const char *text)
{
	void *a = (void *)cfg->shms;
	if (grow_one(&a, cfg->nr_shms, VM_MAX_SHMS, sizeof(*cfg->shms), "--shm", "shared memory devices", text))
		return -1;
	cfg->shms = a;
	char why[256];
	if (shm_config_parse(text, (struct shm_config *)&cfg->shms[cfg->nr_shms], why, sizeof(why))) {
		kite_err("%s", why);
		return -1;
	}
	cfg->nr_shms++;
	return 0;
}

/* Append one --disk to cfg->disks (an array the caller frees). */
static int add_disk(struct vm_config *cfg, const char *text)
{
	void *a = (void *)cfg->disks;
	if (grow_one(&a, cfg->nr_disks, VM_MAX_DISKS, sizeof(*cfg->disks), "--disk", "disks", text))
		return -1;
	cfg->disks = a;
	if (disk_config_parse(text, (struct disk_config *)&cfg->disks[cfg->nr_disks]))
		return -1; /* reported */
	cfg->nr_disks++;
	return 0;
}

static int parse_run_args(int argc, char **argv, struct vm_config *cfg, struct placement *pl)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "cmdline", required_argument, NULL, OPT_CMDLINE },
		{ "memory", required_argument, NULL, OPT_MEMORY },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "engine", required_argument, NULL, OPT_ENGINE },
		{ "serial", required_argument, NULL, OPT_SERIAL },
		{ "debug-exit", no_argument, NULL, OPT_DEBUG_EXIT },
		{ "on-reboot", required_argument, NULL, OPT_ON_REBOOT },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "console", required_argument, NULL, OPT_CONSOLE },
		{ "rng", no_argument, NULL, OPT_RNG },
		{ "net", required_argument, NULL, OPT_NET },
		{ "cpu-affinity", required_argument, NULL, OPT_CPU_AFFINITY },
		{ "io-affinity", required_argument, NULL, OPT_IO_AFFINITY },
		{ "sched", required_argument, NULL, OPT_SCHED },
		{ "shm", required_argument, NULL, OPT_SHM },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int verbose = 0;
	opterr = 0;
	optind = 1;
	for (;;) {
		int c = getopt_long(argc, argv, ":hv", opts, NULL);
		if (c == -1)
			break;
		switch (c) {
		case 'h':
			fputs(usage_run, stdout);
			exit(0);
		case 'v':
			verbose++;
			break;
		case OPT_KERNEL: cfg->kernel_path = optarg; break;
		case OPT_INITRD: cfg->initrd_path = optarg; break;
		case OPT_CMDLINE: cfg->cmdline = optarg; break;
		case OPT_MEMORY: {
			uint64_t bytes;
			if (parse_size_mib_default(optarg, &bytes)) {
				kite_err("invalid --memory '%s': expected a size like 256M, 1G or a number of MiB", optarg);
				return -1;
			}
			cfg->mem_size = bytes;
			break;
		}
		case OPT_CPUS: {
			char *end;
			errno = 0;
			long n = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || n < 1 || n > VM_MAX_CPUS) {
				kite_err("invalid --cpus '%s': expected 1..%d", optarg, VM_MAX_CPUS);
				return -1;
			}
			cfg->nr_cpus = (unsigned)n;
			break;
		}
		case OPT_ENGINE:
			if (!strcmp(optarg, "auto")) cfg->engine = ENGINE_AUTO;
			else if (!strcmp(optarg, "kvm")) cfg->engine = ENGINE_KVM;
			else if (!strcmp(optarg, "soft")) cfg->engine = ENGINE_SOFT;
			else {
				kite_err("unknown engine '%s': expected auto, kvm or soft", optarg);
				return -1;
			}
			break;
		case OPT_SERIAL:
			if (!strcmp(optarg, "stdio")) cfg->serial = SERIAL_STDIO;
			else if (!strcmp(optarg, "none")) cfg->serial = SERIAL_NONE;
			else if (!strncmp(optarg, "file:", 5) && optarg[5]) {
				cfg->serial = SERIAL_FILE;
				cfg->serial_path = optarg + 5;
			} else {
				kite_err("invalid --serial '%s': expected stdio, none or file:PATH", optarg);
				return -1;
			}
			break;
		case OPT_DEBUG_EXIT: cfg->debug_exit = true; break;
		case OPT_ON_REBOOT:
			if (!strcmp(optarg, "exit")) cfg->on_reboot = REBOOT_EXIT;
			else if (!strcmp(optarg, "restart")) cfg->on_reboot = REBOOT_RESTART;
			else {
				kite_err("invalid --on-reboot '%s': expected exit or restart", optarg);
				return -1;
			}
			break;
		case OPT_DISK:
			if (add_disk(cfg, optarg))
				return -1;
			break;
		case OPT_CONSOLE:
			if (!strcmp(optarg, "serial")) cfg->console = CONSOLE_SERIAL;
			else if (!strcmp(optarg, "virtio")) cfg->console = CONSOLE_VIRTIO;
			else {
				kite_err("invalid --console '%s': expected serial or virtio", optarg);
				return -1;
			}
			break;
		case OPT_RNG: cfg->rng = true; break;
		case OPT_NET:
			if (add_net(cfg, optarg))
				return -1;
			break;
		case OPT_SHM:
			if (add_shm(cfg, optarg))
				return -1;
			break;
		case OPT_CPU_AFFINITY:
		case OPT_IO_AFFINITY:
		case OPT_SCHED: {
			char why[256];
			int r = c == OPT_CPU_AFFINITY ? placement_parse_cpu_affinity(pl, optarg, why, sizeof(why))
				: c == OPT_IO_AFFINITY ? placement_parse_io_affinity(pl, optarg, why, sizeof(why))
				: placement_parse_sched(pl, optarg, why, sizeof(why));
			if (r) {
				kite_err("%s", why);
				return -1;
			}
			cfg->placement = pl;
			break;
		}
		case ':':
			kite_err("option '%s' needs a value (see kite run --help)", argv[optind - 1]);
			return -1;
		default:
			kite_err("unknown option '%s' (see kite run --help)", argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		kite_err("unexpected argument '%s' (see kite run --help)", argv[optind]);
		return -1;
	}
	log_set_level(verbose >= 2 ? LOG_DEBUG : verbose == 1 ? LOG_INFO : LOG_WARN);
	if (!cfg->kernel_path) {
		kite_err("no kernel given: use --kernel PATH (see kite run --help)");
		return -1;
	}
	if (check_readable("kernel", cfg->kernel_path))
		return -1;
	if (cfg->initrd_path && check_readable("initrd", cfg->initrd_path))
		return -1;
	if (cfg->mem_size < VM_MIN_MEMORY) {
		kite_err("--memory %llu MiB is too small: kite needs at least %llu MiB",
			 (unsigned long long)(cfg->mem_size >> 20),
			 (unsigned long long)(VM_MIN_MEMORY >> 20));
		return -1;
	}
	uint64_t limit = host_memory_limit();
	if (cfg->mem_size > limit) {
		kite_err("--memory %llu MiB is more than this host has (%llu MiB)",
			 (unsigned long long)(cfg->mem_size >> 20), (unsigned long long)(limit >> 20));
		return -1;
	}
	return 0;
}

/* The VM's life once cfg is filled; cfg->disks is freed by the caller. */
/* Create, boot and run one VM until it stops; returns kite's exit status and
 * whether the guest asked for a reset that --on-reboot restart turns into a
 * fresh boot. */
static int boot_once(const struct vm_config *cfg, const struct engine_ops *engine,
		     const sigset_t *stop_signals, bool *restart)
{
	*restart = false;
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return 1;
	int status = 1;
	if (vm_create(vm, cfg, engine) || vm_load(vm) || vm_run(vm)) {
		vm_request_stop(vm, VM_STOP_ERROR, 0);
		goto out;
	}
	vm->main_thread = pthread_self();
	vm->notify_main = true;
	while (!vm_should_stop(vm)) {
		int sig;
		sigwait(stop_signals, &sig);
		if (sig != SIGUSR2)
			vm_request_stop(vm, VM_STOP_SIGNAL, 0);
	}
	vm_join(vm);
	status = vm_exit_status(vm);
	int reason = atomic_load(&vm->stop_reason);
	if (reason == VM_STOP_TRIPLE_FAULT)
		kite_err("guest triple fault: the VM shut down");
	*restart = reason == VM_STOP_RESET && cfg->on_reboot == REBOOT_RESTART;
out:
	vm_destroy(vm);
	free(vm);
	return status;
}

static int run_vm(int argc, char **argv, struct vm_config *cfg, struct placement *pl)
{
	if (parse_run_args(argc, argv, cfg, pl))
		return 1;

	const struct engine_ops *engine;
	if (engine_select(cfg, &engine))
		return 1;

	/* SIGINT/SIGTERM end the VM cleanly: they are taken by sigwait here,
	 * in the main thread, never by a vCPU thread. */
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGHUP);
	sigaddset(&stop_signals, SIGUSR2); /* "the VM stopped by itself" */
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

	/* --on-reboot restart: a guest reset builds the VM afresh (memory,
	 * devices, vCPUs) from the same configuration, as a machine reboot. */
	int status;
	bool restart;
	do {
		status = boot_once(cfg, engine, &stop_signals, &restart);
		if (restart)
			kite_info("guest reset: restarting the VM");
	} while (restart);
	return status;
}

/* `kite --api-sock ...`: Firecracker's command line. */
static int cmd_api(int argc, char **argv)
{
	enum { A_SOCK = 256, A_CONFIG, A_NO_API, A_ID, A_ENGINE, A_SERIAL };
	static const struct option opts[] = {
		{ "api-sock", required_argument, NULL, A_SOCK },
		{ "config-file", required_argument, NULL, A_CONFIG },
		{ "no-api", no_argument, NULL, A_NO_API },
		{ "id", required_argument, NULL, A_ID },
		{ "engine", required_argument, NULL, A_ENGINE },
		{ "serial", required_argument, NULL, A_SERIAL },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct api_options o = { .sock_path = "/run/kite.socket", .version = KITE_VERSION,
				 .engine = ENGINE_AUTO, .serial = SERIAL_STDIO };
	int verbose = 0;
	opterr = 0;
	optind = 1;
	for (;;) {
		int c = getopt_long(argc, argv, ":hv", opts, NULL);
		if (c == -1)
			break;
		switch (c) {
		case 'h':
			fputs(usage_main, stdout);
			return 0;
		case 'v': verbose++; break;
		case A_SOCK: o.sock_path = optarg; break;
		case A_CONFIG: o.config_file = optarg; break;
		case A_NO_API: o.no_api = true; break;
		case A_ID: o.id = optarg; break;
		case A_ENGINE:
			if (!strcmp(optarg, "auto")) o.engine = ENGINE_AUTO;
			else if (!strcmp(optarg, "kvm")) o.engine = ENGINE_KVM;
			else if (!strcmp(optarg, "soft")) o.engine = ENGINE_SOFT;
			else {
				kite_err("unknown engine '%s': expected auto, kvm or soft", optarg);
				return 1;
			}
			break;
		case A_SERIAL:
			if (!strcmp(optarg, "stdio")) o.serial = SERIAL_STDIO;
			else if (!strcmp(optarg, "none")) o.serial = SERIAL_NONE;
			else if (!strncmp(optarg, "file:", 5) && optarg[5]) {
				o.serial = SERIAL_FILE;
				o.serial_path = optarg + 5;
			} else {
				kite_err("invalid --serial '%s': expected stdio, none or file:PATH", optarg);
				return 1;
			}
			break;
		case ':':
			kite_err("option '%s' needs a value (see kite --help)", argv[optind - 1]);
			return 1;
		default:
			kite_err("unknown option '%s' (see kite --help)", argv[optind - 1]);
			return 1;
		}
	}
	if (optind < argc) {
		kite_err("unexpected argument '%s' (see kite --help)", argv[optind]);
		return 1;
	}
	if (o.no_api && !o.config_file) {
		kite_err("--no-api needs --config-file FILE: nothing would configure the VM");
		return 1;
	}
	log_set_level(verbose >= 2 ? LOG_DEBUG : verbose == 1 ? LOG_INFO : LOG_WARN);
	return api_main(&o);
}

static int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	struct placement pl;
	vm_config_defaults(&cfg);
	placement_init(&pl);
	int status = run_vm(argc, argv, &cfg, &pl);
	placement_free(&pl);
	free((void *)cfg.shms);
	free((void *)cfg.disks);
	free((void *)cfg.nets);
	return status;
}

/* A descriptor among 0-2 that the caller closed would be reused by the next
 * open (epoll, /dev/kvm) and the serial console would then read or write
 * it: park /dev/null on each missing one first. */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
		if (n >= 0 && n != fd) {
			dup2(n, fd);
			close(n);
		}
	}
}

int main(int argc, char **argv)
{
	ensure_std_fds();
	if (argc < 2) {
		fputs(usage_main, stderr);
		return 1;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
		printf("kite %s\n", KITE_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "shm-server"))
		return shm_server_main(argc - 1, argv + 1);
	if (!strncmp(cmd, "--api-sock", 10) || !strncmp(cmd, "--config-file", 13) ||
	    !strcmp(cmd, "--no-api") || !strncmp(cmd, "--id", 4))
		return cmd_api(argc, argv);
	kite_err("unknown command '%s' (see kite --help)", cmd);
	return 1;
}
