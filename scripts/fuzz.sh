#!/usr/bin/env bash
# Long fuzzing runs (not part of ctest, whose fuzz tests run 20,000 seeded mutations each):
# installs clang if missing, builds every test/fuzz target as a libFuzzer binary with ASan and
# UBSan in build/fuzz, and runs each for SECONDS (default 600). The corpus grows in
# build/fuzz/corpus/<target> and is reused by the next run; an input that crashes a target is
# kept as build/fuzz/crashes/<target>-crash-<sha1>, and the script then exits 1.
#
#   scripts/fuzz.sh            # every target, 600 s each
#   scripts/fuzz.sh 3600       # an hour each
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [seconds per target]" >&2; exit 2; }

if ! command -v clang++ >/dev/null; then
  echo "raftkv: installing clang" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends clang >/dev/null
fi
scripts/install-deps.sh

CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRAFTKV_FUZZ=ON -DRAFTKV_BENCH=OFF >/dev/null
targets=()
for source in test/fuzz/fuzz_*.cc; do
  name=$(basename "$source" .cc)
  [[ $name == fuzz_main ]] || targets+=("$name")
done
cmake --build build/fuzz --target "${targets[@]}"

mkdir -p build/fuzz/crashes
status=0
for name in "${targets[@]}"; do
  mkdir -p "build/fuzz/corpus/$name"
  echo "raftkv: fuzzing $name for $seconds s" >&2
  if ! "build/fuzz/test/$name" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="build/fuzz/crashes/$name-" "build/fuzz/corpus/$name"; then
    echo "raftkv: $name found an input that fails; see build/fuzz/crashes/" >&2
    status=1
  fi
done
exit $status
