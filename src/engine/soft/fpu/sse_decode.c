/* Zydis decode -> struct sse_form. Runs once per instruction at translation
 * time, so clarity beats speed here; the per-mnemonic tables are constant
 * arrays indexed by ZydisMnemonic. */
#include <errno.h>
#include <string.h>

#include "engine/soft/fpu/fpu.h"

#define M(x) ZYDIS_MNEMONIC_##x

/* Mnemonics whose xmm/m128 (or mm/m64) form maps to one op directly. The
 * same op serves the MMX form unless mmx_op says otherwise. */
static const uint16_t plain_op[ZYDIS_MNEMONIC_MAX_VALUE + 1] = {
#define P(n) [M(n)] = SSE_##n,
	P(ADDPS) P(ADDSS) P(ADDPD) P(ADDSD) P(SUBPS) P(SUBSS) P(SUBPD) P(SUBSD)
	P(MULPS) P(MULSS) P(MULPD) P(MULSD) P(DIVPS) P(DIVSS) P(DIVPD) P(DIVSD)
	P(SQRTPS) P(SQRTSS) P(SQRTPD) P(SQRTSD) P(MINPS) P(MINSS) P(MINPD)
	P(MINSD) P(MAXPS) P(MAXSS) P(MAXPD) P(MAXSD) P(RCPPS) P(RCPSS)
	P(RSQRTPS) P(RSQRTSS)
	P(CMPPS) P(CMPSS) P(CMPPD) P(CMPSD) P(COMISS) P(UCOMISS) P(COMISD) P(UCOMISD)
	P(ANDPS) P(ANDNPS) P(ORPS) P(XORPS) P(ANDPD) P(ANDNPD) P(ORPD) P(XORPD)
	P(SHUFPS) P(SHUFPD) P(UNPCKLPS) P(UNPCKHPS) P(UNPCKLPD) P(UNPCKHPD)
	P(CVTPS2PD) P(CVTPD2PS) P(CVTSS2SD) P(CVTSD2SS) P(CVTDQ2PS)
	P(CVTPS2DQ) P(CVTTPS2DQ) P(CVTDQ2PD) P(CVTPD2DQ) P(CVTTPD2DQ)
	P(CVTPI2PS) P(CVTPS2PI) P(CVTTPS2PI) P(CVTPI2PD) P(CVTPD2PI)
	P(CVTTPD2PI)
	P(MOVHLPS) P(MOVLHPS) P(MOVMSKPS) P(MOVMSKPD) P(PMOVMSKB) P(MOVNTI)
	P(MASKMOVDQU)
	P(PADDB) P(PADDW) P(PADDD) P(PADDQ) P(PSUBB) P(PSUBW) P(PSUBD) P(PSUBQ)
	P(PADDSB) P(PADDSW) P(PADDUSB) P(PADDUSW) P(PSUBSB) P(PSUBSW)
	P(PSUBUSB) P(PSUBUSW) P(PMULLW) P(PMULHW) P(PMULHUW) P(PMULUDQ)
	P(PMADDWD) P(PAVGB) P(PAVGW) P(PSADBW) P(PMINUB) P(PMAXUB) P(PMINSW)
	P(PMAXSW) P(PCMPEQB) P(PCMPEQW) P(PCMPEQD) P(PCMPGTB) P(PCMPGTW)
	P(PCMPGTD) P(PAND) P(PANDN) P(POR) P(PXOR)
	P(PSLLW) P(PSLLD) P(PSLLQ) P(PSRLW) P(PSRLD) P(PSRLQ) P(PSRAW) P(PSRAD)
	P(PSLLDQ) P(PSRLDQ)
	P(PACKSSWB) P(PACKSSDW) P(PACKUSWB) P(PUNPCKLBW) P(PUNPCKLWD)
	P(PUNPCKLDQ) P(PUNPCKLQDQ) P(PUNPCKHBW) P(PUNPCKHWD) P(PUNPCKHDQ)
	P(PUNPCKHQDQ) P(PSHUFD) P(PSHUFHW) P(PSHUFLW) P(PEXTRW) P(PINSRW)
#undef P
	/* one op, other mnemonics */
	[M(MOVAPS)] = SSE_MOV128, [M(MOVUPS)] = SSE_MOV128,
	[M(MOVAPD)] = SSE_MOV128, [M(MOVUPD)] = SSE_MOV128,
	[M(MOVDQA)] = SSE_MOV128, [M(MOVDQU)] = SSE_MOV128,
	[M(MOVNTPS)] = SSE_MOV128, [M(MOVNTPD)] = SSE_MOV128,
	[M(MOVNTDQ)] = SSE_MOV128,
	[M(PSHUFW)] = SSE_PSHUFLW, [M(MASKMOVQ)] = SSE_MASKMOVDQU,
	[M(MOVNTQ)] = SSE_MOVQ_FROM_XMM, [M(MOVQ2DQ)] = SSE_MOVQ_TO_XMM,
	[M(MOVDQ2Q)] = SSE_MOVQ_FROM_XMM,
	/* resolved by form in sse_decode */
	[M(MOVSS)] = SSE_MOVSS_MERGE, [M(MOVSD)] = SSE_MOVSD_MERGE,
	[M(MOVHPS)] = SSE_MOVHPS_LOAD, [M(MOVHPD)] = SSE_MOVHPS_LOAD,
	[M(MOVLPS)] = SSE_MOVLPS_LOAD, [M(MOVLPD)] = SSE_MOVLPS_LOAD,
	[M(MOVD)] = SSE_MOVD_TO_XMM, [M(MOVQ)] = SSE_MOVQ_TO_XMM,
	[M(CVTSI2SS)] = SSE_CVTSI2SS_32, [M(CVTSI2SD)] = SSE_CVTSI2SD_32,
	[M(CVTSS2SI)] = SSE_CVTSS2SI_32, [M(CVTTSS2SI)] = SSE_CVTTSS2SI_32,
	[M(CVTSD2SI)] = SSE_CVTSD2SI_32, [M(CVTTSD2SI)] = SSE_CVTTSD2SI_32,
};

enum sse_op sse_op_for_mnemonic(ZydisMnemonic m)
{
	if ((unsigned)m > ZYDIS_MNEMONIC_MAX_VALUE)
		return SSE_OP_INVALID;
	return (enum sse_op)plain_op[m];
}

static int operand_loc(const struct sse_operand *o, uint8_t *loc,
		       uint8_t *reg, struct sse_form *f)
{
	*reg = o->reg;
	switch (o->kind) {
	case SSE_OPND_MEM:
		*loc = SSE_LOC_MEM;
		*reg = 0;
		f->mem_size = o->size;
		return 0;
	case SSE_OPND_XMM:
		if (o->reg > 15)
			return -EINVAL;
		*loc = SSE_LOC_XMM;
		return 0;
	case SSE_OPND_MMX:
		if (o->reg > 7)
			return -EINVAL;
		*loc = SSE_LOC_MMX;
		f->flags |= SSE_F_MMX;
		return 0;
	case SSE_OPND_GPR:
		if (o->reg > 15 || (o->size != 4 && o->size != 8))
			return -EINVAL;
		*loc = SSE_LOC_GPR;
		f->gpr_size = o->size;
		return 0;
	default:
		return -EINVAL;
	}
}

static bool is_shift(enum sse_op op)
{
	return op >= SSE_PSLLW && op <= SSE_PSRAD;
}

int sse_decode(const ZydisDecodedInstruction *insn,
	       const ZydisDecodedOperand *ops, struct sse_form *out)
{
	memset(out, 0, sizeof(*out));
	if (insn->encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY)
		return -ENOENT;
	unsigned n = insn->operand_count_visible;
	if (n < 2 || n > 3) /* MOVSD string form has no visible operands */
		return -ENOENT;
	struct sse_operand o[3];
	uint64_t imm = 0;
	memset(o, 0, sizeof(o));
	for (unsigned i = 0; i < n; i++) {
		const ZydisDecodedOperand *z = &ops[i];
		o[i].size = (uint8_t)(z->size / 8);
		if (z->type == ZYDIS_OPERAND_TYPE_MEMORY) {
			o[i].kind = SSE_OPND_MEM;
		} else if (z->type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
			o[i].kind = SSE_OPND_IMM;
			imm = z->imm.value.u;
		} else if (z->type == ZYDIS_OPERAND_TYPE_REGISTER) {
			ZyanI8 id = ZydisRegisterGetId(z->reg.value);
			if (id < 0)
				return -EINVAL;
			o[i].reg = (uint8_t)id;
			switch (ZydisRegisterGetClass(z->reg.value)) {
			case ZYDIS_REGCLASS_XMM: o[i].kind = SSE_OPND_XMM; break;
			case ZYDIS_REGCLASS_MMX: o[i].kind = SSE_OPND_MMX; break;
			case ZYDIS_REGCLASS_GPR32: o[i].kind = SSE_OPND_GPR; o[i].size = 4; break;
			case ZYDIS_REGCLASS_GPR64: o[i].kind = SSE_OPND_GPR; o[i].size = 8; break;
			default: return -EINVAL;
			}
		} else {
			return -EINVAL;
		}
	}
	return sse_decode_ops(insn->mnemonic, n, o, imm, out);
}

int sse_decode_ops(unsigned mnemonic, unsigned n, const struct sse_operand *ops,
		   uint64_t imm, struct sse_form *out)
{
	memset(out, 0, sizeof(*out));
	enum sse_op op = mnemonic <= ZYDIS_MNEMONIC_MAX_VALUE
				 ? sse_op_for_mnemonic((ZydisMnemonic)mnemonic) : SSE_OP_INVALID;
	if (op == SSE_OP_INVALID)
		return -ENOENT;
	if (n < 2 || n > 3)
		return -ENOENT;
	int r = operand_loc(&ops[0], &out->dst_loc, &out->dst_reg, out);
	if (r)
		return r;
	if (ops[1].kind == SSE_OPND_IMM) {
		/* PSxx xmm/mm, imm8 and PSLLDQ/PSRLDQ: src none */
		out->src_loc = SSE_LOC_NONE;
		out->has_imm = true;
		out->imm8 = (uint8_t)imm;
		if (is_shift(op))
			op = (enum sse_op)(op - SSE_PSLLW + SSE_PSLLW_IMM);
		else if (op != SSE_PSLLDQ && op != SSE_PSRLDQ)
			return -EINVAL;
	} else {
		if (op == SSE_PSLLDQ || op == SSE_PSRLDQ)
			return -EINVAL;
		r = operand_loc(&ops[1], &out->src_loc, &out->src_reg, out);
		if (r)
			return r;
		if (n == 3) {
			if (ops[2].kind != SSE_OPND_IMM)
				return -EINVAL;
			out->has_imm = true;
			out->imm8 = (uint8_t)imm;
		}
	}
	bool mmx = out->flags & SSE_F_MMX;
	bool dmem = out->dst_loc == SSE_LOC_MEM, smem = out->src_loc == SSE_LOC_MEM;
	bool d64 = out->dst_loc == SSE_LOC_GPR && out->gpr_size == 8;
	bool s64 = (out->src_loc == SSE_LOC_GPR && out->gpr_size == 8) ||
		   (smem && out->mem_size == 8);

	switch (mnemonic) {
	case M(MOVSS):
		op = smem ? SSE_MOVSS_LOAD : dmem ? SSE_MOVSS_STORE : SSE_MOVSS_MERGE;
		break;
	case M(MOVSD):
		op = smem ? SSE_MOVSD_LOAD : dmem ? SSE_MOVSD_STORE : SSE_MOVSD_MERGE;
		break;
	case M(MOVHPS):
	case M(MOVHPD):
		op = dmem ? SSE_MOVHPS_STORE : SSE_MOVHPS_LOAD;
		break;
	case M(MOVLPS):
	case M(MOVLPD):
		op = dmem ? SSE_MOVLPS_STORE : SSE_MOVLPS_LOAD;
		break;
	case M(MOVD):
		op = (out->dst_loc == SSE_LOC_XMM || out->dst_loc == SSE_LOC_MMX)
			     ? SSE_MOVD_TO_XMM : SSE_MOVD_FROM_XMM;
		break;
	case M(MOVQ):
		/* Into a register (xmm or mm, from anything): zero-extend the
		 * 64-bit value. Into a GPR or memory: the low quadword. */
		op = (out->dst_loc == SSE_LOC_XMM || out->dst_loc == SSE_LOC_MMX)
			     ? SSE_MOVQ_TO_XMM : SSE_MOVQ_FROM_XMM;
		break;
	case M(CVTSI2SS):
		op = s64 ? SSE_CVTSI2SS_64 : SSE_CVTSI2SS_32;
		break;
	case M(CVTSI2SD):
		op = s64 ? SSE_CVTSI2SD_64 : SSE_CVTSI2SD_32;
		break;
	case M(CVTSS2SI):
		op = d64 ? SSE_CVTSS2SI_64 : SSE_CVTSS2SI_32;
		break;
	case M(CVTTSS2SI):
		op = d64 ? SSE_CVTTSS2SI_64 : SSE_CVTTSS2SI_32;
		break;
	case M(CVTSD2SI):
		op = d64 ? SSE_CVTSD2SI_64 : SSE_CVTSD2SI_32;
		break;
	case M(CVTTSD2SI):
		op = d64 ? SSE_CVTTSD2SI_64 : SSE_CVTTSD2SI_32;
		break;
	case M(PEXTRW):
		if (out->dst_loc != SSE_LOC_GPR) /* SSE4.1 memory form */
			return -ENOENT;
		break;
	default:
		break;
	}
	if (mmx) {
		switch (op) {
		case SSE_PACKSSWB: op = SSE_PACKSSWB_MMX; break;
		case SSE_PACKSSDW: op = SSE_PACKSSDW_MMX; break;
		case SSE_PACKUSWB: op = SSE_PACKUSWB_MMX; break;
		case SSE_PUNPCKHBW: op = SSE_PUNPCKHBW_MMX; break;
		case SSE_PUNPCKHWD: op = SSE_PUNPCKHWD_MMX; break;
		case SSE_PUNPCKHDQ: op = SSE_PUNPCKHDQ_MMX; break;
		case SSE_PEXTRW: op = SSE_PEXTRW_MMX; break;
		case SSE_PINSRW: op = SSE_PINSRW_MMX; break;
		default: break;
		}
	}
	out->op = (uint16_t)op;

	if (out->dst_loc == SSE_LOC_XMM || out->dst_loc == SSE_LOC_MMX)
		out->flags |= SSE_F_DST_READ;
	switch (op) {
	case SSE_COMISS: case SSE_UCOMISS: case SSE_COMISD: case SSE_UCOMISD:
		out->flags |= SSE_F_RFLAGS;
		break;
	case SSE_MASKMOVDQU:
		out->flags |= SSE_F_MASKMOV;
		break;
	default:
		out->flags |= SSE_F_DST_WRITE;
		break;
	}
	if (sse_op_raises(op))
		out->flags |= SSE_F_MXCSR;
	if ((dmem || smem) && out->mem_size == 16) {
		switch (mnemonic) {
		case M(MOVUPS): case M(MOVUPD): case M(MOVDQU):
			break;
		default:
			out->flags |= SSE_F_ALIGN16;
			break;
		}
	}
	return 0;
}
