import { gunzipSync } from 'node:zlib';
import { RetortError } from '@retort/spec';

export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  shape: number[];
  data: IdxData;
}

const TYPES: Record<
  number,
  { name: string; bytes: number; read: (v: DataView, off: number) => number; make: (n: number) => IdxData }
> = {
  8: { name: 'ubyte', bytes: 1, read: (v, o) => v.getUint8(o), make: (n) => new Uint8Array(n) },
  9: { name: 'byte', bytes: 1, read: (v, o) => v.getInt8(o), make: (n) => new Int8Array(n) },
  11: { name: 'short', bytes: 2, read: (v, o) => v.getInt16(o), make: (n) => new Int16Array(n) },
  12: { name: 'int', bytes: 4, read: (v, o) => v.getInt32(o), make: (n) => new Int32Array(n) },
  13: { name: 'float', bytes: 4, read: (v, o) => v.getFloat32(o), make: (n) => new Float32Array(n) },
  14: { name: 'double', bytes: 8, read: (v, o) => v.getFloat64(o), make: (n) => new Float64Array(n) },
};

/** The most a gzip-compressed IDX file may inflate to. */
export const MAX_INFLATED_BYTES = 2 ** 31;

/**
 * Parses an IDX file (the MNIST family's format), gzip-compressed or raw. `limit` keeps only the
 * first N items along the first dimension, without converting the rest.
 */
export function parseIdx(
  input: Uint8Array,
  what: string,
  limit?: number,
  offset = 0,
  maxInflated = MAX_INFLATED_BYTES,
): IdxArray {
  const fail = (why: string) =>
    new RetortError('RETORT_DATA_INVALID', `${what} is not a valid IDX file: ${why}`);
  let bytes = input;
  if (input[0] === 0x1f && input[1] === 0x8b) {
    try {
      // A small file that inflates without end (a gzip bomb) stops at the cap instead of the worker.
      bytes = gunzipSync(input, { maxOutputLength: maxInflated });
    } catch (e) {
      throw fail(
        (e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE'
          ? `it inflates to more than ${maxInflated} bytes`
          : `gzip: ${(e as Error).message}`,
      );
    }
  }
  if (bytes.byteLength < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw fail('bad magic number');
  const type = TYPES[bytes[2]!];
  if (!type) throw fail(`unknown data type 0x${bytes[2]!.toString(16)}`);
  const ndim = bytes[3]!;
  if (ndim < 1 || bytes.byteLength < 4 + 4 * ndim) throw fail('truncated header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  for (let i = 0; i < ndim; i++) shape.push(view.getUint32(4 + 4 * i));
  const perItem = shape.slice(1).reduce((a, b) => a * b, 1);
  const total = shape.reduce((a, b) => a * b, 1);
  const header = 4 + 4 * ndim;
  if (bytes.byteLength < header + total * type.bytes) {
    throw fail(
      `expected ${total * type.bytes} data bytes for shape [${shape.join(', ')}], found ${bytes.byteLength - header}`,
    );
  }
  const skip = Math.min(offset, shape[0]!);
  shape[0] = Math.min(shape[0]! - skip, limit ?? Infinity);
  const n = shape[0]! * perItem;
  const start = header + skip * perItem * type.bytes;
  if (type.bytes === 1 && type.name === 'ubyte') {
    // The common case: copy the bytes out (the gunzip buffer may be much larger than what we keep).
    return { shape, data: new Uint8Array(bytes.subarray(start, start + n)) };
  }
  const data = type.make(n);
  for (let i = 0; i < n; i++) data[i] = type.read(view, start + i * type.bytes);
  return { shape, data };
}
