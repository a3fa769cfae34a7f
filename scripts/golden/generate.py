"""Regenerates every golden file: python3 scripts/golden/generate.py [module ...]

Run through `npm run golden`. Each module of this folder that defines generate() contributes
safetensors files; one that defines files() returning {path under test/golden: bytes} contributes
other fixtures (checkpoints in other formats, tokenizer models, JSON references).
"""
import importlib.util
import os
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
# Generators are named after the op families they cover, and copy.py after a standard module too:
# this folder goes last on the module path (where the generators find common.py and hashed.py),
# and each generator is loaded from its file.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != HERE] + [HERE]
import common  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(2)


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv):
    names = argv or sorted(f[:-3] for f in os.listdir(HERE) if f.endswith('.py') and f not in ('common.py', 'generate.py'))
    os.makedirs(common.GOLDEN_DIR, exist_ok=True)
    for name in names:
        module = load(name)
        if not hasattr(module, 'generate') and not hasattr(module, 'files'):
            continue
        start = time.time()
        for rel, data in (module.files() if hasattr(module, 'files') else {}).items():
            path = os.path.join(common.GOLDEN_DIR, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as f:
                f.write(data)
            print(f'{name}: wrote {os.path.relpath(path)} ({len(data) / 1024:.1f} KiB)')
        for stem, (tensors, metadata) in (module.generate() if hasattr(module, 'generate') else {}).items():
            path = os.path.join(common.GOLDEN_DIR, stem + '.safetensors')
            common.write_safetensors(path, tensors, metadata)
            print(f'{name}: wrote {os.path.relpath(path)} ({os.path.getsize(path) / 1024:.0f} KiB)')
        print(f'{name}: {time.time() - start:.1f} s')


if __name__ == '__main__':
    main(sys.argv[1:])
