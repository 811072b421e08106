import prand from 'pure-rand';
import { deriveSeed } from '../random.js';
import type { Preprocess } from './dataset.js';

/**
 * Random shifts and left–right flips of a batch of preprocessed NHWC images, in place. Each
 * example's draw derives from the seed, the step and its place in the batch, so a resumed run
 * augments exactly as an uninterrupted one. Pixels shifted in take the value a stored 0 becomes.
 */
export function augmentBatch(
  x: Float32Array,
  m: number,
  shape: number[],
  aug: { shift: number; flip: boolean },
  p: Preprocess,
  seed: number,
  step: number,
): void {
  const [h, w, c] = shape as [number, number, number];
  const size = h * w * c;
  const fill = Float32Array.from(
    { length: c },
    (_, ch) => (0 - (p.mean ? p.mean[ch]! : 0)) / (p.std ? p.std[ch]! : 1),
  );
  const tmp = new Float32Array(size);
  for (let i = 0; i < m; i++) {
    const rng = prand.xoroshiro128plus(deriveSeed(seed, 'augment', step, i));
    const dy = aug.shift ? prand.unsafeUniformIntDistribution(-aug.shift, aug.shift, rng) : 0;
    const dx = aug.shift ? prand.unsafeUniformIntDistribution(-aug.shift, aug.shift, rng) : 0;
    const flip = aug.flip && prand.unsafeUniformIntDistribution(0, 1, rng) === 1;
    if (dy === 0 && dx === 0 && !flip) continue;
    const img = x.subarray(i * size, (i + 1) * size);
    tmp.set(img);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        // Output (y, xx) reads the source pixel it came from; outside the image, the fill value.
        const sy = y - dy;
        const sxShifted = xx - dx;
        const sx = flip ? w - 1 - sxShifted : sxShifted;
        const inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
        for (let ch = 0; ch < c; ch++)
          img[(y * w + xx) * c + ch] = inside ? tmp[(sy * w + sx) * c + ch]! : fill[ch]!;
      }
    }
  }
}
