#!/usr/bin/env bash
# Every check CI runs, in order: formatting, lints, the binaries the end-to-end tests start, then every test
# (unit, contract, golden, end-to-end). Needs only a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
# A real Prometheus (server and promtool) for the tests that measure through it: Debian's package, installed when
# missing and we can (CI runs as root). Without it those tests fail and say what to install.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    for attempt in 1 2 3; do apt-get update -qq && break; sleep $((attempt * 5)); done
    # policy-rc.d: the package's init script must not start a server of its own (an existing policy is kept).
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    for attempt in 1 2 3; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null && break
      sleep $((attempt * 5))
    done
    if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  else
    echo "prometheus and promtool are not on PATH: install Debian's prometheus package (needs root)" >&2
  fi
fi
# git for the `drover sync` tests (they build real repositories with it): installed when missing and we can.
if ! command -v git >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends git >/dev/null
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The production build: no `dev` feature, so no simulator in the binary (issue #7); and `drover dev` says so.
cargo check -p drover --no-default-features --locked
cargo test -p drover --no-default-features --locked --lib cli::dev
cargo build --workspace --bins --locked
cargo test --workspace --locked
