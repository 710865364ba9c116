/* Private to the fpu library: the FNSAVE/FRSTOR image the host x87 uses in
 * 64-bit mode (32-bit protected-mode layout, 108 bytes). */
#ifndef KITE_ENGINE_SOFT_FPU_X87_IMG_H
#define KITE_ENGINE_SOFT_FPU_X87_IMG_H

#include <stdint.h>

#include "arch/x86/cpu_state.h"

struct fsave32 {
	uint16_t fcw, r0;
	uint16_t fsw, r1;
	uint16_t ftw, r2;
	uint32_t fip;
	uint16_t fcs, fop;
	uint32_t fdp;
	uint16_t fds, r3;
	uint8_t st[8][10];
} __attribute__((packed));
_Static_assert(sizeof(struct fsave32) == 108, "FNSAVE image is 108 bytes");

/* Control/status/tags/registers only; FIP/FDP/FOP stay with the guest. */
void x87_img_from_fx(const struct fxsave_area *fx, struct fsave32 *img);
void x87_img_to_fx(const struct fsave32 *img, struct fxsave_area *fx);
/* Load then save img on the host x87: ES/B and tags as hardware makes
 * them. */
void x87_img_normalize(struct fsave32 *img);
/* Set FSW.TOP, rotating the stack-ordered st[] (physical registers keep
 * their contents). */
void x87_set_top(struct fxsave_area *fx, unsigned top);
void x87_fninit(struct fxsave_area *fx);

#endif
