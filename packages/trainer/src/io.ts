import { readFile } from 'node:fs/promises';
import { checkHttpUri, RetortError, resolveFileUri, type UriPolicy } from '@retort/spec';

/** How the trainer reads the bytes behind a URI. The worker and the CLI both use `policyByteSource`. */
export interface ByteSource {
  read(uri: string): Promise<Uint8Array>;
}

/** Reads `file://` inside the data roots and `http(s)://` from allowed hosts, up to `maxBytes`. */
export function policyByteSource(policy: UriPolicy, maxBytes = 2 * 1024 ** 3): ByteSource {
  return {
    async read(uri) {
      if (uri.startsWith('file:')) {
        const p = await resolveFileUri(uri, policy);
        return readFile(p);
      }
      const url = checkHttpUri(uri, policy);
      let res: Response;
      try {
        res = await fetch(url, { redirect: 'error' });
      } catch (e) {
        throw new RetortError(
          'RETORT_DATA_UNREADABLE',
          `${uri}: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
      if (!res.ok || !res.body) throw new RetortError('RETORT_DATA_UNREADABLE', `${uri}: HTTP ${res.status}`);
      const parts: Uint8Array[] = [];
      let size = 0;
      for await (const part of res.body) {
        size += part.byteLength;
        if (size > maxBytes)
          throw new RetortError('RETORT_DATA_UNREADABLE', `${uri} is larger than ${maxBytes} bytes`);
        parts.push(part);
      }
      return Buffer.concat(parts);
    },
  };
}
