#!/usr/bin/env bash
# Regenerates test/golden/*.safetensors with PyTorch on the CPU (Debian: apt-get install python3-torch).
# Picks a python3 that can import torch: the one on PATH, else the system one (/usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
for py in python3 /usr/bin/python3; do
  if "$py" -c 'import torch, numpy' 2>/dev/null; then
    exec "$py" scripts/golden/generate.py "$@"
  fi
done
echo "No python3 with torch and numpy found. On Debian/Ubuntu: sudo apt-get install python3-torch python3-numpy" >&2
exit 1
