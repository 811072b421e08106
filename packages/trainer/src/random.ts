import prand from 'pure-rand';

/**
 * All randomness of a run derives from its seed through `deriveSeed`, keyed by what it is for and
 * where (e.g. `('order', epoch)`, `('dropout', step)`). Nothing carries random state from one step
 * to the next, so a run resumed at any step draws exactly what an uninterrupted run would have.
 */
export function deriveSeed(seed: number, purpose: string, ...indices: number[]): number {
  // FNV-1a over the purpose, then a splitmix-style finaliser over each index.
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < purpose.length; i++) h = Math.imul(h ^ purpose.charCodeAt(i), 0x01000193);
  for (const n of indices) {
    h = Math.imul(h ^ (n >>> 0), 0x9e3779b1);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
  }
  return (h >>> 0) & 0x7fffffff;
}

/** A permutation of 0..n-1 (Fisher-Yates) drawn from `seed`. */
export function permutation(n: number, seed: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  const rng = prand.xoroshiro128plus(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = prand.unsafeUniformIntDistribution(0, i, rng);
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}
