/* Resolve --engine: kvm and soft are taken as asked (failing with the
 * probe's reason); auto prefers kvm unless the probe or a short calibration
 * run shows guest CPL0 code would run emulated, then picks soft and says so
 * in one line. Returns 0 or a negative errno, having told the user why. */
#include <errno.h>

#include "engine/engine.h"
#include "engine/kvm/kvm.h"
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
	if (kvm_engine.probe(why, sizeof(why)) != 0) {
		kite_warn("kvm unusable (%s); using the soft engine", why);
		return take(&soft_engine, out);
	}
	/* KVM is there; is it hardware? A software KVM (nested, e.g. kvm_pvm)
	 * emulates guest kernel code at a few MIPS, which the soft engine
	 * beats by far. */
	struct kvm_calibration cal;
	int ret = kvm_calibrate(&cal, why, sizeof(why));
	if (ret) {
		kite_warn("%s; using the soft engine", why);
		return take(&soft_engine, out);
	}
	kite_debug("kvm calibration: %llu CPL0 instructions in %llu ns (base %llu ns): %.0f MIPS",
		   (unsigned long long)cal.insns, (unsigned long long)cal.loop_ns,
		   (unsigned long long)cal.base_ns, cal.mips);
	if (cal.mips < KVM_NATIVE_MIN_MIPS) {
		kite_warn("kvm runs guest kernel code emulated here (%.1f MIPS); using the soft engine",
			  cal.mips);
		return take(&soft_engine, out);
	}
	*out = &kvm_engine;
	return 0;
}
