/**
 * Affine maps between the pixel frames an image passes through (original, EXIF-stored, resized,
 * cropped, tiled, padded, normalised model outputs), so that boxes and keypoints predicted in one
 * land in another. Coordinates are continuous: pixel (i, j) covers [i, i + 1) x [j, j + 1), the
 * convention of Pillow's and PyTorch's resampling (align_corners=False), under which resizing is an
 * exact scaling of coordinates.
 *
 * A map is a gl-matrix mat2d [a, b, c, d, tx, ty]: x' = a x + c y + tx, y' = b x + d y + ty, held
 * in a Float64Array (gl-matrix defaults to f32, which is off by ~1e-3 pixel on large images).
 */
import { mat2d, vec2 } from 'gl-matrix';

export interface Size {
  width: number;
  height: number;
}

export type Box = [number, number, number, number];

export class ImageMap {
  private constructor(readonly matrix: Readonly<mat2d>) {}

  static fromMatrix(m: ArrayLike<number>): ImageMap {
    if (m.length !== 6 || !Array.from(m).every(Number.isFinite)) throw new RangeError(`ImageMap: a mat2d needs 6 finite numbers, got [${Array.from(m).join(', ')}]`);
    return new ImageMap(Float64Array.from(m));
  }

  static identity(): ImageMap {
    return ImageMap.fromMatrix([1, 0, 0, 1, 0, 0]);
  }

  static scale(sx: number, sy = sx): ImageMap {
    return ImageMap.fromMatrix([sx, 0, 0, sy, 0, 0]);
  }

  static translate(tx: number, ty: number): ImageMap {
    return ImageMap.fromMatrix([1, 0, 0, 1, tx, ty]);
  }

  /** Resizing an image of size `from` to size `to` (stretching, as Pillow's resize does). */
  static resize(from: Size, to: Size): ImageMap {
    if (!(from.width > 0 && from.height > 0)) throw new RangeError(`ImageMap.resize: source size ${from.width}x${from.height} is empty`);
    return ImageMap.scale(to.width / from.width, to.height / from.height);
  }

  /** Cutting out the region whose top-left corner is (x, y). */
  static crop(x: number, y: number): ImageMap {
    return ImageMap.translate(-x, -y);
  }

  /** Pasting onto a larger canvas with `left` and `top` pixels of padding. */
  static pad(left: number, top: number): ImageMap {
    return ImageMap.translate(left, top);
  }

  /** Pixels to coordinates in [0, 1] over an image of `size` (the detectors' normalised boxes). */
  static normalize(size: Size): ImageMap {
    return ImageMap.scale(1 / size.width, 1 / size.height);
  }

  /** From the pixels stored in a file with EXIF `orientation` (stored size given) to the upright image. */
  static exifOrientation(orientation: number, stored: Size): ImageMap {
    const { width: w, height: h } = stored;
    const m: Record<number, number[]> = {
      1: [1, 0, 0, 1, 0, 0],
      2: [-1, 0, 0, 1, w, 0], // mirrored left-right
      3: [-1, 0, 0, -1, w, h], // rotated 180
      4: [1, 0, 0, -1, 0, h], // mirrored top-bottom
      5: [0, 1, 1, 0, 0, 0], // transposed
      6: [0, 1, -1, 0, h, 0], // turned 90 degrees clockwise to display
      7: [0, -1, -1, 0, h, w], // transversed
      8: [0, -1, 1, 0, 0, w], // turned 90 degrees counter-clockwise to display
    };
    const values = m[orientation];
    if (!values) throw new RangeError(`ImageMap.exifOrientation: orientation must be 1..8, got ${orientation}`);
    return ImageMap.fromMatrix(values);
  }

  /** This map followed by `next`. */
  then(next: ImageMap): ImageMap {
    return new ImageMap(mat2d.multiply(new Float64Array(6), next.matrix as mat2d, this.matrix as mat2d));
  }

  inverse(): ImageMap {
    const out = mat2d.invert(new Float64Array(6), this.matrix as mat2d);
    if (!out) throw new RangeError(`ImageMap: [${Array.from(this.matrix).join(', ')}] is singular and has no inverse`);
    return new ImageMap(out);
  }

  point(x: number, y: number): [number, number] {
    const v = vec2.transformMat2d(new Float64Array(2), Float64Array.of(x, y), this.matrix as mat2d);
    return [v[0], v[1]];
  }

  /** The axis-aligned box around the mapped corners of [x0, y0, x1, y1] (exact for scalings, translations, flips and quarter turns). */
  box(b: Readonly<Box>): Box {
    const corners = [this.point(b[0], b[1]), this.point(b[2], b[1]), this.point(b[0], b[3]), this.point(b[2], b[3])];
    const xs = corners.map((c) => c[0]);
    const ys = corners.map((c) => c[1]);
    return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
  }

  /** Maps packed points [x0, y0, x1, y1, ...] (keypoints) into a new array. */
  points(xy: ArrayLike<number>): Float64Array {
    if (xy.length % 2) throw new RangeError(`ImageMap.points: ${xy.length} numbers are not (x, y) pairs`);
    const out = new Float64Array(xy.length);
    const [a, b, c, d, tx, ty] = this.matrix as unknown as number[];
    for (let i = 0; i < xy.length; i += 2) {
      const x = xy[i]!;
      const y = xy[i + 1]!;
      out[i] = a! * x + c! * y + tx!;
      out[i + 1] = b! * x + d! * y + ty!;
    }
    return out;
  }

  /** Maps packed boxes [x0, y0, x1, y1, ...] into a new array. */
  boxes(xyxy: ArrayLike<number>): Float64Array {
    if (xyxy.length % 4) throw new RangeError(`ImageMap.boxes: ${xyxy.length} numbers are not [x0, y0, x1, y1] boxes`);
    const out = new Float64Array(xyxy.length);
    for (let i = 0; i < xyxy.length; i += 4) out.set(this.box([xyxy[i]!, xyxy[i + 1]!, xyxy[i + 2]!, xyxy[i + 3]!]), i);
    return out;
  }
}

/** Detector boxes (cx, cy, w, h), normalised to [0, 1], as [x0, y0, x1, y1] in the same frame. */
export function cxcywhToXyxy(b: readonly [number, number, number, number]): Box {
  const [cx, cy, w, h] = b;
  return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2];
}
