import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { policyByteSource } from '@retort/uri-policy';
import * as tf from '@tensorflow/tfjs';
import onnxProto from 'onnx-proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTeacher } from './load.js';
import { buildPreset } from './presets.js';
import { saveModel } from './saved-model.js';

const FIXTURES = new URL('../../fixtures/', import.meta.url);
const noRuns = async () => {
  throw new Error('no run teachers here');
};

/** What a teacher's model.json may make the worker read: its own weights, once, and no more bytes than it declares. */
describe('reading a model: only what its manifest may name', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'retort-models-'));
  const src = policyByteSource({ dataRoots: [root], allowedHosts: [] });
  let modelJson: { weightsManifest: { paths: string[]; weights: unknown[] }[] } & Record<string, unknown>;
  let weights: Uint8Array;

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const student = { preset: 'mlp' as const, hidden: [4], activation: 'relu' as const, dropout: 0 };
    const saved = await saveModel(buildPreset(student, [2, 3], 3, 1));
    modelJson = JSON.parse(new TextDecoder().decode(saved.modelJson));
    weights = saved.weights;
  });

  /** Writes a model folder whose model.json is changed by `edit`; returns its URI. */
  const folder = (
    name: string,
    edit: (json: typeof modelJson) => void,
    extra: Record<string, Uint8Array> = {},
  ) => {
    const dir = path.join(root, name);
    mkdirSync(dir, { recursive: true });
    const json = structuredClone(modelJson);
    edit(json);
    writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
    writeFileSync(path.join(dir, 'weights.bin'), weights);
    for (const [f, bytes] of Object.entries(extra)) writeFileSync(path.join(dir, f), bytes);
    return `file://${dir}/model.json`;
  };
  const load = (uri: string) => loadTeacher({ uri, format: 'tfjs-layers' }, [2, 3], src, noRuns);

  it('loads a model whose manifest names its weights file once', async () => {
    const teacher = await load(folder('plain', () => {}));
    expect(teacher.numClasses).toBe(3);
    teacher.dispose();
  });

  it('refuses a weights file named more than once (a small file read as a huge model)', async () => {
    const uri = folder('repeated', (j) => {
      j.weightsManifest[0]!.paths = Array(1000).fill('weights.bin');
    });
    await expect(load(uri)).rejects.toMatchObject({
      code: 'RETORT_TEACHER_UNREADABLE',
      message: expect.stringMatching(/weights path 2 names a file the manifest already named/),
    });
  });

  it('refuses a file named twice in other spellings, and a manifest without sizes', async () => {
    const spelled = folder('spelled', (j) => {
      j.weightsManifest[0]!.paths = ['weights.bin', './weights.bin', '%77eights.bin'];
    });
    await expect(load(spelled)).rejects.toMatchObject({
      message: expect.stringMatching(/weights path 2 names a file the manifest already named/),
    });
    const shapeless = folder('shapeless', (j) => {
      (j.weightsManifest[0]!.weights[0] as { shape: unknown }).shape = ['x'];
    });
    await expect(load(shapeless)).rejects.toMatchObject({
      code: 'RETORT_TEACHER_UNREADABLE',
      message: expect.stringMatching(/has no name or no valid shape/),
    });
  });

  it('refuses weights paths of another scheme, host or folder, and queries', async () => {
    writeFileSync(path.join(root, 'secret.bin'), weights);
    for (const p of [
      '../secret.bin',
      '%2e%2e/secret.bin',
      'sub/../../secret.bin',
      `file://${root}/secret.bin`,
      '/etc/passwd',
      'http://169.254.169.254/latest/meta-data',
      '//example.com/w.bin',
      'weights.bin?x=1',
    ]) {
      const uri = folder('elsewhere', (j) => {
        j.weightsManifest[0]!.paths = [p];
      });
      await expect(load(uri), p).rejects.toMatchObject({
        code: 'RETORT_TEACHER_UNREADABLE',
        message: expect.stringMatching(/weights path 1 is not a file beside model.json/),
      });
    }
    // A subfolder is beside enough.
    const uri = folder('nested', (j) => {
      j.weightsManifest[0]!.paths = ['sub/weights.bin'];
    });
    mkdirSync(path.join(root, 'nested', 'sub'), { recursive: true });
    writeFileSync(path.join(root, 'nested', 'sub', 'weights.bin'), weights);
    (await load(uri)).dispose();
  });

  it('reads no more than the manifest declares', async () => {
    const uri = folder(
      'padded',
      (j) => {
        j.weightsManifest[0]!.paths = ['big.bin'];
      },
      { 'big.bin': new Uint8Array(weights.byteLength + 4096) },
    );
    await expect(load(uri)).rejects.toMatchObject({
      code: 'RETORT_TEACHER_UNREADABLE',
      message: expect.stringMatching(new RegExp(`more than the ${weights.byteLength} this server reads`)),
    });
  });

  it('quotes nothing of a model.json that is not JSON', async () => {
    const dir = path.join(root, 'broken');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'model.json'), '{"secret": "s3cr3t-value", oops');
    const failure = await load(`file://${dir}/model.json`).catch((e: Error) => e.message);
    expect(failure).toMatch(/model.json is not valid JSON/);
    expect(failure).not.toMatch(/s3cr3t/);
  });

  it('refuses an ONNX teacher with external data in a Constant node too', async () => {
    const { onnx } = onnxProto;
    const model = onnx.ModelProto.decode(readFileSync(new URL('fmnist-mlp-teacher.onnx', FIXTURES)));
    const tensor = onnx.TensorProto.create({
      name: 'c',
      dims: [1],
      dataType: 1,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [onnx.StringStringEntryProto.create({ key: 'location', value: '/etc/passwd' })],
    });
    model.graph!.node!.push(
      onnx.NodeProto.create({
        opType: 'Constant',
        output: ['c_out'],
        attribute: [onnx.AttributeProto.create({ name: 'value', t: tensor, type: 4 })],
      }),
    );
    const file = path.join(root, 'external-constant.onnx');
    writeFileSync(file, onnx.ModelProto.encode(model).finish());
    await expect(
      loadTeacher({ uri: `file://${file}`, format: 'onnx' }, [28, 28, 1], src, noRuns),
    ).rejects.toMatchObject({ message: expect.stringMatching(/tensor "c" in an external data file/) });
  });

  it('refuses an ONNX teacher whose tensors live in an external file', async () => {
    const { onnx } = onnxProto;
    const model = onnx.ModelProto.decode(readFileSync(new URL('fmnist-mlp-teacher.onnx', FIXTURES)));
    const t = model.graph!.initializer![0]!;
    t.rawData = new Uint8Array(0);
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.externalData = [onnx.StringStringEntryProto.create({ key: 'location', value: 'weights.data' })];
    const file = path.join(root, 'external.onnx');
    writeFileSync(file, onnx.ModelProto.encode(model).finish());
    await expect(
      loadTeacher({ uri: `file://${file}`, format: 'onnx' }, [28, 28, 1], src, noRuns),
    ).rejects.toMatchObject({
      code: 'RETORT_TEACHER_UNREADABLE',
      message: expect.stringMatching(/in an external data file, which Retort does not read/),
    });
  });
});
