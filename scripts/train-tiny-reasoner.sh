#!/usr/bin/env bash
# Remakes assets/models/tiny-reasoner.safetensors, the weights of `builtin:tiny-reasoner`:
# runs the study assets/presets/tiny-reasoner.toml (SFT from the untrained
# `builtin:tiny-reasoner-init`) in a scratch workspace and exports its last
# checkpoint (f32, 3.3 MB; `--dtype bf16` would halve it).
# Rebuild afterwards: the weights are compiled into the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
studio=./target/release/studio
ws=$(mktemp -d)
trap 'rm -rf "$ws"' EXIT
"$studio" --workspace "$ws" study assets/presets/tiny-reasoner.toml
# The study's run is the workspace's first; export its last checkpoint.
checkpoint=$("$studio" --workspace "$ws" runs show 1 --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["checkpoints"][-1]["id"])')
"$studio" --workspace "$ws" export --checkpoint "$checkpoint" --dtype f32 --out "$ws/export"
cp "$ws/export/model.safetensors" assets/models/tiny-reasoner.safetensors
ls -l assets/models/tiny-reasoner.safetensors
