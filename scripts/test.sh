#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine (run as root so that the
# packages the tests need can be installed, and so that the network-namespace
# tests can run).
#
#   scripts/test.sh            install what is missing, check style, fuzz briefly,
#                              run every test (all features), the quick mutation
#                              check and the allocator's loom model
#
# Ends with "summary: N passed, M failed, K skipped" (K: tests that could
# not run, each listed with its reason above the summary) and exits non-zero
# if a step or a test failed. Leaves the clone and the machine as it found
# them (no files, no network namespaces).
#
# Environment: MSGSPLICE_SKIP_APT=1 skips the apt-get step; CI=true (as
# root) makes every skipped test a failure.
set -uo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use:
#   iproute2      ip netns / veth / tc: the test kit's hosts (lifetime tests)
#   perl          scripts/mutants.sh applies its mutants with it
#   libnfs-utils  nfs-ls, nfs-cat, nfs-cp: a real NFS client for the export
#   rpcbind       rpcinfo, and the rpcbind daemon the portmapper tests start
#   nfs-common    showmount, to list the exports as any NFS server's
#   iperf3        the TCP reference peer of the benchmark
#   nfs-ganesha nfs-ganesha-vfs  the benchmark's third NFS server (its
#                 tests start it, with rpcbind, for a fraction of a second)
#   openssl       a TLS client no one here wrote
packages=(iproute2 libnfs-utils rpcbind nfs-common iperf3 nfs-ganesha nfs-ganesha-vfs openssl perl)
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

# Every step runs even when one fails, so that one run shows everything;
# the script fails at the end if any step or test failed.
failed_steps=()
step() {
  local name=$1
  shift
  echo "== $name"
  "$@" || failed_steps+=("$name")
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Tests that cannot run append a line here (msgsplice-testkit's skip).
export MSGSPLICE_SKIP_LOG=$work/skips
: >"$MSGSPLICE_SKIP_LOG"

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets --all-features --locked --quiet -- -D warnings
step "fuzz: every rpc target for 30 s (cargo-fuzz on stable via RUSTC_BOOTSTRAP)" scripts/fuzz.sh 30
echo "== cargo test"
cargo test --workspace --all-features --no-fail-fast --locked 2>&1 | tee "$work/test.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || failed_steps+=("cargo test")
# The mutation check of the page lifetime rules, quick subset (about 40 s
# here; the full set, about 2.5 min, is scripts/mutants.sh).
step "mutants (quick)" scripts/mutants.sh --quick
echo "== loom model of the allocator"
scripts/loom.sh 2>&1 | tee "$work/loom.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || failed_steps+=("loom model")
cat "$work/loom.log" >>"$work/test.log"

# Test hosts are removed even when a test panics; any left is a bug.
if command -v ip >/dev/null && ip netns list 2>/dev/null | grep -q '^mst'; then
  echo "== network namespaces left behind:" >&2
  ip netns list | grep '^mst' >&2
  failed_steps+=("namespaces left behind")
fi

# Sum cargo test's "test result:" lines.
read -r passed failed < <(
  sed -nE 's/.*test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed;.*/\1 \2/p' "$work/test.log" |
    awk '{p += $1; f += $2} END {print p + 0, f + 0}'
)
skipped=$(wc -l <"$MSGSPLICE_SKIP_LOG")
echo
if [[ $skipped -gt 0 ]]; then
  echo "skipped tests and why:"
  sed 's/^/  /' "$MSGSPLICE_SKIP_LOG"
fi
for s in "${failed_steps[@]}"; do
  echo "failed step: $s"
done
echo "summary: $passed passed, $failed failed, $skipped skipped"
[[ ${#failed_steps[@]} -eq 0 && $failed -eq 0 ]]
