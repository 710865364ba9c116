/* `kite --api-sock PATH` / `kite --config-file FILE`: the API's process
 * life. The main thread polls the API socket, a signalfd and the metrics
 * timer; InstanceStart builds the VM from the accumulated configuration;
 * kite exits when the guest powers off, as Firecracker does. */
#ifndef KITE_API_INSTANCE_H
#define KITE_API_INSTANCE_H

#include <stdbool.h>

#include "vmm/config.h"

struct api_options {
	const char *sock_path;    /* NULL with no_api */
	const char *config_file;  /* NULL: wait for InstanceStart */
	bool no_api;
	const char *id;
	const char *version;
	enum engine_choice engine;
	enum serial_mode serial;
	const char *serial_path;
};

/* Returns kite's exit status (see `kite --help`). */
int api_main(const struct api_options *opts);

#endif
