import * as tf from '@tensorflow/tfjs';
import { installWasmConvGradients } from './wasm/conv-gradients.js';
import { installWasmTransposedMatMul } from './wasm/transposed-matmul.js';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface BackendInfo {
  name: BackendName;
  /** What computes: e.g. `gpu (CUDA)`, `cpu (libtensorflow)`, `cpu (wasm simd)`. */
  device: string;
  /** Why earlier choices were passed over, for the log. */
  skipped: string[];
}

// Optional packages: named through a variable so the compiler does not require them.
const optional = (name: string) => import(name);

async function tryTensorflow(skipped: string[]): Promise<BackendInfo | null> {
  for (const [pkg, device] of [
    ['@tensorflow/tfjs-node-gpu', 'gpu (CUDA)'],
    ['@tensorflow/tfjs-node', 'cpu (libtensorflow)'],
  ] as const) {
    try {
      await optional(pkg);
      if (await tf.setBackend('tensorflow')) return { name: 'tensorflow', device, skipped };
      skipped.push(`${pkg}: loaded but the tensorflow backend did not start`);
    } catch (e) {
      skipped.push(
        `${pkg}: ${(e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' ? 'not installed' : String(e)}`,
      );
    }
  }
  return null;
}

async function tryWasm(skipped: string[]): Promise<BackendInfo | null> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    if (await tf.setBackend('wasm')) {
      installWasmTransposedMatMul();
      installWasmConvGradients();
      return { name: 'wasm', device: 'cpu (wasm SIMD, 1 thread)', skipped };
    }
    skipped.push('wasm: backend did not start');
  } catch (e) {
    skipped.push(`wasm: ${String(e)}`);
  }
  return null;
}

/**
 * Picks the compute backend as ARCHITECTURE.md orders them: tensorflow (tfjs-node-gpu, then
 * tfjs-node) when installed, else wasm, else plain cpu. `prefer` forces one (and fails if absent).
 */
export async function initBackend(prefer?: BackendName): Promise<BackendInfo> {
  const skipped: string[] = [];
  if (prefer === 'tensorflow' || prefer === undefined) {
    const t = await tryTensorflow(skipped);
    if (t) return t;
    if (prefer) throw new Error(`backend tensorflow is not available: ${skipped.join('; ')}`);
  }
  if (prefer === 'wasm' || prefer === undefined) {
    const w = await tryWasm(skipped);
    if (w) return w;
    if (prefer) throw new Error(`backend wasm is not available: ${skipped.join('; ')}`);
  }
  await tf.setBackend('cpu');
  return { name: 'cpu', device: 'cpu (plain JavaScript)', skipped };
}
