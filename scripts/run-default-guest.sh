#!/bin/sh
# Build (or reuse) the default guest and boot it on kite with a shell on the
# serial console. Extra arguments go to `kite run` (e.g. --cpus 2).
# Type `poweroff` in the guest, or Ctrl-A x, to end it.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
paths=$(sh "$top/scripts/build-guest.sh")
kernel=$(echo "$paths" | tail -n2 | head -n1)
initrd=$(echo "$paths" | tail -n1)
[ -x "$top/build/kite" ] || make -C "$top" -j"$(nproc)" >/dev/null
exec "$top/build/kite" run --engine auto --memory 512M --kernel "$kernel" --initrd "$initrd" \
	--cmdline "console=ttyS0 panic=-1" "$@"
