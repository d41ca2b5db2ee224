/**
 * inp-former: INP-Former visual anomaly detection on a native libtorch core.
 * Start at {@link InpFormer}: `create` or `load` a model, then `fit`, `predict`, `evaluate`.
 *
 * @packageDocumentation
 * @module inp-former
 */
export { InpFormer } from './model/model';
export type { TensorToSave } from './checkpoint/writer';
export type { CreateOptions, LoadOptions, LoadProgress, ModelConfig, InferTensorResult, Tensor, Precision, RandomEncoderSpec } from './model/model';
export type { Device } from './model/options';
export type { ErrorCode } from './errors';
export type { PredictOptions, Prediction, LabelledSetOptions, EvaluateOptions, PredictEachOptions, PredictEachResult } from './results/postprocess';
export type { FitOptions, FitProgress, FitSummary, TrainingRun } from './model/training';
export type { TensorBatch, FitSource } from './data/batches';
export type { FolderDataset, LabelledSource, CategorySet } from './data/dataset';
export type { ImageInput, RawPixels } from './data/images';
export type { EvaluationReport, CategoryReport, MetricSet } from './results/report';
export type { NetworkConfig, EncoderSpec, Thresholds, ArchitectureOptions } from './model/architecture';
export { runtime } from './native/runtime';
export type { RuntimeInfo, CpuInfo } from './native/runtime';
export { doctor } from './native/doctor';
export { downloadWeights, cacheDir as weightsCacheDir, DINOV2_WEIGHTS } from './weights';
export type { DownloadProgress } from './weights';
export type { DoctorReport } from './native/doctor';
export {
  InpFormerError,
  NativeLoadError,
  CheckpointError,
  InvalidArgumentError,
  ImageDecodeError,
  BusyError,
  AbortError,
  DisposedError,
  DeviceError,
  TrainingDivergedError,
  FileWriteError,
  OutOfMemoryError,
  NativeError,
  JobFailedError,
} from './errors';
export { normalizeScore, normalizeMap } from './results/postprocess';
