#!/usr/bin/env bash
# The whole test suite, as the README gives it and as `.ci/run` runs it after its lint steps.
# It installs what it needs (cargo-nextest; Debian's redis-server, openssl and python3-venv;
# maturin, pytest and numpy in a venv) and fails if a test leaves a segment in /dev/shm or a
# test redis-server running.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest (the test runner: one process per test, which fork-based tests need)"
  cargo install cargo-nextest --locked
fi

# Installs the Debian package $1, which the tests need for $2.
install_debian_package() {
  echo "installing $1 ($2)"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1"
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1"
  else
    echo "$1 is missing and this user cannot install it: run \`apt-get install $1\` as root" >&2
    exit 1
  fi
}

# The Redis backend's tests start their own redis-server on a free loopback port. (Debian
# starts a system-wide server on 6379; the tests use their own, so it may stay.)
command -v redis-server >/dev/null 2>&1 ||
  install_debian_package redis-server "the Redis backend's tests run against a real server"
# The TLS tests (`rediss://`) make their CA and certificates with openssl.
command -v openssl >/dev/null 2>&1 ||
  install_debian_package openssl "the Redis TLS tests make their certificates with it"

shm_before=$(ls /dev/shm 2>/dev/null | grep '^memspace\.' | sort || true)

# Shared memory alone (`default-features = false`, no Redis client): the library builds, and
# its unit tests pass, among them the one that a Redis name is refused with how to enable it.
cargo build -p memspace --no-default-features
cargo nextest run -p memspace --no-default-features --lib

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

# The other examples: each prints a line a run must end with.
# The map cache runs twice: its map in shared memory, then on a Redis server of its own.
redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
for check in "job_queue|jobs: 20, sum of squares: 2870" "shared_counter|counter: 4000" \
    "map_cache|keys: 300, sum of lengths: 14167" \
    "map_cache redis://127.0.0.1:$redis_port|keys: 300, sum of lengths: 14167"; do
  run=${check%%|*} want=${check#*|}
  example=${run%% *} args=${run#"$example"}
  # shellcheck disable=SC2086 # the arguments are words
  out=$(cargo run --release --quiet -p memspace --example "$example" -- $args)
  last=$(printf '%s\n' "$out" | tail -n 1)
  if [ "$last" = "$want" ]; then
    echo "example $run: $last"
  else
    printf 'example %s ended with %s, not %s\n%s\n' "$run" "$last" "$want" "$out" >&2
    exit 1
  fi
done
if [ -n "$(redis-cli -p "$redis_port" --scan)" ]; then
  echo "the map cache example left keys on its Redis server" >&2
  exit 1
fi
kill "$redis_pid"
wait "$redis_pid" 2>/dev/null || true
trap - EXIT

# The Python package (crates/memspace-py): built with maturin into a venv of its own, its tests
# run against real processes; the CLI reads a list Python wrote.
cargo build --release --quiet -p memspace-cli
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ||
  install_debian_package python3-venv "the Python package's tests run in a virtual environment"
python3 -m venv target/py-venv
target/py-venv/bin/pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" "pytest>=8,<10" "numpy>=1.26"
target/py-venv/bin/pip install --quiet --disable-pip-version-check ./crates/memspace-py
MEMSPACE_BIN="$PWD/target/release/memspace" target/py-venv/bin/python -m pytest -q -p no:cacheprovider crates/memspace-py/tests

# Benchmarks are built, never timed, here.
cargo bench --workspace --no-run

shm_after=$(ls /dev/shm 2>/dev/null | grep '^memspace\.' | sort || true)
leaked=$(comm -13 <(printf '%s\n' "$shm_before") <(printf '%s\n' "$shm_after") | sed '/^$/d')
if [ -n "$leaked" ]; then
  echo "the tests left segments in /dev/shm:" >&2
  printf '  %s\n' $leaked >&2
  exit 1
fi
# The test servers' process titles end with memspace-redis-test (see
# crates/memspace-testkit/src/redis_server.rs); none may outlive its test.
if pgrep -f 'memspace-redis-test' >/dev/null 2>&1; then
  echo "the tests left redis-server processes running:" >&2
  pgrep -af 'memspace-redis-test' >&2
  exit 1
fi
echo "all tests passed; /dev/shm is clean and no test redis-server is left"
