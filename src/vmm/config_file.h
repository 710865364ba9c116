/* `kite --config-file FILE`: Firecracker's JSON configuration (the
 * sections boot-source, machine-config, drives, network-interfaces,
 * logger, metrics, entropy), applied with the API's own validation. */
#ifndef KITE_VMM_CONFIG_FILE_H
#define KITE_VMM_CONFIG_FILE_H

#include <stddef.h>

struct api;

#define CONFIG_FILE_MAX (1 << 20)

/* 0, or a negative errno with the reason in err. */
int config_file_load(struct api *api, const char *path, char *err, size_t errlen);

#endif
