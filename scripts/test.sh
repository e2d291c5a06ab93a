#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine (run as root so that the
# packages the tests need can be installed, and so that the network-namespace
# tests can run).
#
#   scripts/test.sh            install what is missing, check style, fuzz briefly, run every test
#
# Environment: MSGSPLICE_SKIP_APT=1 skips the apt-get step.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use:
#   iproute2      ip netns / veth / tc for the zero-copy lifetime tests
#   libnfs-utils  nfs-ls, nfs-cat, nfs-cp: a real NFS client for the export
#   rpcbind       rpcinfo, and the rpcbind daemon the portmapper tests start
#   nfs-common    showmount, to list the exports as any NFS server's
#   iperf3        the TCP reference peer of the benchmark
#   openssl       a TLS client no one here wrote
packages=(iproute2 libnfs-utils rpcbind nfs-common iperf3 openssl)
need=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if [[ ${#need[@]} -gt 0 && -z "${MSGSPLICE_SKIP_APT:-}" ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Install without starting services: a system rpcbind left running
    # would hold port 111, and the portmapper tests want to start (and
    # stop) their own.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod +x "$policy"
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "== missing packages (${need[*]}); run as root on Debian to install them" >&2
  fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== fuzz: every rpc target for 30 s (cargo-fuzz on stable via RUSTC_BOOTSTRAP)"
scripts/fuzz.sh 30
echo "== cargo test"
cargo test --workspace --no-fail-fast 2>&1
