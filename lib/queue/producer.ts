/**
 * The producer's side: InpFormerQueue adds fit, predict and evaluate jobs to a BullMQ queue and
 * hands back a QueuedJob to await, follow and cancel. It checks each job's options before the
 * job is added (a typo fails here, not on a worker an hour later), and turns a failed job back
 * into the typed error its worker met.
 */
import type * as BullMQ from 'bullmq';
import type IORedis from 'ioredis';
import { AbortError, InpFormerError } from '../errors';
import { callSafely } from '../callbacks';
import { ENQUEUE, EVALUATE_JOB, FIT_JOB, PREDICT_JOB, QUEUE, Resolved, Schema, resolve } from '../model/options';
import { CANCEL_MARK_SECONDS, RedisOptions, cancelChannel, cancelKey, connectionOf, failureOf, loadEngine } from './engine';
import {
  EvaluateJob, EvaluateJobResult, FitJob, FitJobResult, JobKind, JobProgress, PredictJob, PredictJobResult,
  WirePrediction, fromWirePrediction, nanFromJson, toWireInput,
} from './jobs';

export interface QueueOptions {
  /** 'redis://[user:password@]host:port[/db]' (rediss:// for TLS), or ioredis options */
  redis: string | RedisOptions;
  /** the queue's name (default 'inp-former'); workers of the same name take its jobs */
  name?: string;
  /** BullMQ's key prefix in Redis (default 'bull') */
  prefix?: string;
}

export interface EnqueueOptions<P = JobProgress> {
  /** cancels the job: removed while queued, aborted (within a fit step) while running */
  signal?: AbortSignal;
  /** the job's progress events; an exception thrown here is reported as a warning, never into the queue */
  onProgress?: (event: P) => void;
}

/** A job in the queue. */
export interface QueuedJob<R> {
  readonly id: string;
  readonly kind: JobKind;
  /** the job's result, or its worker's typed error (AbortError when cancelled) */
  result(): Promise<R>;
  /** cancel it: removed while queued, aborted while running; resolves once asked */
  cancel(): Promise<void>;
  /** 'waiting', 'active', 'completed', 'failed', 'prioritized', 'delayed', or 'unknown' once removed */
  state(): Promise<string>;
}

export class InpFormerQueue {
  readonly name: string;
  readonly prefix: string;
  #connection: RedisOptions;
  #queue: BullMQ.Queue;
  #events: BullMQ.QueueEvents;
  #ready: Promise<unknown>;
  #commands: IORedis | undefined;
  #Redis: typeof IORedis;
  #progress = new Map<string, (e: JobProgress) => void>();
  /** rejecters of this producer's unfinished jobs, for a cancel that removes a queued job */
  #pending = new Map<string, (err: Error) => void>();
  #closed = false;

  constructor(options: QueueOptions) {
    const o = resolve(QUEUE, options, 'new InpFormerQueue()');
    const { bullmq, Redis } = loadEngine();
    this.name = o.name;
    this.prefix = o.prefix;
    this.#Redis = Redis;
    this.#connection = connectionOf(o.redis);
    this.#queue = new bullmq.Queue(o.name, { connection: this.#connection, prefix: o.prefix });
    this.#events = new bullmq.QueueEvents(o.name, { connection: this.#connection, prefix: o.prefix });
    // BullMQ adds listeners per job awaited (waitUntilFinished): thousands in flight are normal here
    this.#queue.setMaxListeners(0);
    this.#events.setMaxListeners(0);
    this.#events.on('progress', ({ jobId, data }) => callSafely(this.#progress.get(jobId), data as JobProgress, 'an onProgress callback of inp-former/queue'));
    // connection errors are retried by ioredis; without a listener they would be thrown
    this.#queue.on('error', () => undefined);
    this.#events.on('error', () => undefined);
    this.#ready = Promise.all([this.#queue.waitUntilReady(), this.#events.waitUntilReady()]);
  }

  /** Train a model on a worker: it writes `job.model` under its models folder. */
  enqueueFit(job: FitJob, options?: EnqueueOptions): Promise<QueuedJob<FitJobResult>> {
    return this.#add('fit', FIT_JOB, job, options, (r) => r as FitJobResult);
  }

  /** Score images with a model of the models folder (loaded once per worker and kept). */
  enqueuePredict(job: PredictJob, options?: EnqueueOptions): Promise<QueuedJob<PredictJobResult>> {
    return this.#add('predict', PREDICT_JOB, job, options, (r) => {
      const w = r as { predictions: WirePrediction[]; worker: string };
      return { predictions: w.predictions.map(fromWirePrediction), worker: w.worker };
    }, (d) => ({ ...d, inputs: (d.inputs as Array<string | Uint8Array>).map(toWireInput) }));
  }

  /** Image and pixel metrics of a model on a labelled category. */
  enqueueEvaluate(job: EvaluateJob, options?: EnqueueOptions): Promise<QueuedJob<EvaluateJobResult>> {
    return this.#add('evaluate', EVALUATE_JOB, job, options, (r) => {
      const w = r as EvaluateJobResult;
      return { report: nanFromJson(w.report), worker: w.worker };
    });
  }

  /**
   * Cancel a job by id, from any producer: a queued job is removed; a running one is marked and
   * its worker told, which aborts it (a fit within a step) and fails it with AbortError.
   */
  async cancel(jobId: string): Promise<void> {
    this.#check();
    await this.#ready;
    if ((await this.#queue.remove(jobId)) === 1) {
      this.#pending.get(jobId)?.(new AbortError(`job ${jobId} was cancelled before it started`));
      return;
    }
    // running (locked), or already finished: mark it for a worker that takes it up again, and tell the running one
    this.#commands ??= new this.#Redis(this.#connection);
    await this.#commands.set(cancelKey(this.prefix, this.name, jobId), '1', 'EX', CANCEL_MARK_SECONDS);
    await this.#commands.publish(cancelChannel(this.prefix, this.name), jobId);
  }

  /** Jobs by state, for a health check: { waiting, active, completed, failed, ... }. */
  async counts(): Promise<Record<string, number>> {
    this.#check();
    return this.#queue.getJobCounts();
  }

  /** Close the connections; jobs stay in the queue. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([this.#events.close(), this.#queue.close(), this.#commands?.quit()]);
  }

  #check(): void {
    if (this.#closed) throw new InpFormerError('the queue was closed', 'ERR_INP_DISPOSED');
  }

  async #add<R>(
    kind: JobKind, schema: Schema, given: object, options: EnqueueOptions | undefined, decode: (raw: unknown) => R,
    wire: (data: Record<string, unknown>) => Record<string, unknown> = (d) => d,
  ): Promise<QueuedJob<R>> {
    this.#check();
    const where = `enqueue${kind[0].toUpperCase()}${kind.slice(1)}()`;
    resolve(schema, given, where);
    const { signal, onProgress } = resolve(ENQUEUE, options, where) as Resolved<typeof ENQUEUE>;
    if (signal?.aborted) throw new AbortError(`${where}: the signal was aborted before the job was added`);
    const { id, priority, attempts, ...data } = given as FitJob;
    await this.#ready;
    const job = await this.#queue.add(kind, wire(data as unknown as Record<string, unknown>), {
      jobId: id, priority, attempts: attempts ?? 1,
      // finished jobs stay for inspection, within bounds: results can hold anomaly maps
      removeOnComplete: { age: 24 * 3600, count: 1000 }, removeOnFail: { age: 7 * 24 * 3600, count: 1000 },
    });
    const jobId = job.id!;
    if (onProgress) this.#progress.set(jobId, onProgress as (e: JobProgress) => void);
    const onAbort = () => void this.cancel(jobId).catch((err) => process.emitWarning(`inp-former/queue: cancel of job ${jobId} failed: ${err.message}`));
    signal?.addEventListener('abort', onAbort, { once: true });
    const finished = new Promise<R>((res, rej) => {
      this.#pending.set(jobId, rej);
      job.waitUntilFinished(this.#events).then((raw) => res(decode(raw)), (err: Error) => rej(failureOf(err?.message, jobId)));
    }).finally(() => {
      this.#progress.delete(jobId);
      this.#pending.delete(jobId);
      signal?.removeEventListener('abort', onAbort);
    });
    finished.catch(() => undefined); // a job nobody awaits must not become an unhandled rejection
    return {
      id: jobId,
      kind,
      result: () => finished,
      cancel: () => this.cancel(jobId),
      state: async () => (await this.#queue.getJobState(jobId)) as string,
    };
  }
}
