/**
 * Typed errors. Every error this package throws or rejects with is an InpFormerError with a
 * stable `code`; native errors arrive with the same codes (cpp/core/errors.h).
 */

/** Every code an InpFormerError can carry (a literal union: a misspelt code does not compile). */
export type ErrorCode =
  | 'ERR_INP' | 'ERR_INP_NATIVE_LOAD' | 'ERR_INP_CHECKPOINT' | 'ERR_INP_INVALID_ARGUMENT' | 'ERR_INP_IMAGE'
  | 'ERR_INP_BUSY' | 'ERR_INP_ABORTED' | 'ERR_INP_DISPOSED' | 'ERR_INP_DEVICE' | 'ERR_INP_DIVERGED'
  | 'ERR_INP_WRITE' | 'ERR_INP_OUT_OF_MEMORY' | 'ERR_INP_TORCH' | 'ERR_INP_NATIVE' | 'ERR_INP_DOWNLOAD'
  | 'ERR_INP_JOB_FAILED' | 'ERR_INP_QUEUE_DEPENDENCY';

export class InpFormerError extends Error {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'ERR_INP', options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The native addon or libtorch could not be loaded; `message` says what to install. */
export class NativeLoadError extends InpFormerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_INP_NATIVE_LOAD', options);
  }
}

/** A checkpoint is unreadable, truncated, of an unknown layout, or does not fit the network. */
export class CheckpointError extends InpFormerError {
  readonly file?: string;
  constructor(message: string, file?: string, options?: { cause?: unknown }) {
    super(file ? `${file}: ${message}` : message, 'ERR_INP_CHECKPOINT', options);
    this.file = file;
  }
}

/** An option, tensor shape or input value is invalid. */
export class InvalidArgumentError extends InpFormerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_INP_INVALID_ARGUMENT', options);
  }
}

/** An image could not be read or decoded; `file` names it. */
export class ImageDecodeError extends InpFormerError {
  readonly file: string;
  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(`${file}: ${problem}`, 'ERR_INP_IMAGE', options);
    this.file = file;
  }
}

/** The model is busy with a job that excludes this one (e.g. predict during fit). */
export class BusyError extends InpFormerError {
  constructor(message: string) {
    super(message, 'ERR_INP_BUSY');
  }
}

/** The operation was cancelled through its AbortSignal. */
export class AbortError extends InpFormerError {
  constructor(message = 'the operation was aborted') {
    super(message, 'ERR_INP_ABORTED');
  }
}

/** The model was disposed. */
export class DisposedError extends InpFormerError {
  constructor(message = 'the model was disposed') {
    super(message, 'ERR_INP_DISPOSED');
  }
}

/** The requested device is not available in this libtorch build. */
export class DeviceError extends InpFormerError {
  constructor(message: string) {
    super(message, 'ERR_INP_DEVICE');
  }
}

/** Training met a non-finite loss or gradient; the model keeps the weights of the last finite step. */
export class TrainingDivergedError extends InpFormerError {
  constructor(message: string) {
    super(message, 'ERR_INP_DIVERGED');
  }
}

/** An output file (a heatmap) could not be written; `file` names it, never the temp file. */
export class FileWriteError extends InpFormerError {
  readonly file: string;
  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(`${file}: ${problem}`, 'ERR_INP_WRITE', options);
    this.file = file;
  }
}

/** Memory ran out in the native core (a batch or an image size too large for this machine). */
export class OutOfMemoryError extends InpFormerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_INP_OUT_OF_MEMORY', options);
  }
}

/**
 * A failure inside libtorch or the native core that no input check foresaw: a bug to report
 * (with `code` ERR_INP_TORCH for libtorch's own errors, ERR_INP_NATIVE otherwise).
 */
export class NativeError extends InpFormerError {
  constructor(message: string, code: 'ERR_INP_TORCH' | 'ERR_INP_NATIVE', options?: { cause?: unknown }) {
    super(message, code, options);
  }
}

/**
 * A queued job (inp-former/queue) failed for a reason that is not one of this package's typed
 * errors: its worker crashed, it stalled more often than allowed, or the job was removed.
 * `jobId` names the job; failures with a typed cause come back as that class instead.
 */
export class JobFailedError extends InpFormerError {
  readonly jobId: string;
  constructor(message: string, jobId: string, options?: { cause?: unknown }) {
    super(message, 'ERR_INP_JOB_FAILED', options);
    this.jobId = jobId;
  }
}

/** The problem part of a "file: problem" message. */
const problemOf = (message: string, file: string) => (message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message);

/**
 * The class of each code an error can cross a boundary with (the native layer, a queue job),
 * rebuilt from its message and, for the classes that name one, its file. Codes not here are not
 * expected to cross (ERR_INP_NATIVE_LOAD, ERR_INP_NATIVE).
 */
const BY_CODE: Record<string, (message: string, file?: string, cause?: unknown) => InpFormerError | undefined> = {
  ERR_INP_CHECKPOINT: (m, file) => (file ? new CheckpointError(problemOf(m, file), file) : new CheckpointError(m)),
  ERR_INP_INVALID_ARGUMENT: (m) => new InvalidArgumentError(m),
  ERR_INP_IMAGE: (m, file) => (file ? new ImageDecodeError(file, problemOf(m, file)) : undefined),
  ERR_INP_BUSY: (m) => new BusyError(m),
  ERR_INP_ABORTED: (m) => new AbortError(m),
  ERR_INP_DISPOSED: (m) => new DisposedError(m),
  ERR_INP_DEVICE: (m) => new DeviceError(m),
  ERR_INP_DIVERGED: (m) => new TrainingDivergedError(m),
  ERR_INP_OUT_OF_MEMORY: (m, _file, cause) => new OutOfMemoryError(m, { cause }),
  ERR_INP_WRITE: (m, file) => (file ? new FileWriteError(file, problemOf(m, file)) : undefined),
  ERR_INP_TORCH: (m, _file, cause) => new NativeError(m, 'ERR_INP_TORCH', { cause }),
};

/** The typed error of `code` with `message` (and `file`, for the classes that name one), or undefined when there is none. */
export function errorOfCode(code: string | undefined, message: string, file?: string, cause?: unknown): InpFormerError | undefined {
  const make = code === undefined ? undefined : BY_CODE[code];
  return make?.(message, file, cause);
}

/** Turn an error from the native layer into its typed class; nothing comes back as the bare base class. */
export function fromNativeError(err: unknown): InpFormerError {
  if (err instanceof InpFormerError) return err;
  const e = err as { message?: string; code?: string };
  const message = e?.message ?? String(err);
  if (e?.code === 'ERR_INP_OUT_OF_MEMORY') return new OutOfMemoryError(`${message} (try a smaller batch, image size or model)`, { cause: err });
  // not from the native layer at all (a bug in lib/): keep its stack as the cause
  return errorOfCode(e?.code, message, undefined, err) ?? new NativeError(message, 'ERR_INP_NATIVE', { cause: err });
}
