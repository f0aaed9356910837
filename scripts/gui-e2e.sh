#!/usr/bin/env bash
# The real window end to end under Xvfb on a fresh workspace: opens the studio on Home, clicks
# Try it, waits until the run has logged steps, keeps a screenshot of its curves as a test
# artefact (target/gui-e2e/try-it.png) and checks the workspace holds the run with its steps.
# Usage: scripts/gui-e2e.sh [STUDIO_BINARY]   (default: target/debug/studio)
set -euo pipefail
cd "$(dirname "$0")/.."
studio=$(realpath "${1:-target/debug/studio}")
out=target/gui-e2e
mkdir -p "$out"
ws=$(mktemp -d)
display=:97
Xvfb "$display" -screen 0 1280x800x24 >/dev/null 2>&1 &
xvfb=$!
app=""
cleanup() {
  [ -n "$app" ] && kill "$app" 2>/dev/null || true
  "$studio" --workspace "$ws" stop 1 >/dev/null 2>&1 || true
  kill "$xvfb" 2>/dev/null || true
  rm -rf "$ws"
}
trap cleanup EXIT
export DISPLAY=$display
# A fresh eframe state too: the window opens on Home at its default size.
export XDG_DATA_HOME="$ws/xdg"
sleep 1
"$studio" --workspace "$ws" gui --view home >"$out/studio.log" 2>&1 &
app=$!
for _ in $(seq 1 60); do
  xdotool search --name "Reasoning Studio" >/dev/null 2>&1 && break
  sleep 0.5
done
sleep 2
import -window root "$out/home.png"
# The Try it button on Home at the default window size (1280x800 at the screen's origin).
xdotool mousemove 218 95 click 1
steps=0
for _ in $(seq 1 90); do
  steps=$("$studio" --workspace "$ws" runs --json |
    python3 -c 'import json, sys; r = json.load(sys.stdin); print(r[0]["last_step"] or 0 if r else 0)')
  [ "$steps" -ge 30 ] && break
  sleep 1
done
sleep 1.5
import -window root "$out/try-it.png"
if [ "$steps" -lt 30 ]; then
  echo "gui-e2e: Try it did not start a run that reached 30 steps (at $steps); see $out/" >&2
  exit 1
fi
echo "gui-e2e: Try it started run 1, at step $steps; screenshots in $out/"
