#include "vmm/config_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

int config_file_load(struct api *api, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "cannot open: %s", strerror(e));
		return -e;
	}
	char *buf = malloc(CONFIG_FILE_MAX + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	size_t n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
	int rerr = ferror(f);
	fclose(f);
	int ret;
	if (rerr) {
		snprintf(err, errlen, "cannot read it");
		ret = -EIO;
	} else if (n > CONFIG_FILE_MAX) {
		snprintf(err, errlen, "larger than %d bytes", CONFIG_FILE_MAX);
		ret = -EFBIG;
	} else {
		ret = api_apply_config(api, buf, n, err, errlen);
	}
	free(buf);
	return ret;
}
