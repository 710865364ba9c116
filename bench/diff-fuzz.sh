#!/bin/sh
# Longer differential pass of the soft CPU against the host CPU (tests/diff).
#   bench/diff-fuzz.sh [SEED] [extra diff-test args, e.g. --filter add]
# Each run uses a new seed unless one is given; the seed is printed first so
# a mismatch can be replayed with `build/diff-test --long --seed SEED`.
set -eu
cd "$(dirname "$0")/.."
seed=${1:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
[ $# -gt 0 ] && shift
make -s -j2 build/diff-test
echo "diff-fuzz: seed $seed"
exec build/diff-test --long --seed "$seed" --show 5 "$@"
