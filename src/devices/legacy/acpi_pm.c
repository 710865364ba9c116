/* ACPI PM1 event/control registers and the PM timer. No SCI is ever
 * raised: no event source is implemented (the power button, timer
 * overflow and GPEs are absent), so status bits only change by guest
 * writes that clear them. */
#include "devices/legacy/acpi_pm.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arch/x86/layout.h"
#include "util/log.h"
#include "vmm/vm.h"

struct pm_regs {
	uint16_t sts, en, cnt;
};

#define PM_STATE_VERSION 1

struct acpi_pm {
	pthread_mutex_t lock;
	struct vm *vm;
	struct pm_regs r;
};

static uint32_t pm_timer(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* ticks = ns * f / 1e9 without overflow for centuries of uptime. */
	unsigned __int128 ns = (unsigned __int128)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	return (uint32_t)((ns * ACPI_PM_TIMER_HZ / 1000000000u) & 0xFFFFFF);
}

/* The 12 bytes 0x600..0x60B as one little register file. */
static uint8_t reg_byte(struct acpi_pm *pm, unsigned off)
{
	uint16_t cnt = (uint16_t)((pm->r.cnt & ~ACPI_PM1_CNT_SLP_EN) | ACPI_PM1_CNT_SCI_EN);
	switch (off) {
	case 0: case 1: return (uint8_t)(pm->r.sts >> (8 * (off & 1)));
	case 2: case 3: return (uint8_t)(pm->r.en >> (8 * (off & 1)));
	case 4: case 5: return (uint8_t)(cnt >> (8 * (off & 1)));
	case 8: case 9: case 10: case 11: return (uint8_t)(pm_timer() >> (8 * (off - 8)));
	default: return 0xFF;
	}
}

static uint64_t pm_read(void *opaque, uint64_t offset, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint64_t v = 0;
	pthread_mutex_lock(&pm->lock);
	if (offset == 8 && size == 4) {
		v = pm_timer(); /* one sample, not four */
	} else {
		for (unsigned i = 0; i < size; i++)
			v |= (uint64_t)reg_byte(pm, (unsigned)offset + i) << (8 * i);
	}
	pthread_mutex_unlock(&pm->lock);
	return v;
}

static void pm1_cnt_write(struct acpi_pm *pm, uint16_t v)
{
	if (v & ACPI_PM1_CNT_SLP_EN) {
		unsigned typ = (v >> ACPI_PM1_CNT_SLP_TYP_SHIFT) & 7;
		if (typ == ACPI_PM_SLP_TYP_S5) {
			kite_info("guest entered ACPI S5: power off");
			vm_request_stop(pm->vm, VM_STOP_POWEROFF, 0);
		} else {
			kite_debug("acpi: sleep type %u not supported, ignored", typ);
		}
	}
	pm->r.cnt = (uint16_t)(v & ~ACPI_PM1_CNT_SLP_EN);
}

static void pm_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct acpi_pm *pm = opaque;
	pthread_mutex_lock(&pm->lock);
	/* Split the access over the registers it covers; a register touched
	 * partly keeps its other byte. */
	for (unsigned i = 0; i < size; i++) {
		unsigned off = (unsigned)offset + i;
		uint8_t b = (uint8_t)(value >> (8 * i));
		unsigned sh = 8 * (off & 1);
		switch (off) {
		case 0: case 1:
			pm->r.sts &= (uint16_t)~(b << sh); /* write 1 to clear */
			break;
		case 2: case 3:
			pm->r.en = (uint16_t)((pm->r.en & ~(0xFF << sh)) | (b << sh));
			break;
		case 4:
			/* Wait for the high byte when the access covers it: the
			 * sleep request is one 16-bit write. */
			if (i + 1 < size)
				break;
			pm1_cnt_write(pm, (uint16_t)((pm->r.cnt & 0xFF00) | b));
			break;
		case 5: {
			uint16_t lo = (i > 0) ? (uint8_t)(value >> (8 * (i - 1))) : (uint8_t)pm->r.cnt;
			pm1_cnt_write(pm, (uint16_t)(lo | (b << 8)));
			break;
		}
		default: /* the timer is read-only */
			break;
		}
	}
	pthread_mutex_unlock(&pm->lock);
}

static void pm_reset(void *dev)
{
	struct acpi_pm *pm = dev;
	pthread_mutex_lock(&pm->lock);
	memset(&pm->r, 0, sizeof(pm->r));
	pthread_mutex_unlock(&pm->lock);
}

static size_t pm_save(void *dev, void *buf, size_t len)
{
	struct acpi_pm *pm = dev;
	size_t need = 1 + sizeof(struct pm_regs);
	if (len < need)
		return need;
	pthread_mutex_lock(&pm->lock);
	((uint8_t *)buf)[0] = PM_STATE_VERSION;
	memcpy((uint8_t *)buf + 1, &pm->r, sizeof(pm->r));
	pthread_mutex_unlock(&pm->lock);
	return need;
}

static int pm_restore(void *dev, const void *buf, size_t len)
{
	struct acpi_pm *pm = dev;
	if (len != 1 + sizeof(struct pm_regs) || ((const uint8_t *)buf)[0] != PM_STATE_VERSION)
		return -EINVAL;
	pthread_mutex_lock(&pm->lock);
	memcpy(&pm->r, (const uint8_t *)buf + 1, sizeof(pm->r));
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static void pm_destroy(void *dev)
{
	struct acpi_pm *pm = dev;
	if (pm->vm)
		bus_unregister(&pm->vm->pio, PORT_ACPI_PM_BASE, pm);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

const struct device_ops acpi_pm_ops = {
	.name = "acpi_pm", .reset = pm_reset, .save = pm_save,
	.restore = pm_restore, .destroy = pm_destroy,
};

int acpi_pm_create(struct vm *vm, struct acpi_pm **out)
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	if (!pm)
		return -ENOMEM;
	pthread_mutex_init(&pm->lock, NULL);
	pm->vm = vm;
	int ret = bus_register(&vm->pio, PORT_ACPI_PM_BASE, 12, pm_read, pm_write, pm, "acpi_pm");
	if (!ret)
		ret = vm_add_device(vm, &acpi_pm_ops, pm);
	if (ret) {
		pm_destroy(pm);
		return ret;
	}
	if (out)
		*out = pm;
	return 0;
}
