export type { ByteSource } from '@retort/spec';
export { type BackendInfo, type BackendName, initBackend } from './backend.js';
export {
  type CheckpointData,
  decodeCheckpoint,
  restoreCheckpoint,
  type TrainingPosition,
} from './checkpoint.js';
export { parseIdx } from './data/idx.js';
export { rkdLoss } from './losses/feature.js';
export { loadLayersModelFrom, type SavedModel, saveModel, WEIGHTS_FILE } from './models/saved-model.js';
export {
  type MetricPoint,
  type Progress,
  type StopRequest,
  type TrainerHooks,
  type TrainOptions,
  type TrainOutcome,
  train,
} from './train.js';
export { installWasmConvGradients } from './wasm/conv-gradients.js';
export { installWasmTransposedMatMul } from './wasm/transposed-matmul.js';
