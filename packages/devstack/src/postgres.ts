import { type ChildProcess, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { execFileAsync, isRoot, spawnServer, waitFor } from './processes.js';

export interface LocalServer {
  url: string;
  stop(): Promise<void>;
}

/** Finds initdb and postgres: Debian keeps them in /usr/lib/postgresql/<version>/bin. */
export function findPostgresBin(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(path.join(base, v, 'bin', 'postgres')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return path.join(base, versions[0], 'bin');
  }
  try {
    return (
      path.dirname(execFileSync('sh', ['-c', 'command -v postgres'], { encoding: 'utf8' }).trim()) ||
      undefined
    );
  } catch {
    return undefined;
  }
}

function postgresUser(): { uid: number; gid: number } | undefined {
  if (!isRoot()) return undefined;
  // PostgreSQL refuses to run as root; Debian's package creates the `postgres` user.
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

/**
 * Starts a PostgreSQL server from the local binaries with its data in `dir` (created by initdb when
 * empty), listening on 127.0.0.1:port, trusting local connections. `durable: false` turns off fsync
 * for throwaway test servers.
 */
export async function startLocalPostgres(opts: {
  dir: string;
  port: number;
  durable: boolean;
}): Promise<LocalServer> {
  const bin = findPostgresBin();
  if (!bin) throw new Error('PostgreSQL binaries not found (install the Debian package "postgresql")');
  const user = postgresUser();
  const dataDir = path.join(opts.dir, 'data');
  const sockDir = path.join(opts.dir, 'sock');
  mkdirSync(opts.dir, { recursive: true });
  mkdirSync(sockDir, { recursive: true });
  if (user) {
    chownSync(opts.dir, user.uid, user.gid);
    chownSync(sockDir, user.uid, user.gid);
  }
  const asUser = user ? { uid: user.uid, gid: user.gid } : {};
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await execFileAsync(
      path.join(bin, 'initdb'),
      [
        '-D',
        dataDir,
        '-U',
        'postgres',
        '--auth=trust',
        '--encoding=UTF8',
        '--locale=C.UTF-8',
        '--no-instructions',
      ],
      { ...asUser, cwd: opts.dir },
    );
  }
  const logFd = openSync(path.join(opts.dir, 'postgres.log'), 'a');
  if (user) chownSync(path.join(opts.dir, 'postgres.log'), user.uid, user.gid);
  const args = [
    '-D',
    dataDir,
    '-p',
    String(opts.port),
    '-k',
    sockDir,
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'max_connections=200',
  ];
  if (!opts.durable)
    args.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const child: ChildProcess = spawnServer(path.join(bin, 'postgres'), args, { logFd, ...asUser });
  const url = `postgresql://postgres@127.0.0.1:${opts.port}/postgres`;
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  await waitFor(`PostgreSQL on port ${opts.port} (log: ${path.join(opts.dir, 'postgres.log')})`, async () => {
    if (exited) throw new Error(`PostgreSQL exited; see ${path.join(opts.dir, 'postgres.log')}`);
    const c = new pg.Client({ connectionString: url });
    try {
      await c.connect();
      return true;
    } finally {
      await c.end().catch(() => {});
    }
  });
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        if (exited) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGINT'); // fast shutdown: roll back open transactions, checkpoint, exit
      }),
  };
}

/** Creates a fresh database on the server at `serverUrl` and returns its URL. */
export async function createDatabase(serverUrl: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
  } finally {
    await c.end();
  }
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}
