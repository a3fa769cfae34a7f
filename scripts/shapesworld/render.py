"""Writes ShapesWorld pictures: DIR/<seed>-<i>.png and DIR/<seed>-<i>.json for i in [0, count).

  python3 -P scripts/shapesworld/render.py --seed S --count N --out DIR [--first I]
  PYTHONPATH=. python3 -P -m scripts.shapesworld.render ...   (-P drops the cwd that -m would add)
"""
import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ''):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PIL import Image  # noqa: E402

from scripts.shapesworld.world import render_picture  # noqa: E402


def write_picture(seed, index, out):
    image, annotation = render_picture(seed, index)
    stem = out / f'{seed}-{index}'
    Image.fromarray(image).save(stem.with_suffix('.png'))
    stem.with_suffix('.json').write_text(json.dumps(annotation, separators=(',', ':')) + '\n')


def picture_range_args(description):
    """--seed, --count, --first and --out, as every ShapesWorld CLI takes them."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seed', type=int, required=True)
    parser.add_argument('--count', type=int, required=True)
    parser.add_argument('--first', type=int, default=0, help='index of the first picture')
    parser.add_argument('--out', type=Path, required=True)
    return parser.parse_args()


def main():
    args = picture_range_args(__doc__)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for index in range(args.first, args.first + args.count):
        write_picture(args.seed, index, args.out)
    seconds = time.perf_counter() - start
    print(f'{args.count} pictures in {seconds:.2f} s ({args.count / seconds:.1f}/s) -> {args.out}')


if __name__ == '__main__':
    main()
