#ifndef KITE_VMM_VCPU_H
#define KITE_VMM_VCPU_H

#include <pthread.h>
#include <stdbool.h>

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id;          /* also its APIC ID */
	pthread_t thread;
	bool thread_started;
	void *engine_data;
};

#endif
