#!/usr/bin/env bash
# The loom model of the page-fragment allocator's folio protocol
# (crates/msgsplice/src/frag/loom_model.rs): the allocator's own code, with
# its atomics swapped for loom's, under every interleaving loom explores.
#
# Builds into target/loom so the normal build is not invalidated. The cfg
# is the crate's own (msgsplice_loom), not `loom`, so that dependencies
# with a loom mode of their own (tokio) build as usual. A debug build:
# quicker to build than to run slower. The preemption bound
# (LOOM_MAX_PREEMPTIONS, default 3) keeps the run to seconds once built;
# raise it for a deeper search.
# Extra arguments go to the test harness (a test name, --nocapture).
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export RUSTFLAGS="--cfg msgsplice_loom ${RUSTFLAGS:-}"
exec cargo test -p msgsplice --target-dir target/loom --lib frag::loom_model -- "$@"
