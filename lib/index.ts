/**
 * inp-former: INP-Former visual anomaly detection on a native libtorch core.
 */
export { InpFormer } from './model';
export type { CreateOptions, LoadOptions, ModelConfig, InferTensorResult, Tensor, Precision, RandomEncoderSpec } from './model';
export type { NetworkConfig, EncoderSpec, Thresholds, ArchitectureOptions } from './architecture';
export { runtime } from './runtime';
export type { RuntimeInfo } from './runtime';
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
} from './errors';
export { normalizeScore, normalizeMap } from './postprocess';
