#!/usr/bin/env bash
# Weakens one ordering at a time in a scratch copy of the tree and runs the
# loom models that should catch it; prints a table. An ordering whose
# weakening no model catches ("survived") is an ordering the models do not
# check. Run from the repository root; takes a few minutes per mutation.
#
#   bash scripts/loom-mutations.sh            # all mutations
#   bash scripts/loom-mutations.sh spsc_publish  # those whose name starts so
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$root" && tar --exclude=./target --exclude=./.git --exclude=./fuzz/target -cf - .) | (cd "$scratch" && tar -xf -)
export CARGO_TARGET_DIR="$root/target/loom-mutations" LOOM_MAX_PREEMPTIONS=3

# name @ file @ exact text @ replacement @ loom test target
mutations=(
  "spsc_publish_store@src/ring/spsc/producer.rs@const PUBLISH: Ordering = Ordering::Release;@const PUBLISH: Ordering = Ordering::Relaxed;@loom_spsc"
  "spsc_header_load@src/ring/spsc/view.rs@let header = self.header(idx).load(Ordering::Acquire);@let header = self.header(idx).load(Ordering::Relaxed);@loom_spsc"
  "spsc_head_store@src/ring/spsc/consumer.rs@head.store(self.head, Ordering::Release);@head.store(self.head, Ordering::Relaxed);@loom_spsc"
  "spsc_head_load@src/ring/spsc/producer.rs@let head = self.view.ctrl().head.load(Ordering::Acquire);@let head = self.view.ctrl().head.load(Ordering::Relaxed);@loom_spsc"
  "mpsc_flush_before_sleep@src/ring/mpsc/consumer/release.rs@if self.head != self.released && !spins && self.flush_blocked().is_err() {@if false && self.head != self.released && !spins && self.flush_blocked().is_err() {@loom_mpsc"
  "mpsc_commit_cas@src/ring/mpsc/producer.rs@            committed,\n            Ordering::Release,@            committed,\n            Ordering::Relaxed,@loom_mpsc"
  "mutex_unlock@src/lock/mutex.rs@.compare_exchange(cur, 0, Ordering::Release, Ordering::Relaxed)@.compare_exchange(cur, 0, Ordering::Relaxed, Ordering::Relaxed)@loom_lock"
  "mutex_lock@src/lock/mutex.rs@.compare_exchange(0, self.me | extra, Ordering::Acquire, Ordering::Relaxed)@.compare_exchange(0, self.me | extra, Ordering::Relaxed, Ordering::Relaxed)@loom_lock"
  "event_signal@src/lock/event.rs@state.fetch_or(SIGNALLED, Ordering::Release)@state.fetch_or(SIGNALLED, Ordering::Relaxed)@loom_lock"
)

printf '%-18s %-12s %s\n' mutation models result
for m in "${mutations[@]}"; do
  IFS='@' read -r name file old new test <<<"$m"
  [[ -n "${1:-}" && "$name" != "$1"* ]] && continue
  cp "$root/$file" "$scratch/$file"
  if ! python3 - "$scratch/$file" "$old" "$new" <<'PY'
import sys
p, old, new = sys.argv[1], sys.argv[2].replace('\\n', '\n'), sys.argv[3].replace('\\n', '\n')
s = open(p).read()
if s.count(old) != 1:
    sys.exit(f"{p}: expected exactly one {old!r}, found {s.count(old)}")
open(p, 'w').write(s.replace(old, new))
PY
  then
    printf '%-18s %-12s %s\n' "$name" "$test" "NOT APPLIED"
    continue
  fi
  log="$root/target/loom-mutation-$name.log"
  if (cd "$scratch" && RUSTFLAGS="--cfg loom" cargo test --release -p polycephaly --test "$test" >"$log" 2>&1); then
    result="survived (no model failed)"
  else
    why=""
    for pat in "causality violation" "deadlock" "assertion[^:]*failed" "panicked at [^ ]+"; do
      why=$(grep -oiE "$pat" "$log" | head -1)
      [ -n "$why" ] && break
    done
    result="caught: ${why:-failed} (see $log)"
  fi
  printf '%-18s %-12s %s\n' "$name" "$test" "$result"
  cp "$root/$file" "$scratch/$file"
done
