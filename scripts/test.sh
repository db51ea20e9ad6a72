#!/usr/bin/env bash
# Every check CI runs, in order: formatting, lints, the binaries the end-to-end tests start, then every test
# (unit, contract, golden, end-to-end). Needs only a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The production build: no `dev` feature, so no simulator in the binary (issue #7); and `drover dev` says so.
cargo check -p drover --no-default-features --locked
cargo test -p drover --no-default-features --locked --lib cli::dev
cargo build --workspace --bins --locked
cargo test --workspace --locked
