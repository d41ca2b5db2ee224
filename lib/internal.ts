/**
 * The one internal entry point, for the package's own tests, benchmarks and examples: the file
 * readers and writers, the image decoder, metrics and the native binding. Not public API:
 * `require('inp-former/internal')` may change in any release.
 */
export { unpickle, PyObject } from './checkpoint/pickle';
export { readCheckpointFile, collectModuleTensors } from './checkpoint/reader';
export { writeTorchFile, statePickleOf } from './checkpoint/writer';
export { ZipArchive } from './checkpoint/zip';
export { decodeImage, listImages } from './data/images';
export { DEFAULT_MAX_IMAGE_PIXELS } from './model/options';
export { rng } from './random';
export * as metrics from './results/metrics';
export { native } from './native/native';
export { fromNativeError } from './errors';
export { cacheDir } from './weights';
export { TINY_ENCODER } from './cli';
export { connectionOf, failureOf, failureText } from './queue/engine';
