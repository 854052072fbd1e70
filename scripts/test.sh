#!/usr/bin/env bash
# The whole test suite, as the README gives it and as `.ci/run` runs it after its lint steps.
# It installs what it needs (cargo-nextest) and fails if a test leaves a segment in /dev/shm.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest (the test runner: one process per test, which fork-based tests need)"
  cargo install cargo-nextest --locked
fi

shm_before=$(ls /dev/shm 2>/dev/null | grep '^memspace\.' | sort || true)

# Debug, then release: lock bugs like to hide in optimised code.
cargo nextest run --workspace
cargo nextest run --workspace --release
# nextest does not run doctests.
cargo test --workspace --doc

# The tutorial ported to memspace: threads and processes must print the same final list.
for example in tutorial_threads tutorial_processes; do
  out=$(cargo run --release --quiet -p memspace --example "$example")
  last=$(printf '%s\n' "$out" | tail -n 1)
  case "$last" in
    "Main Thread : [0, 1, 2, 0, 1, 2, 0, 1, 2]"|"Main Process : [0, 1, 2, 0, 1, 2, 0, 1, 2]")
      echo "example $example: $last" ;;
    *)
      printf 'example %s ended with %s\n%s\n' "$example" "$last" "$out" >&2
      exit 1 ;;
  esac
done

# Benchmarks are built, never timed, here.
cargo bench --workspace --no-run

shm_after=$(ls /dev/shm 2>/dev/null | grep '^memspace\.' | sort || true)
leaked=$(comm -13 <(printf '%s\n' "$shm_before") <(printf '%s\n' "$shm_after") | sed '/^$/d')
if [ -n "$leaked" ]; then
  echo "the tests left segments in /dev/shm:" >&2
  printf '  %s\n' $leaked >&2
  exit 1
fi
echo "all tests passed; /dev/shm is clean"
