#!/usr/bin/env bash
# Makes a fresh clone runnable, and is quick when it already is:
#   1. npm ci when node_modules is missing or older than package-lock.json
#   2. the TypeScript build (incremental), and the web page's browser code
#   3. a WebGPU adapter: if Dawn finds none and this is Debian/Ubuntu with root (or password-less
#      sudo) and apt, install Mesa's CPU Vulkan driver (lavapipe). Debian 12's Mesa 22 is too old
#      for Dawn, so on bookworm it comes from bookworm-backports (Mesa 25). Otherwise say what to install.
#      Skipped with --no-adapter, for jobs that never touch the GPU (npm run convert).
#   4. with --test-tools (npm test): redis-server (the serving tests' queue) and chromium (the web
#      page's browser test) when missing, the same way; their tests skip without them.
#   5. with --train-tools (npm run train:tiny, no adapter needed) or --world-tools (npm run eval:tiny):
#      the system Python's packages for training (PyTorch, SentencePiece, OpenBLAS's threaded
#      BLAS, without which torch runs ~10x slower) or for drawing ShapesWorld (numpy, Pillow).
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

say() { echo "setup: $*" >&2; }

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

npx tsc -p . 
npx tsc -p src/server/page  # the serve command's web page (browser code: its own tsconfig)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1; fi
}

# apt_install "<what for>" <Debian packages...>: installs them where apt and root are at hand; fails otherwise.
apt_install() {
  local why=$1
  shift
  command -v apt-get >/dev/null && as_root true || return 1
  say "installing $* $why"
  { as_root apt-get update -q && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "$@"; } >/dev/null 2>&1
}

# python_packages "<modules to import>" <Debian packages...>: installs them when /usr/bin/python3 lacks one.
python_packages() {
  local modules=$1
  shift
  /usr/bin/python3 -c "import $modules" 2>/dev/null && return 0
  apt_install "for the system Python" "$@" && return 0
  say "the system Python needs $modules: apt-get install $*"
  exit 1
}

case "${1:-}" in
  --no-adapter) exit 0 ;;
  --train-tools)
    python_packages "torch, numpy, PIL, sentencepiece" python3-torch python3-numpy python3-pil python3-sentencepiece libopenblas0-pthread
    exit 0 ;;
  --world-tools) python_packages "numpy, PIL" python3-numpy python3-pil ;;
esac

if [ "${1:-}" = --test-tools ]; then
  missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ] && ! apt_install "for the serving tests" "${missing[@]}"; then
    say "could not install ${missing[*]} (install them with your package manager); the tests that need them will skip"
  fi
fi

probe() { node dist/scripts/probe-adapter.js "$@"; }

if probe --quiet; then
  exit 0
fi

say "Dawn finds no WebGPU adapter; trying to install Mesa's CPU Vulkan driver (lavapipe)"
manual_help() {
  say "could not install it automatically. Install a Vulkan driver, then rerun:"
  say "  Debian 12:  echo 'deb http://deb.debian.org/debian bookworm-backports main' | sudo tee /etc/apt/sources.list.d/backports.list"
  say "              sudo apt-get update && sudo apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1"
  say "  Ubuntu / newer Debian:  sudo apt-get install mesa-vulkan-drivers libvulkan1   (Mesa 23 or newer)"
  say "  with a GPU: its vendor's Vulkan driver (Linux), or nothing on macOS (Metal) and Windows (D3D12)"
}

if [ ! -r /etc/os-release ] || ! command -v apt-get >/dev/null || ! as_root true; then
  manual_help
  exit 1
fi
. /etc/os-release
log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
target=()
if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  if ! grep -rqs '^[^#].*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding bookworm-backports to apt's sources"
    echo 'deb http://deb.debian.org/debian bookworm-backports main' | as_root tee /etc/apt/sources.list.d/visionllm-backports.list >/dev/null
  fi
  target=(-t bookworm-backports)
fi
say "apt-get install ${target[*]} mesa-vulkan-drivers libvulkan1 (log: $log)"
if ! { as_root apt-get update -q && as_root apt-get install -y -q "${target[@]}" mesa-vulkan-drivers libvulkan1; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  manual_help
  exit 1
fi

if probe; then
  exit 0
fi
say "the driver is installed but Dawn still finds no adapter (Mesa must be 23 or newer: $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null))"
exit 1
