#!/usr/bin/env bash
# Installs the Debian 12 packages raftkv needs to build, test and benchmark, skipping the
# network entirely when everything is already there. Run as root.
set -euo pipefail

packages=(
  # build
  g++ cmake ninja-build pkg-config ccache
  libboost1.81-all-dev libboost-json1.81-dev libtomlplusplus-dev liblmdb-dev libcli11-dev
  libssl-dev openssl libgoogle-perftools-dev
  # tests: a reference memcached, a real memcached client, curl, a browser for the status page
  python3 python3-pymemcache memcached curl chromium fonts-liberation
  # partition tests: network namespaces, veth, netem (iproute2) and cuts (iptables)
  iproute2 iptables
  # fault tests: skewed wall clocks for one node (libfaketime)
  faketime
  # the README examples
  netcat-openbsd
  # benchmarks
  libmemcached-tools wrk
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "raftkv: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
