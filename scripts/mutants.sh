#!/usr/bin/env bash
# Mutation check of the rules that keep spliced pages alive: each mutant
# breaks one rule of holding, completing or retiring buffers, and the
# lifetime tests (TCP and UDP between two network-namespace hosts) must
# fail on it. A mutant they pass is MISSED: the tests could not see that bug.
#
#   scripts/mutants.sh           every mutant
#   scripts/mutants.sh --quick   a subset for CI (one per rule)
#
# Needs root (the tests build network namespaces; without root they skip,
# and a skipped run counts as MISSED). Each mutant is applied to a clean
# copy of its file, which is restored afterwards, also on Ctrl-C or error.
# Exit status: 0 if every mutant was caught, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=
case "${1:-}" in
--quick) quick=1 ;;
"") ;;
*) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac

completion=crates/msgsplice/src/send/completion.rs
folio=crates/msgsplice/src/frag/folio.rs

# name | flags | file | text to find (once) | replacement. "\n" is a newline.
# Flags: q = in the --quick subset; u = also run the unit tests of the
# completion bookkeeping, for a bug that only out-of-order completions
# expose (a test link reports them in order, so the lifetime tests alone
# cannot see it).
mutants=(
  "hold-drops-at-once|q|$completion|        self.held.push_back(h);\n        self.uncommitted += 1;|        drop(h);"
  "complete-releases-one-too-many|q|$completion|self.held.drain(..s.nheld);|self.held.drain(..(s.nheld + 1).min(self.held.len()));"
  "complete-releases-one-too-few||$completion|self.held.drain(..s.nheld);|self.held.drain(..s.nheld.saturating_sub(1));"
  "range-end-one-past||$completion|let count = u64::from(hi.wrapping_sub(lo)) + 1;|let count = u64::from(hi.wrapping_sub(lo)) + 2;"
  "range-end-one-short||$completion|let count = u64::from(hi.wrapping_sub(lo)) + 1;|let count = u64::from(hi.wrapping_sub(lo));"
  "release-before-the-front-completes|u|$completion|while self.slots.front().is_some_and(\|s\| s.done) {|while self.slots.iter().any(\|s\| s.done) {"
  "abandon-recycles-instead-of-retiring|q|$completion|                        f.retire();|                        drop(f);"
  "abandon-retires-only-completed||$completion|                if s.done {\n                    continue;|                if !s.done {\n                    continue;"
  "retire-mark-lost||$folio|            .store(true, Ordering::Release);|            .store(false, Ordering::Release);"
)

backup=$(mktemp -d)
current=
restore() {
  if [[ -n $current ]]; then
    cp "$backup/orig" "$current"
    current=
  fi
}
# A mutant that a property test catches makes proptest save the failing
# case beside the crate; those files describe mutants, not the code, so
# they go with the run (unless the directory was there before).
regressions=crates/msgsplice/proptest-regressions
keep_regressions=
[[ -e $regressions ]] && keep_regressions=1
trap 'restore; rm -rf "$backup"; [[ -n $keep_regressions ]] || rm -rf "$regressions"' EXIT
trap 'exit 130' INT TERM

# Build the tests once unmutated, so every mutant's run only recompiles
# the crate, and check the tests pass before mutating anything.
echo "== unmutated: lifetime tests"
if ! cargo test -q -p msgsplice --test lifetime --test udp_netns >"$backup/log" 2>&1; then
  cat "$backup/log" >&2
  echo "the lifetime tests fail without any mutant; fix that first" >&2
  exit 1
fi
if ! [[ $(id -u) -eq 0 ]]; then
  echo "not root: the lifetime tests skip, so no mutant can be caught" >&2
fi

# The tests a mutant must fail: the lifetime tests, and for flag u also
# the completion bookkeeping's unit tests. Succeeds if all pass.
run_tests() {
  cargo test -q -p msgsplice --test lifetime --test udp_netns || return 1
  if [[ $1 == *u* ]]; then
    cargo test -q -p msgsplice --lib send::completion || return 1
  fi
}

results=()
missed=0
for m in "${mutants[@]}"; do
  IFS='|' read -r name flags file old new <<<"$(printf '%s' "$m" | sed 's/\\|/\x01/g')"
  old=${old//$'\x01'/|} new=${new//$'\x01'/|}
  [[ -n $quick && $flags != *q* ]] && continue
  cp "$file" "$backup/orig"
  current=$file
  # Replace exactly one occurrence of the literal text; fail if absent.
  if ! OLD=$(printf '%b' "$old") NEW=$(printf '%b' "$new") perl -0pi -e \
    'BEGIN { $n = 0 } $n += s/\Q$ENV{OLD}\E/$ENV{NEW}/; END { exit($n == 1 ? 0 : 3) }' "$file"; then
    restore
    results+=("$name|NOT APPLIED (text not found in $file)")
    missed=$((missed + 1))
    continue
  fi
  echo "== $name"
  by="lifetime tests"
  [[ $flags == *u* ]] && by="lifetime + completion unit tests"
  if run_tests "$flags" >"$backup/log" 2>&1; then
    verdict=MISSED
    missed=$((missed + 1))
  elif grep -q "^error\[\|^error:" "$backup/log" && ! grep -q "test result: FAILED" "$backup/log"; then
    verdict="NOT BUILT (the mutant does not compile)"
    missed=$((missed + 1))
  else
    verdict="caught ($by)"
  fi
  restore
  results+=("$name|$verdict")
done

echo
printf '%-40s %s\n' mutant verdict
for r in "${results[@]}"; do
  printf '%-40s %s\n' "${r%%|*}" "${r#*|}"
done
if [[ $missed -gt 0 ]]; then
  echo "mutants: $missed not caught" >&2
  exit 1
fi
echo "mutants: all ${#results[@]} caught"
