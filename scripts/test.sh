#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds the release and the sanitizer
# (ASan+UBSan) builds, runs every test on the release build and the unit and simulator tests
# again under the sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release
scripts/build.sh asan
status=0
ctest --preset release -j2 || status=1
ctest --preset asan -j2 || status=1
exit $status
