#include <errno.h>

#include "engine/engine.h"
#include "util/log.h"
#include "vmm/config.h"

static int take(const struct engine_ops *ops, const struct engine_ops **out)
{
	char why[256] = "";
	int ret = ops->probe(why, sizeof(why));
	if (ret) {
		kite_err("%s engine unavailable: %s", ops->name, why);
		return ret;
	}
	*out = ops;
	return 0;
}

int engine_select(const struct vm_config *cfg, const struct engine_ops **out)
{
	switch (cfg->engine) {
	case ENGINE_KVM:
		return take(&kvm_engine, out);
	case ENGINE_SOFT:
		return take(&soft_engine, out);
	case ENGINE_AUTO:
		break;
	}
	char why[256] = "";
	if (kvm_engine.probe(why, sizeof(why)) == 0) {
		*out = &kvm_engine;
		return 0;
	}
	kite_info("kvm unusable (%s); using the soft engine", why);
	return take(&soft_engine, out);
}
