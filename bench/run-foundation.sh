#!/bin/sh
# Foundation benchmarks (issue 2): (a) exec -> first serial byte / exit for
# the hello guest, (b) one port-I/O exit through kite vs a raw KVM_RUN loop,
# (c) kite's RSS beyond the guest RAM touched. Prints the numbers; record
# them in bench/RESULTS.md. Needs a usable /dev/kvm (engine kvm).
set -eu
cd "$(dirname "$0")/.."
make -j2 build/kite guests >/dev/null
CFLAGS="-std=gnu11 -O2 -g -Wall -Wextra -Werror -Isrc -D_GNU_SOURCE -pthread"
OBJS=$(find build/src -name '*.o' ! -path 'build/src/main.o' | sort)
# shellcheck disable=SC2086
gcc $CFLAGS -o build/exit_bench bench/exit_bench.c $OBJS -lZydis -lm
echo "kite foundation benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs"
echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
KITE=build/kite KITE_GUESTS=build/guests /usr/bin/python3 bench/foundation.py
printf '(b) port-I/O exit, best of 3 x %s: ' "${EXITS:-20000}"
build/exit_bench "${EXITS:-20000}"
