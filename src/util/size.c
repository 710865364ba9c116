#include "util/size.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

int parse_size_mib_default(const char *text, uint64_t *bytes)
{
	if (!text || !isdigit((unsigned char)text[0]))
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	unsigned shift;
	switch (toupper((unsigned char)*end)) {
	case '\0': shift = 20; break;
	case 'B': shift = 0; break;
	case 'K': shift = 10; break;
	case 'M': shift = 20; break;
	case 'G': shift = 30; break;
	case 'T': shift = 40; break;
	default: return -EINVAL;
	}
	if (*end) {
		end++;
		/* Accept an optional "iB"/"B" after K/M/G/T: "256MiB", "1GB". */
		if (shift && (end[0] == 'i' || end[0] == 'I') && toupper((unsigned char)end[1]) == 'B')
			end += 2;
		else if (shift && toupper((unsigned char)end[0]) == 'B')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (shift && n > (UINT64_MAX >> shift))
		return -ERANGE;
	*bytes = (uint64_t)n << shift;
	return 0;
}
