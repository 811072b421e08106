import type { Db } from '../client.js';
import type { Worker } from '../generated/prisma/client.js';

export interface WorkerInfo {
  id: string;
  pool: string;
  backend: string;
  device: string;
  hostname: string;
  pid: number;
}

export async function registerWorker(db: Db, w: WorkerInfo): Promise<void> {
  await db.prisma.worker.upsert({
    where: { id: w.id },
    create: { ...w },
    update: { ...w, heartbeatAt: new Date(), stoppedAt: null },
  });
}

/** Marks the worker alive and records what it is running (null when idle). */
export async function heartbeat(db: Db, id: string, currentRunId: string | null): Promise<void> {
  await db.prisma.worker.update({ where: { id }, data: { heartbeatAt: new Date(), currentRunId } });
}

export async function markWorkerStopped(db: Db, id: string): Promise<void> {
  await db.prisma.worker.updateMany({ where: { id }, data: { stoppedAt: new Date(), currentRunId: null } });
}

/** Workers that have heartbeaten within `staleAfterMs` and not stopped. */
export async function listLiveWorkers(db: Db, staleAfterMs: number): Promise<Worker[]> {
  return db.prisma.worker.findMany({
    where: { stoppedAt: null, heartbeatAt: { gt: new Date(Date.now() - staleAfterMs) } },
    orderBy: { startedAt: 'asc' },
  });
}
