/* Segmented addressing outside 64-bit mode, and the stack. */
#include "engine/soft/soft_cpu.h"

uint64_t soft_seg_check(struct soft_cpu *cpu, int seg, uint64_t off, unsigned size, bool write)
{
	const struct segment *sg = &cpu->s.seg[seg];
	int vec = seg == SEG_SS ? 12 : 13;
	if (!(cpu->s.cr0 & CR0_PE) || (cpu->s.rflags & RFLAGS_VM)) {
		if (off + size - 1 > sg->limit && sg->limit < 0xffffffffu)
			soft_raise(cpu, vec, 0, true);
		return (uint32_t)(sg->base + off);
	}
	if (sg->unusable || !sg->present)
		soft_raise(cpu, vec, 0, true);
	if (sg->type & 8) {
		/* code: never writable, readable only with R */
		if (write || !(sg->type & 2))
			soft_raise(cpu, vec, 0, true);
	} else if (write && !(sg->type & 2)) {
		soft_raise(cpu, vec, 0, true);
	}
	uint64_t last = off + size - 1;
	if (!(sg->type & 8) && (sg->type & 4)) {
		/* expand-down */
		uint64_t top = sg->db ? 0xffffffffULL : 0xffffULL;
		if (off <= sg->limit || last > top)
			soft_raise(cpu, vec, 0, true);
	} else if (last > sg->limit) {
		soft_raise(cpu, vec, 0, true);
	}
	return (uint32_t)(sg->base + off);
}

static inline uint64_t sp_mask(struct soft_cpu *cpu)
{
	return size_mask(cpu->stack_size);
}

void soft_push(struct soft_cpu *cpu, unsigned size, uint64_t v)
{
	uint64_t m = sp_mask(cpu);
	uint64_t sp = (cpu->s.gpr[RSP] - size) & m;
	lin_write(cpu, seg_lin(cpu, SEG_SS, sp, size, true), size, v);
	cpu->s.gpr[RSP] = (cpu->s.gpr[RSP] & ~m) | sp;
}

uint64_t soft_pop(struct soft_cpu *cpu, unsigned size)
{
	uint64_t m = sp_mask(cpu);
	uint64_t sp = cpu->s.gpr[RSP] & m;
	uint64_t v = lin_read(cpu, seg_lin(cpu, SEG_SS, sp, size, false), size);
	cpu->s.gpr[RSP] = (cpu->s.gpr[RSP] & ~m) | ((sp + size) & m);
	return v;
}

uint64_t soft_stack_peek(struct soft_cpu *cpu, unsigned off, unsigned size)
{
	uint64_t m = sp_mask(cpu);
	uint64_t sp = (cpu->s.gpr[RSP] + off) & m;
	return lin_read(cpu, seg_lin(cpu, SEG_SS, sp, size, false), size);
}
