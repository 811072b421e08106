import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { findPostgresBin, type LocalServer, startLocalPostgres } from './postgres.js';
import { commandExists, execFileAsync, freePort, isRoot } from './processes.js';
import { startLocalRedis } from './redis.js';

export interface Services {
  databaseUrl: string;
  redisUrl: string;
  /** How they were provided: `env`, `docker` or `local`. */
  source: 'env' | 'docker' | 'local';
  stop(): Promise<void>;
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/**
 * Installs Debian packages that are missing, when running as root with apt-get. Returns the
 * packages still missing afterwards (empty when all is well).
 */
export async function ensureDebianPackages(
  wanted: { pkg: string; present: () => boolean | Promise<boolean> }[],
  log: (msg: string) => void = () => {},
): Promise<string[]> {
  const missing: string[] = [];
  for (const w of wanted) if (!(await w.present())) missing.push(w.pkg);
  if (missing.length === 0) return [];
  if (!isRoot() || !(await commandExists('apt-get'))) return missing;
  log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    await execFileAsync('apt-get', ['install', '-y', '-q', ...missing], { env, maxBuffer: 64 << 20 });
  } catch {
    await execFileAsync('apt-get', ['update', '-q'], { env, maxBuffer: 64 << 20 });
    await execFileAsync('apt-get', ['install', '-y', '-q', ...missing], { env, maxBuffer: 64 << 20 });
  }
  const still: string[] = [];
  for (const w of wanted) if (missing.includes(w.pkg) && !(await w.present())) still.push(w.pkg);
  return still;
}

/** The Debian packages Retort's local stack and tests need. */
export const STACK_PACKAGES = [
  { pkg: 'postgresql', present: () => findPostgresBin() !== undefined },
  { pkg: 'redis-server', present: () => commandExists('redis-server') },
  {
    pkg: 'dataset-fashion-mnist',
    present: () => existsSync(path.join(FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz')),
  },
];

async function dockerEngineAnswers(): Promise<boolean> {
  if (!(await commandExists('docker'))) return false;
  try {
    await execFileAsync('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

async function startWithDocker(): Promise<Services> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const { RedisContainer } = await import('@testcontainers/redis');
  const [pgc, rc] = await Promise.all([
    new PostgreSqlContainer('postgres:15').withUsername('postgres').withPassword('postgres').start(),
    new RedisContainer('redis:7').start(),
  ]);
  return {
    databaseUrl: pgc.getConnectionUri(),
    redisUrl: rc.getConnectionUrl(),
    source: 'docker',
    stop: async () => {
      await Promise.all([pgc.stop(), rc.stop()]);
    },
  };
}

/**
 * A folder the `postgres` user can reach. When running as root in a home folder that is closed to
 * other users (/root), PostgreSQL's data goes under /var/tmp, keyed by the requested path.
 */
async function reachableDir(dir: string): Promise<string> {
  if (!isRoot()) return dir;
  let p = path.resolve(dir);
  while (!existsSync(p)) p = path.dirname(p);
  try {
    await execFileAsync('runuser', ['-u', 'postgres', '--', 'test', '-x', p]);
    return dir;
  } catch {
    const key = createHash('sha256').update(path.resolve(dir)).digest('hex').slice(0, 12);
    return path.join('/var/tmp', `retort-${key}`, path.basename(dir));
  }
}

/**
 * Provides Postgres and Redis: the ones named by DATABASE_URL and REDIS_URL when both are set;
 * else containers when a Docker engine answers (and `docker` is allowed); else the local binaries
 * with their data in `dir`, installing Debian's packages first when missing and running as root.
 */
export async function provideServices(opts: {
  dir: string;
  durable: boolean;
  docker?: boolean;
  log?: (msg: string) => void;
}): Promise<Services> {
  const log = opts.log ?? (() => {});
  const { DATABASE_URL, REDIS_URL } = process.env;
  if (DATABASE_URL && REDIS_URL) {
    return { databaseUrl: DATABASE_URL, redisUrl: REDIS_URL, source: 'env', stop: async () => {} };
  }
  if (opts.docker !== false && (await dockerEngineAnswers())) {
    log('starting PostgreSQL and Redis containers (testcontainers)');
    return startWithDocker();
  }
  const still = await ensureDebianPackages(STACK_PACKAGES.slice(0, 2), log);
  if (still.length > 0) {
    throw new Error(
      `missing ${still.join(', ')}: install them (apt-get install ${still.join(' ')}) or set DATABASE_URL and REDIS_URL`,
    );
  }
  const pgDir = await reachableDir(path.join(opts.dir, 'postgres'));
  const [pgPort, redisPort] = await Promise.all([freePort(), freePort()]);
  log(`starting PostgreSQL (data in ${pgDir}) and Redis (data in ${path.join(opts.dir, 'redis')})`);
  const started: LocalServer[] = [];
  try {
    started.push(await startLocalPostgres({ dir: pgDir, port: pgPort, durable: opts.durable }));
    started.push(
      await startLocalRedis({ dir: path.join(opts.dir, 'redis'), port: redisPort, durable: opts.durable }),
    );
  } catch (e) {
    await Promise.all(started.map((s) => s.stop()));
    throw e;
  }
  const [pgServer, redisServer] = started as [LocalServer, LocalServer];
  return {
    databaseUrl: pgServer.url,
    redisUrl: redisServer.url,
    source: 'local',
    stop: async () => {
      await Promise.all(started.map((s) => s.stop()));
    },
  };
}
