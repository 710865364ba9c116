/* Case generation: instruction forms and operand values. */
#ifndef KITE_TESTS_DIFF_GEN_H
#define KITE_TESTS_DIFF_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "diff.h"

/* Build the variant list (template x operand size x operand kinds x
 * immediate class x prefix), keeping those the encoder accepts. */
int gen_init(void);
int gen_variant_count(void);
/* Display group of a variant: its mnemonic ("add", "jcc", "string", ...). */
const char *gen_variant_group(int v);
/* Generate case number `n` of variant v from seed; 0, or -1 when the
 * encoder refused this particular operand choice (skip it). */
int gen_case(int v, uint64_t seed, uint64_t n, struct diff_case *c);
/* The instruction form of a generated case, from its decoded bytes:
 * mnemonic, opcode, operand kinds and sizes, prefixes. */
void gen_form_key(const struct diff_case *c, char *key, size_t len);

#endif
