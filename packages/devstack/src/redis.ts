import { mkdirSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import type { LocalServer } from './postgres.js';
import { spawnServer, waitFor } from './processes.js';

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.setTimeout(1000);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      resolve(d.toString().startsWith('+PONG'));
      sock.destroy();
    });
    sock.on('error', () => resolve(false));
    sock.on('timeout', () => {
      resolve(false);
      sock.destroy();
    });
  });
}

/**
 * Starts redis-server on 127.0.0.1:port with its files in `dir`. `durable` turns on the append-only
 * file, so queued jobs survive a restart of the dev stack.
 */
export async function startLocalRedis(opts: {
  dir: string;
  port: number;
  durable: boolean;
}): Promise<LocalServer> {
  mkdirSync(opts.dir, { recursive: true });
  const logFd = openSync(path.join(opts.dir, 'redis.log'), 'a');
  const args = ['--port', String(opts.port), '--bind', '127.0.0.1', '--dir', opts.dir, '--save', ''];
  args.push('--appendonly', opts.durable ? 'yes' : 'no');
  // BullMQ requires that Redis never evicts keys.
  args.push('--maxmemory-policy', 'noeviction');
  const child = spawnServer('redis-server', args, { logFd });
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  await waitFor(`redis-server on port ${opts.port}`, async () => {
    if (exited) throw new Error(`redis-server exited; see ${path.join(opts.dir, 'redis.log')}`);
    return ping(opts.port);
  });
  return {
    url: `redis://127.0.0.1:${opts.port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (exited) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
