#!/bin/bash
# Checks that no source file includes across a forbidden edge of the layer graph:
#
#   base  <-  kv, raft (pure: standard library only)  <-  raft/storage (LMDB, threads)
#         <-  net (Asio, Beast, JSON)  <-  app (wiring, main)
#
# CMake already keeps the link graph one-way (each library links only the layers below it),
# but every library adds the project root to the include path, so a header of a higher
# layer can be included by a lower one and compile as long as it is header-only or its
# symbols happen to be linked in. This check closes that gap at the level of #include lines.
#
# Rules (a path is the include's target, "..." or <...> alike):
#   base/          includes no other project folder and no Boost, LMDB, toml++ or CLI11
#   kv/            includes no raft/, net/, app/, and no Asio, Beast or LMDB
#   raft/ (core)   includes no kv/, net/, app/, raft/storage/, and no Asio, Beast or LMDB
#   raft/storage/  includes no kv/, net/, app/, and no Asio or Beast
#   net/           includes no app/
#   net/ protocol  the files of raftkv_net_protocol (listed in net/CMakeLists.txt; a .cc there
#                  covers its .h too) include no Asio or Beast, and from net/ only each other
#   every layer    includes nothing from test/ or bench/ and no "../" path
#
# Usage:
#   check_layers.sh [ROOT]        check the tree at ROOT (default: the parent of this folder);
#                                 prints one line per violation, exits 1 if there is any
#   check_layers.sh --self-test [ROOT]
#                                 copies the sources of ROOT to a temporary folder, expects
#                                 the copy to pass, then adds one bad include per rule and
#                                 expects each to be caught (so the check itself can fail)
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The pure protocol files of net/ (the sources of raftkv_net_protocol), one per line without
# suffix: net/memcached/parser, net/text_words, ...
check_protocol_stems() {
  sed -n '/set(RAFTKV_NET_PROTOCOL_SOURCES/,/)/p' "$1/net/CMakeLists.txt" 2>/dev/null |
    grep -oE '[A-Za-z0-9_/]+\.cc' | sed -E 's/\.cc$//; s|^/||; s|^|net/|'
}

# Checks the tree at $1; prints violations as "path:line: #include <target>: reason".
# One awk pass over every file keeps the check (and its self-test) quick.
check_tree() {
  local root=$1 protocol
  protocol=$(check_protocol_stems "$root" | tr '\n' ' ')
  (cd "$root" && find base kv raft net app -type f \
     \( -name '*.h' -o -name '*.hpp' -o -name '*.cc' -o -name '*.cpp' -o -name '*.ipp' \) \
     -print0 2>/dev/null | sort -z | xargs -0 -r awk -v protocol_list="$protocol" '
    BEGIN { n_protocol = split(protocol_list, stems, " "); for (i in stems) is_protocol[stems[i]] = 1 }
    function stem(path) { sub(/\.(h|hpp|cc|cpp|ipp)$/, "", path); return path }
    function layer_of(path) {
      if (path ~ /^base\//) return "base"
      if (path ~ /^kv\//) return "kv"
      if (path ~ /^raft\/storage\//) return "storage"
      if (path ~ /^raft\//) return "raft"
      if (path ~ /^net\//) return "net"
      if (path ~ /^app\//) return "app"
      return ""
    }
    # Why `layer` may not include `t`, or "" if it may.
    function forbidden(layer, t) {
      if (t ~ /(^|\/)\.\.\//) return "relative path with \"..\": include from the project root"
      if (t ~ /^(test|bench)\//) return "product code includes nothing from test/ or bench/"
      if (layer == "base") {
        if (t ~ /^(kv|raft|net|app)\//) return "base/ includes nothing of the project but base/"
        if (t ~ /^(boost\/|lmdb\.h$|toml\+\+\/|CLI\/)/) return "base/ uses the standard library only"
      } else if (layer == "kv") {
        if (t ~ /^raft\//) return "kv/ does not include raft/ (kv and raft are independent pure layers)"
        if (t ~ /^(net|app)\//) return "kv/ does not include the layers above it"
        if (t ~ /^(boost\/asio|boost\/beast|lmdb\.h$)/) return "kv/ is pure: no Asio, Beast or LMDB"
      } else if (layer == "raft") {
        if (t ~ /^kv\//) return "raft/ does not include kv/ (it sees the state machine through an interface)"
        if (t ~ /^raft\/storage\//) return "the raft core does not include raft/storage/ (the layer above it)"
        if (t ~ /^(net|app)\//) return "raft/ does not include the layers above it"
        if (t ~ /^(boost\/asio|boost\/beast|lmdb\.h$)/) return "raft/ is pure: no Asio, Beast or LMDB"
      } else if (layer == "storage") {
        if (t ~ /^kv\//) return "raft/storage/ never includes kv/"
        if (t ~ /^(net|app)\//) return "raft/storage/ does not include the layers above it"
        if (t ~ /^(boost\/asio|boost\/beast)/) return "raft/storage/ uses LMDB and threads, no Asio or Beast"
      } else if (layer == "net") {
        if (t ~ /^app\//) return "net/ never includes app/"
        if (stem(FILENAME) in is_protocol) {
          if (t ~ /^(boost\/asio|boost\/beast)/)
            return "net protocol code (raftkv_net_protocol) is pure: no Asio or Beast"
          if (t ~ /^net\// && !(stem(t) in is_protocol))
            return "net protocol code (raftkv_net_protocol) includes only protocol headers of net/"
        }
      }
      return ""
    }
    /^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]/ {
      t = $0
      sub(/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]/, "", t)
      sub(/[>"].*$/, "", t)
      reason = forbidden(layer_of(FILENAME), t)
      if (reason != "") {
        printf "%s:%d: #include %s: %s\n", FILENAME, FNR, t, reason
        n++
      }
    }
    FNR == 1 { files++ }
    END {
      if (n == 0) printf "check_layers: %d files, no include crosses a layer edge\n", files
      exit n > 0
    }')
  local rc=$?
  # An empty or missing tree must not pass by default.
  if [ $rc -eq 0 ] && [ ! -f "$root/kv/store.h" ]; then
    echo "check_layers: $root does not look like the project root (no kv/store.h)" >&2
    rc=1
  fi
  if [ $rc -ne 0 ]; then
    echo "check_layers: an include crosses a forbidden layer edge (or the check failed)" >&2
  fi
  return $rc
}

# Runs the check on a copy with one bad include added to the first header of `layer_dir` (or
# to `layer_dir` itself if it is a file); the check must fail and name that include.
expect_caught() {
  local copy=$1 layer_dir=$2 include=$3 victim out
  if [ -f "$copy/$layer_dir" ]; then
    victim=$copy/$layer_dir  # a file named directly
  else
    victim=$(find "$copy/$layer_dir" -maxdepth 1 -type f -name '*.h' | sort | head -n 1)
  fi
  if [ -z "$victim" ]; then
    echo "self-test: no header in $layer_dir to plant a bad include in" >&2
    return 1
  fi
  cp "$victim" "$victim.orig"
  printf '#include %s\n' "$include" >> "$victim"
  local rc=0 target=${include:1:${#include}-2}
  out=$(check_tree "$copy" 2>&1) || rc=$?
  mv "$victim.orig" "$victim"
  if [ $rc -eq 0 ] || ! grep -qF "#include $target:" <<<"$out"; then
    echo "self-test: $layer_dir including $include was NOT caught" >&2
    return 1
  fi
  echo "self-test: caught $layer_dir -> $include"
}

self_test() {
  local root=$1 failures=0
  copy=$(mktemp -d)  # global: the EXIT trap removes it
  trap 'rm -rf "$copy"' EXIT
  (cd "$root" && find base kv raft net app -type f \( -name '*.h' -o -name '*.cc' \) -print0 |
     xargs -0 cp --parents -t "$copy" && cp --parents net/CMakeLists.txt "$copy")
  if ! check_tree "$copy"; then
    echo "self-test: the unmodified copy must pass" >&2
    return 1
  fi
  echo "self-test: the unmodified copy passes"
  # One planted include per forbidden edge; each must be caught.
  local cases=(
    'base|"kv/store.h"' 'base|"raft/types.h"' 'base|"net/service.h"' 'base|<boost/asio/io_context.hpp>'
    'kv|"raft/types.h"' 'kv|"net/service.h"' 'kv|"app/config.h"' 'kv|<boost/asio/io_context.hpp>'
    'kv|<boost/beast/http.hpp>' 'kv|<lmdb.h>'
    'raft|"kv/store.h"' 'raft|"raft/storage/lmdb_store.h"' 'raft|"net/service.h"' 'raft|"app/node.h"'
    'raft|<boost/asio/io_context.hpp>' 'raft|<boost/beast/core.hpp>' 'raft|<lmdb.h>'
    'raft/storage|"kv/store.h"' 'raft/storage|"net/peer/transport.h"' 'raft/storage|"app/node.h"'
    'raft/storage|<boost/asio/io_context.hpp>'
    'net|"app/node.h"' 'net|"test/support/local_service.h"' 'net|"../app/node.h"'
  )
  # Protocol files live in net/'s subfolders too: plant into the first one's header.
  local first_protocol
  first_protocol=$(check_protocol_stems "$copy" | head -n 1)
  if [ -z "$first_protocol" ]; then
    echo "self-test: no protocol sources found in net/CMakeLists.txt" >&2
    failures=$((failures + 1))
  else
    cases+=("$first_protocol.h|<boost/asio/io_context.hpp>" "$first_protocol.h|\"net/service.h\"")
  fi
  local entry
  for entry in "${cases[@]}"; do
    expect_caught "$copy" "${entry%%|*}" "${entry#*|}" || failures=$((failures + 1))
  done
  # Spacing variants of the directive are still include lines.
  local victim
  victim=$(find "$copy/kv" -maxdepth 1 -name '*.h' | sort | head -n 1)
  printf '  #  include   "net/service.h"\n' >> "$victim"
  if check_tree "$copy" >/dev/null 2>&1; then
    echo "self-test: '  #  include   \"net/service.h\"' in kv/ was NOT caught" >&2
    failures=$((failures + 1))
  else
    echo "self-test: caught an indented '#  include' in kv/"
  fi
  if [ $failures -ne 0 ]; then
    echo "self-test: $failures planted violation(s) not caught" >&2
    return 1
  fi
  echo "self-test: every planted violation was caught"
}

if [ "${1:-}" = "--self-test" ]; then
  self_test "$(cd "${2:-$here/..}" && pwd)"
  exit $?
fi
check_tree "$(cd "${1:-$here/..}" && pwd)"
