#include <criterion/criterion.h>
#include <errno.h>

#include "util/size.h"

static uint64_t parse_ok(const char *s)
{
	uint64_t v = 0;
	cr_assert_eq(parse_size_mib_default(s, &v), 0, "parsing '%s'", s);
	return v;
}

Test(size, suffixes)
{
	cr_assert_eq(parse_ok("256M"), 256ULL << 20);
	cr_assert_eq(parse_ok("1G"), 1ULL << 30);
	cr_assert_eq(parse_ok("1g"), 1ULL << 30);
	cr_assert_eq(parse_ok("512K"), 512ULL << 10);
	cr_assert_eq(parse_ok("4096B"), 4096);
	cr_assert_eq(parse_ok("2GiB"), 2ULL << 30);
	cr_assert_eq(parse_ok("3MB"), 3ULL << 20);
}

Test(size, plain_number_is_mib)
{
	cr_assert_eq(parse_ok("512"), 512ULL << 20);
	cr_assert_eq(parse_ok("0"), 0);
}

Test(size, rejects_garbage)
{
	uint64_t v;
	const char *bad[] = { "", "M", "-1", "12X", "1.5G", "256MM", "1 G", " 1G", "0x10", "1Gx" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(parse_size_mib_default(bad[i], &v), -EINVAL, "'%s' accepted", bad[i]);
	cr_assert_eq(parse_size_mib_default(NULL, &v), -EINVAL);
}

Test(size, rejects_overflow)
{
	uint64_t v;
	cr_assert_eq(parse_size_mib_default("17179869184G", &v), -ERANGE);
	cr_assert_eq(parse_size_mib_default("99999999999999999999999", &v), -ERANGE);
	cr_assert_eq(parse_size_mib_default("17592186044415", &v), 0); /* 2^44-1 MiB fits */
}
