/* isa-debug-exit at port 0xf4 (enabled with --debug-exit): a guest write of
 * v ends the VM with VM_STOP_DEBUG_EXIT and code v; kite then exits with
 * (v << 1) | 1, as QEMU's isa-debug-exit does. Test guests use it to report
 * a result without a shutdown path. Reads return all ones. */
#ifndef KITE_DEVICES_LEGACY_DEBUG_EXIT_H
#define KITE_DEVICES_LEGACY_DEBUG_EXIT_H

struct vm;

/* Registers the port on vm->pio and the device with the VM. 0 or -errno. */
int debug_exit_create(struct vm *vm);

#endif
