# Test guests: multiboot v1 ELF32 kernels built with the host gcc, included
# by the top Makefile. Output: $(GUEST_BUILD)/<name>.elf.
GUEST_BUILD  := build/guests
GUEST_CFLAGS := -m32 -march=i686 -ffreestanding -fno-builtin -nostdlib -fno-pic -fno-pie \
                -fno-stack-protector -fno-asynchronous-unwind-tables -mno-sse -mno-mmx \
                -mno-80387 -O2 -g -Wall -Wextra -Werror -std=gnu11 -Iguests
GUEST_LDFLAGS := -m32 -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-n -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments \
                 -T guests/lib/link.ld
GUEST_NAMES  := hello echo longmode interrupts spin triple cpuid smp reset
GUEST_NAMES  += virtio_blk virtio_console rt_latency ivshmem
GUEST_ELFS   := $(GUEST_NAMES:%=$(GUEST_BUILD)/%.elf)
GUEST_LIB    := $(GUEST_BUILD)/lib/start.o $(GUEST_BUILD)/lib/runtime.o
# shared by the guests that need them: PCI/virtio-PCI discovery, the IDT
GUEST_PCI    := $(GUEST_BUILD)/lib/pci.o
GUEST_IDT    := $(GUEST_BUILD)/lib/idt.o $(GUEST_BUILD)/interrupts_asm.o

guests: $(GUEST_ELFS)

$(GUEST_BUILD)/%.o: guests/%.c guests/lib/runtime.h
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_BUILD)/%.o: guests/%.S
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_BUILD)/lib/pci.o $(GUEST_BUILD)/virtio_blk.o $(GUEST_BUILD)/virtio_console.o $(GUEST_BUILD)/ivshmem.o: guests/lib/pci.h
$(GUEST_BUILD)/lib/idt.o $(GUEST_BUILD)/interrupts.o $(GUEST_BUILD)/virtio_blk.o $(GUEST_BUILD)/rt_latency.o $(GUEST_BUILD)/ivshmem.o: guests/lib/idt.h

$(GUEST_BUILD)/hello.elf: $(GUEST_BUILD)/hello.o $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/reset.elf: $(GUEST_BUILD)/reset.o $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/echo.elf: $(GUEST_BUILD)/echo.o $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/longmode.elf: $(GUEST_BUILD)/longmode.o $(GUEST_BUILD)/longmode_asm.o $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/interrupts.elf: $(GUEST_BUILD)/interrupts.o $(GUEST_IDT) $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/spin.elf: $(GUEST_BUILD)/spin.o $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/triple.elf: $(GUEST_BUILD)/triple.o $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/cpuid.elf: $(GUEST_BUILD)/cpuid.o $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/smp.elf: $(GUEST_BUILD)/smp.o $(GUEST_BUILD)/smp_asm.o $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/virtio_blk.elf: $(GUEST_BUILD)/virtio_blk.o $(GUEST_PCI) $(GUEST_IDT) $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/virtio_console.elf: $(GUEST_BUILD)/virtio_console.o $(GUEST_PCI) $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/rt_latency.elf: $(GUEST_BUILD)/rt_latency.o $(GUEST_IDT) $(GUEST_LIB) guests/lib/link.ld
$(GUEST_BUILD)/ivshmem.elf: $(GUEST_BUILD)/ivshmem.o $(GUEST_PCI) $(GUEST_IDT) $(GUEST_LIB) guests/lib/link.ld

$(GUEST_ELFS):
	$(CC) $(GUEST_LDFLAGS) -o $@ $(filter %.o,$^)

# System test guests (sys_*): multiboot ELF64 kernels whose 32-bit entry
# (sys_start64.S) switches to long mode; the C parts are 64-bit code built
# with the shared runtime (guests/lib/runtime.c, built again with -m64).
SYS_BUILD   := $(GUEST_BUILD)/sys64
SYS_CFLAGS  := -m64 -ffreestanding -fno-builtin -nostdlib -fno-pic -fno-pie -mcmodel=small \
               -mno-red-zone -mgeneral-regs-only -fno-stack-protector \
               -fno-asynchronous-unwind-tables -fno-tree-loop-distribute-patterns \
               -O2 -g -Wall -Wextra -Werror -Wno-int-to-pointer-cast -std=gnu11 -Iguests
SYS_LDFLAGS := -m64 -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-n -Wl,-z,noexecstack \
               -Wl,--no-warn-rwx-segments -T guests/lib/link.ld
SYS_NAMES   := sys_modes sys_paging sys_user sys_ist sys_smc sys_exceptions sys_xmc
SYS_NAMES   += sys_init
SYS_ELFS    := $(SYS_NAMES:%=$(GUEST_BUILD)/%.elf)
SYS_LIB     := $(SYS_BUILD)/sys_start64.o $(SYS_BUILD)/sys_lib.o $(SYS_BUILD)/lib/runtime.o

guests: $(SYS_ELFS)

$(SYS_BUILD)/%.o: guests/%.c guests/lib/runtime.h guests/sys_lib.h
	@mkdir -p $(dir $@)
	$(CC) $(SYS_CFLAGS) -c -o $@ $<

$(SYS_BUILD)/%.o: guests/%.S
	@mkdir -p $(dir $@)
	$(CC) $(SYS_CFLAGS) -c -o $@ $<

$(SYS_ELFS): $(GUEST_BUILD)/%.elf: $(SYS_BUILD)/%.o $(SYS_LIB) guests/lib/link.ld
	$(CC) $(SYS_LDFLAGS) -o $@ $(filter %.o,$^)
$(GUEST_BUILD)/sys_modes.elf: $(SYS_BUILD)/sys_modes_asm.o
$(GUEST_BUILD)/sys_xmc.elf: $(SYS_BUILD)/sys_xmc_asm.o
$(GUEST_BUILD)/sys_init.elf: $(SYS_BUILD)/sys_xmc_asm.o
