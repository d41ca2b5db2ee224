/**
 * inp-former: INP-Former visual anomaly detection on a native libtorch core.
 */
export { InpFormer } from './model';
export type { CreateOptions, LoadOptions, ModelConfig, InferTensorResult, Tensor, Precision, RandomEncoderSpec } from './model';
export type { PredictOptions, Prediction } from './postprocess';
export type { FitOptions, FitProgress, FitSummary, TrainingRun } from './training';
export type { TensorBatch, FitSource } from './data';
export type { ImageInput, RawPixels } from './images';
export type { EvaluationReport, MetricSet } from './evaluation';
export type { NetworkConfig, EncoderSpec, Thresholds, ArchitectureOptions } from './architecture';
export { runtime } from './runtime';
export type { RuntimeInfo, CpuInfo } from './runtime';
export { doctor } from './doctor';
export type { DoctorReport } from './doctor';
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
} from './errors';
export { normalizeScore, normalizeMap } from './postprocess';
