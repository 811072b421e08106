import { randomBytes } from 'node:crypto';
import { createDatabase } from './postgres.js';

/** A new, empty database on the test server, named for the test file that asked for it. */
export async function freshDatabase(serverUrl: string, label: string): Promise<string> {
  const name = `t_${label
    .replace(/[^a-z0-9]/gi, '_')
    .toLowerCase()
    .slice(0, 40)}_${randomBytes(4).toString('hex')}`;
  return createDatabase(serverUrl, name);
}

/** A Redis key prefix of its own, so test files can share one Redis server. */
export function freshQueuePrefix(label: string): string {
  return `t-${label
    .replace(/[^a-z0-9]/gi, '-')
    .toLowerCase()
    .slice(0, 30)}-${randomBytes(3).toString('hex')}`;
}

const FMNIST = 'file:///usr/share/datasets/fashion-mnist';

/** A spec's `data` on Fashion-MNIST: the first `train` training images and `validation` test images. */
export function fashionMnistData(train?: number, validation?: number) {
  return {
    train: {
      format: 'idx',
      images: `${FMNIST}/train-images-idx3-ubyte.gz`,
      labels: `${FMNIST}/train-labels-idx1-ubyte.gz`,
      ...(train ? { limit: train } : {}),
    },
    validation: {
      format: 'idx',
      images: `${FMNIST}/t10k-images-idx3-ubyte.gz`,
      labels: `${FMNIST}/t10k-labels-idx1-ubyte.gz`,
      ...(validation ? { limit: validation } : {}),
    },
  };
}

export interface ServerSentEvent {
  id?: string;
  event: string;
  data: unknown;
}

/** Parses a text/event-stream body into its events (comments skipped). */
export function parseEventStream(text: string): ServerSentEvent[] {
  return text
    .split('\n\n')
    .map((block) => block.split('\n').filter((l) => l && !l.startsWith(':')))
    .filter((lines) => lines.length > 0)
    .map((lines) => {
      const field = (name: string) =>
        lines
          .filter((l) => l.startsWith(`${name}:`))
          .map((l) => l.slice(name.length + 1).trimStart())
          .join('\n');
      const id = field('id');
      return {
        ...(id ? { id } : {}),
        event: field('event') || 'message',
        data: JSON.parse(field('data') || 'null'),
      };
    });
}
