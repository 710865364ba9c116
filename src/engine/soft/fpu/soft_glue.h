/* Glue between the x87/SSE library (fpu.h) and the soft engine's core
 * (soft_cpu.h): instruction handlers for every x87, MMX-data, SSE and SSE2
 * mnemonic the library implements (FISTTP, SSE3, excepted), built on the
 * core's operand and memory helpers.
 *
 * Not wired in by itself. To use it, call fpu_soft_handlers(handlers) at the
 * end of handlers_init() in cpu.c (after soft_sse_handlers(), whose entries
 * it overrides except FXSAVE/FXRSTOR/LDMXCSR/STMXCSR), or
 * fpu_soft_register() before any vCPU runs. */
#ifndef KITE_ENGINE_SOFT_FPU_SOFT_GLUE_H
#define KITE_ENGINE_SOFT_FPU_SOFT_GLUE_H

#include "engine/soft/soft_cpu.h"

/* Fill the core's handler table t (indexed by ZydisMnemonic). MOVSD and
 * CMPSD go through soft_set_sse_alias (they share the string mnemonics). */
void fpu_soft_handlers(soft_handler *t);

/* The same through soft_register_handler(). */
void fpu_soft_register(void);

#endif
