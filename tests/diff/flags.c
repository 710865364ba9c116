/* RFLAGS bits the Intel SDM (vol. 2, "Flags Affected" of each instruction)
 * defines as undefined. Only these are masked in the comparison; every other
 * flag must match the host exactly. The quoted wording is the SDM's.
 * (The host here is AMD; the AMD APM leaves the same bits undefined.) */
#include <Zydis/Zydis.h>

#include "diff.h"

#define CF 0x001ULL
#define PF 0x004ULL
#define AF 0x010ULL
#define ZF 0x040ULL
#define SF 0x080ULL
#define OF 0x800ULL

uint64_t diff_undef_flags(int mnemonic, int opsize, unsigned count)
{
	switch (mnemonic) {
	/* AND/OR/XOR/TEST: "The OF and CF flags are cleared; the SF, ZF, and PF
	 * flags are set according to the result. The state of the AF flag is
	 * undefined." */
	case ZYDIS_MNEMONIC_AND:
	case ZYDIS_MNEMONIC_OR:
	case ZYDIS_MNEMONIC_XOR:
	case ZYDIS_MNEMONIC_TEST:
		return AF;
	/* MUL: "The OF and CF flags are set to 0 if the upper half of the result
	 * is 0; otherwise, they are set to 1. The SF, ZF, AF, and PF flags are
	 * undefined." IMUL: "... The SF, ZF, AF, and PF flags are undefined." */
	case ZYDIS_MNEMONIC_MUL:
	case ZYDIS_MNEMONIC_IMUL:
		return SF | ZF | AF | PF;
	/* DIV/IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined." */
	case ZYDIS_MNEMONIC_DIV:
	case ZYDIS_MNEMONIC_IDIV:
		return CF | OF | SF | ZF | AF | PF;
	/* SAL/SAR/SHL/SHR: "The CF flag contains the value of the last bit
	 * shifted out of the destination operand; it is undefined for SHL and
	 * SHR instructions where the count is greater than or equal to the size
	 * (in bits) of the destination operand. The OF flag is affected only for
	 * 1-bit shifts; otherwise, it is undefined. ... If the count is 0, the
	 * flags are not affected. For a non-zero count, the AF flag is
	 * undefined." (count here is the masked count) */
	case ZYDIS_MNEMONIC_SHL:
	case ZYDIS_MNEMONIC_SHR:
	case ZYDIS_MNEMONIC_SAR: {
		uint64_t u = 0;
		if (count == 0)
			return 0;
		u |= AF;
		if (count != 1)
			u |= OF;
		if (mnemonic != ZYDIS_MNEMONIC_SAR && count >= (unsigned)opsize)
			u |= CF;
		return u;
	}
	/* RCL/RCR/ROL/ROR: "The OF flag is defined only for the 1-bit rotates; it
	 * is undefined in all other cases (except RCL and RCR instructions only:
	 * a zero-bit rotate does nothing, that is affects no flags)." The
	 * pseudo-code tests the masked count: "IF (COUNT & COUNTMASK) = 1 THEN
	 * OF <- ... ELSE OF is undefined". */
	case ZYDIS_MNEMONIC_ROL:
	case ZYDIS_MNEMONIC_ROR:
		return count == 1 ? 0 : OF;
	case ZYDIS_MNEMONIC_RCL:
	case ZYDIS_MNEMONIC_RCR:
		return (count == 0 || count == 1) ? 0 : OF;
	/* SHLD/SHRD: "If the count is 1 or greater, the CF flag is filled with
	 * the last bit shifted out ... For a 1-bit shift, the OF flag is set if a
	 * sign change occurred; otherwise, it is cleared. For shifts greater
	 * than 1 bit, the OF flag is undefined. If a shift occurs, the AF flag
	 * is undefined. If the count operand is 0, the flags are not affected.
	 * If the count is greater than the operand size, the flags are
	 * undefined." (the generator never makes count > operand size: the
	 * result is undefined then too) */
	case ZYDIS_MNEMONIC_SHLD:
	case ZYDIS_MNEMONIC_SHRD:
		if (count == 0)
			return 0;
		if (count > (unsigned)opsize)
			return CF | OF | SF | ZF | AF | PF;
		return AF | (count > 1 ? OF : 0);
	/* BT/BTS/BTR/BTC: "The CF flag contains the value of the selected bit
	 * before it is changed. The ZF flag is unaffected. The OF, SF, AF, and PF
	 * flags are undefined." */
	case ZYDIS_MNEMONIC_BT:
	case ZYDIS_MNEMONIC_BTS:
	case ZYDIS_MNEMONIC_BTR:
	case ZYDIS_MNEMONIC_BTC:
		return OF | SF | AF | PF;
	/* BSF/BSR: "The ZF flag is set to 1 if the source operand is 0;
	 * otherwise, the ZF flag is cleared. The CF, OF, SF, AF, and PF flags
	 * are undefined." */
	case ZYDIS_MNEMONIC_BSF:
	case ZYDIS_MNEMONIC_BSR:
		return CF | OF | SF | AF | PF;
	/* LZCNT/TZCNT: "The ZF flag is set to 1 in case of zero output ... CF
	 * flag is set to 1 if input was zero and cleared otherwise. OF, SF, PF
	 * and AF flags are undefined." */
	case ZYDIS_MNEMONIC_LZCNT:
	case ZYDIS_MNEMONIC_TZCNT:
		return OF | SF | PF | AF;
	default:
		/* ADD ADC SUB SBB CMP NEG INC DEC XADD CMPXCHG CMPS SCAS POPCNT
		 * SAHF POPF CMPXCHG8B/16B...: all flags they touch are defined */
		return 0;
	}
}
