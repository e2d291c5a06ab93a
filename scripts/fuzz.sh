#!/usr/bin/env bash
# A short fuzz run of every cargo-fuzz target of msgsplice-rpc (the record
# reassembler and the request decoder), on the stable toolchain.
#
#   scripts/fuzz.sh [SECONDS]    run each target for SECONDS (default 30)
#
# cargo-fuzz needs nightly-only compiler flags (-Zsanitizer=address and the
# coverage instrumentation of libFuzzer). RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept them, and the stable toolchain ships the AddressSanitizer
# runtime, so no nightly toolchain is needed. cargo-fuzz itself is installed
# from crates.io if missing.
#
# Each target starts from its corpus (crates/msgsplice-rpc/fuzz/corpus/NAME,
# not committed: it grows locally from run to run). A crash fails the script
# and leaves the input in crates/msgsplice-rpc/fuzz/artifacts/NAME/; replay
# it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run NAME fuzz/artifacts/NAME/crash-...
# from crates/msgsplice-rpc.
set -euo pipefail
cd "$(dirname "$0")/../crates/msgsplice-rpc"

seconds=${1:-30}
if ! [[ $seconds =~ ^[0-9]+$ ]] || [[ $seconds -eq 0 ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS]   (a whole number above 0)" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version '^0.13' --quiet
fi

# The fuzz crate is a workspace of its own with its own Cargo.lock. It must
# match what cargo resolves now, or the build would rewrite it and leave
# the clone changed; a stale lock (a dependency of msgsplice or
# msgsplice-rpc changed) is refreshed by the command below, and committed.
if ! cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null 2>&1; then
  echo "crates/msgsplice-rpc/fuzz/Cargo.lock is out of date; refresh and commit it:" >&2
  echo "  cargo update --workspace --manifest-path crates/msgsplice-rpc/fuzz/Cargo.toml" >&2
  exit 1
fi

export RUSTC_BOOTSTRAP=1
# The request decoder's fixture makes a small export in the temp directory;
# this one goes away with the run.
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

targets=$(cargo fuzz list)
echo "== building fuzz targets: $(echo $targets)"
cargo fuzz build >"$TMPDIR/build.log" 2>&1 || {
  tail -n 60 "$TMPDIR/build.log"
  exit 1
}
failed=0
for t in $targets; do
  log="$TMPDIR/$t.log"
  echo "== fuzz $t for ${seconds}s"
  if cargo fuzz run "$t" -- -max_total_time="$seconds" >"$log" 2>&1; then
    grep -E '^Done [0-9]+ runs' "$log" || tail -n 3 "$log"
  else
    tail -n 60 "$log"
    echo "== fuzz $t FAILED: the input is in crates/msgsplice-rpc/fuzz/artifacts/$t/" >&2
    failed=1
  fi
done
exit $failed
