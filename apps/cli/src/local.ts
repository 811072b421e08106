import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isRetortError, parseSpec } from '@retort/spec';
import { initBackend, type SavedModel, train, WEIGHTS_FILE } from '@retort/trainer';
import { policyByteSource } from '@retort/uri-policy';

/**
 * Local mode: the same trainer the workers run, on this machine, with no services. A run writes
 * into <out>/<run id>/: spec.json, metrics.jsonl, checkpoints/, model.json + weights.bin and
 * summary.json. A `{ "run": id }` teacher is read from <out>/<id>/.
 */
export async function runLocal(
  specFile: string,
  opts: { out: string; dataRoots: string[]; quiet?: boolean },
): Promise<string> {
  const spec = parseSpec(JSON.parse(readFileSync(specFile, 'utf8')));
  const id = randomUUID();
  const dir = path.join(opts.out, id);
  mkdirSync(path.join(dir, 'checkpoints'), { recursive: true });
  writeFileSync(path.join(dir, 'spec.json'), JSON.stringify(spec, null, 2));
  const log = (m: string) => opts.quiet || console.error(`[${spec.name}] ${m}`);
  const backend = await initBackend();
  log(`run ${id} on ${backend.name} (${backend.device}); output in ${dir}`);
  let lastLog = 0;
  let canceled = false;
  process.once('SIGINT', () => {
    canceled = true;
  });
  const outcome = await train(
    spec,
    {
      source: policyByteSource({ dataRoots: [...opts.dataRoots, path.resolve(opts.out)], allowedHosts: [] }),
      loadRunModel: async (runId): Promise<SavedModel> => {
        const from = path.join(opts.out, runId);
        if (!existsSync(path.join(from, 'model.json')))
          throw new Error(`no local run ${runId} with a model in ${opts.out}`);
        return {
          modelJson: readFileSync(path.join(from, 'model.json')),
          weights: readFileSync(path.join(from, WEIGHTS_FILE)),
        };
      },
      onMetrics: (points) =>
        appendFileSync(path.join(dir, 'metrics.jsonl'), points.map((p) => `${JSON.stringify(p)}\n`).join('')),
      onProgress: (p) => {
        if (Date.now() - lastLog > 5000) {
          lastLog = Date.now();
          log(`epoch ${p.epoch + 1} step ${p.step}/${p.totalSteps}`);
        }
      },
      onCheckpoint: async (c) =>
        writeFileSync(path.join(dir, 'checkpoints', `step-${c.position.step}.ckpt`), c.bytes),
      shouldStop: () => (canceled ? 'cancel' : null),
      teacherCache: {
        load: async (key) => {
          const file = path.join(opts.out, 'teacher-cache', `${key}.bin`);
          return existsSync(file) ? readFileSync(file) : null;
        },
        store: async (key, bytes) => {
          mkdirSync(path.join(opts.out, 'teacher-cache'), { recursive: true });
          writeFileSync(path.join(opts.out, 'teacher-cache', `${key}.bin`), bytes);
        },
      },
      log,
    },
    backend,
  );
  if (outcome.status !== 'succeeded') throw new Error(`${outcome.status} at step ${outcome.position.step}`);
  writeFileSync(path.join(dir, 'model.json'), outcome.student.modelJson);
  writeFileSync(path.join(dir, WEIGHTS_FILE), outcome.student.weights);
  writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(outcome.summary, null, 2));
  return id;
}

export function describeError(e: unknown): string {
  if (isRetortError(e))
    return `${e.code}: ${e.message}${e.details?.length ? `\n${e.details.map((d) => `  ${d.path}: ${d.message}`).join('\n')}` : ''}`;
  return e instanceof Error ? e.message : String(e);
}
