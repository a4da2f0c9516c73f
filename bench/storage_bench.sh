#!/bin/sh
# Group-commit benchmark of the Raft log storage: 100-byte entries, 1 writer vs 64 concurrent
# writers, each writer with one write outstanding. Prints the raw fsync rate of the same
# filesystem first, for scale.
#
#   bench/storage_bench.sh [path/to/storage_bench] [scratch dir on the disk to measure]
#
# Environment: RUN_SECONDS (default 5) per run, WRITERS (default "1 64").
set -eu
BIN=${1:-build/release/bench/storage_bench}
DIR=${2:-/var/tmp/raftkv-storage-bench}
RUN_SECONDS=${RUN_SECONDS:-5}
WRITERS=${WRITERS:-"1 64"}

[ -x "$BIN" ] || { echo "no benchmark binary at $BIN (cmake --build <dir> --target storage_bench)" >&2; exit 2; }
mkdir -p "$(dirname "$DIR")"

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# filesystem of $(dirname "$DIR"): $(df -T "$(dirname "$DIR")" | awk 'NR==2 {print $2}')"
probe="$DIR.fsync-probe"
out=$(dd if=/dev/zero of="$probe" bs=4k count=200 oflag=dsync 2>&1 | tail -1)
rm -f "$probe"
secs=$(echo "$out" | awk -F', ' '{print $3}' | cut -d' ' -f1)
echo "# raw: 200 x (4 KiB write + fdatasync) took ${secs} s => $(awk -v s="$secs" 'BEGIN {printf "%.0f", 200 / s}') syncs/s"

for w in $WRITERS; do
  "$BIN" --dir "$DIR" --writers "$w" --seconds "$RUN_SECONDS" --entry-bytes 100 2>/dev/null
done
