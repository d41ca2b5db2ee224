/**
 * inp-former/queue: training and inspection jobs on a Redis-backed BullMQ queue.
 * Producers add jobs with InpFormerQueue; workers (`startWorker`, or `inp-former worker`) run
 * them with the public API, share one models folder, and take over each other's fits when one
 * dies. Needs the optional peer dependencies bullmq and ioredis. See docs/scale-out.md.
 *
 * @packageDocumentation
 * @module inp-former/queue
 */
export { InpFormerQueue } from './producer';
export type { QueueOptions, EnqueueOptions, QueuedJob } from './producer';
export { InpFormerWorker, startWorker } from './worker';
export type { WorkerOptions, WorkerEvent } from './worker';
export type {
  JobKind, JobOptions, FitJob, PredictJob, EvaluateJob, QueuedFitOptions, FitJobResult, PredictJobResult, EvaluateJobResult,
  QueuedPrediction, JobProgress,
} from './jobs';
export type { RedisOptions } from './engine';
export { JobFailedError } from '../errors';
