/**
 * The worker's side: a BullMQ worker that runs fit, predict and evaluate jobs with the public
 * API. Fits checkpoint every N epochs into the models folder, under the job's id; when a worker
 * dies, BullMQ hands its job to another after the lock expires, which resumes from the last
 * checkpoint, so the weights equal an uninterrupted run's. Predict and evaluate use a per-worker
 * cache of loaded models. Cancels arrive on a Redis channel and abort the running job.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as BullMQ from 'bullmq';
import type IORedis from 'ioredis';
import { AbortError, FileWriteError, InpFormerError, InvalidArgumentError } from '../errors';
import { ensureDir } from '../files';
import { InpFormer } from '../model/model';
import { Device, LoadOptions, Resolved, WORKER, resolve } from '../model/options';
import type { FitProgress } from '../model/training';
import { RedisOptions, cancelChannel, cancelKey, connectionOf, failureText, loadEngine } from './engine';
import { EvaluateJob, FitJob, JobKind, JobProgress, WirePredictJob, fromWireInput, toWirePrediction } from './jobs';
import { ModelCache } from './model-cache';

export interface WorkerOptions {
  /** 'redis://host:port[/db]' or ioredis options; the producers' */
  redis: string | RedisOptions;
  /** the queue's name (default 'inp-former') */
  name?: string;
  /** BullMQ's key prefix (default 'bull') */
  prefix?: string;
  /** the folder of models and fit checkpoints, shared by every worker (a network file system for several machines) */
  models: string;
  /** jobs this worker runs at once (default 1) */
  concurrency?: number;
  /** models kept loaded for predict and evaluate jobs (default 4) */
  cacheSize?: number;
  /** intra-op threads of each model (default: the model's own default) */
  threads?: number;
  /** the device of every model this worker runs (default: the job's, else 'cpu'): 'cuda' for a GPU worker */
  device?: Device;
  /** a job's lock (default 30 s): a dead worker's job is handed on after about this long */
  lockDurationMs?: number;
  /** how often this worker looks for jobs of dead workers (default 30 s) */
  stalledIntervalMs?: number;
  /** times a job may lose its worker before it fails (default 1) */
  maxStalledCount?: number;
  /** each job's start, progress and end, for logs; exceptions thrown here are ignored */
  onEvent?: (event: WorkerEvent) => void;
}

export type WorkerEvent =
  | { type: 'started'; jobId: string; kind: JobKind; attempt: number; resumeFromStep: number | null }
  | { type: 'progress'; jobId: string; progress: FitProgress }
  | { type: 'completed'; jobId: string; kind: JobKind; seconds: number }
  | { type: 'failed'; jobId: string; kind: JobKind; seconds: number; error: string }
  | { type: 'error'; error: string };

/** Jobs' fit checkpoints live here, under the models folder, one folder a job id. */
const JOBS_FOLDER = '.inp-former-jobs';
/** Step progress reaches Redis at most this often; epochs always. */
const PROGRESS_INTERVAL_MS = 1000;

const exists = (file: string) => fs.access(file).then(() => true, () => false);

export class InpFormerWorker {
  /** `host:pid`, as results and progress name it */
  readonly id: string;
  #o: Resolved<typeof WORKER>;
  #worker!: BullMQ.Worker;
  #commands!: IORedis;
  #subscriber!: IORedis;
  #cache: ModelCache;
  #closing: Promise<void> | undefined;

  private constructor(o: Resolved<typeof WORKER>) {
    this.#o = o;
    this.id = `${os.hostname()}:${process.pid}`;
    this.#cache = new ModelCache(o.cacheSize, this.#runtime({}) as LoadOptions);
  }

  /** Start a worker; it takes jobs until close(). */
  static async start(options: WorkerOptions): Promise<InpFormerWorker> {
    const o = resolve(WORKER, options, 'startWorker()');
    const st = await fs.stat(o.models).catch(() => undefined);
    if (!st?.isDirectory()) throw new InvalidArgumentError(`${o.models}: the models folder does not exist`);
    const w = new InpFormerWorker(o);
    await w.#connect();
    return w;
  }

  async #connect(): Promise<void> {
    const { bullmq, Redis } = loadEngine();
    const o = this.#o;
    const connection = connectionOf(o.redis);
    this.#commands = new Redis(connection);
    this.#subscriber = new Redis(connection);
    this.#commands.on('error', (err) => this.#emit({ type: 'error', error: err.message }));
    this.#subscriber.on('error', (err) => this.#emit({ type: 'error', error: err.message }));
    await this.#subscriber.subscribe(cancelChannel(o.prefix, o.name));
    this.#subscriber.on('message', (_channel, jobId: string) => this.#worker?.cancelJob(jobId, 'cancelled by a producer'));
    this.#worker = new bullmq.Worker(o.name, (job, _token, signal) => this.#run(job, signal!), {
      connection, prefix: o.prefix, concurrency: o.concurrency, name: this.id,
      lockDuration: o.lockDurationMs, stalledInterval: o.stalledIntervalMs, maxStalledCount: o.maxStalledCount,
    });
    this.#worker.on('error', (err) => this.#emit({ type: 'error', error: err.message }));
    await this.#worker.waitUntilReady();
  }

  /**
   * Stop taking jobs and wait for the running ones, then close the connections and dispose the
   * models. `force`: do not wait; running jobs are handed to another worker once their lock expires.
   */
  close(force = false): Promise<void> {
    this.#closing ??= (async () => {
      await this.#worker.close(force);
      await Promise.all([this.#subscriber.quit(), this.#commands.quit()]).catch(() => undefined);
      await this.#cache.close();
    })();
    return this.#closing;
  }

  #emit(e: WorkerEvent): void {
    try {
      this.#o.onEvent?.(e);
    } catch {
      // a logger's failure is not the job's
    }
  }

  /** create()/load() options this worker imposes: its threads and device. */
  #runtime(job: Record<string, unknown>): Record<string, unknown> {
    const o = this.#o;
    return { ...job, ...(o.threads !== undefined && job.threads === undefined ? { threads: o.threads } : {}), ...(o.device ? { device: o.device } : {}) };
  }

  /** A model's path under the models folder (the name was checked by the producer; checked again: jobs come from Redis). */
  #modelPath(name: unknown): string {
    const root = path.resolve(this.#o.models);
    const file = typeof name === 'string' ? path.resolve(root, name) : '';
    if (!file.startsWith(root + path.sep)) throw new InvalidArgumentError(`model ${JSON.stringify(name)}: not a file name inside the models folder`);
    return file;
  }

  async #run(job: BullMQ.Job, signal: AbortSignal): Promise<unknown> {
    const kind = job.name as JobKind;
    const started = Date.now();
    try {
      if (await this.#commands.get(cancelKey(this.#o.prefix, this.#o.name, job.id!))) throw new AbortError(`job ${job.id} was cancelled`);
      let result: unknown;
      if (kind === 'fit') result = await this.#fit(job, signal);
      else if (kind === 'predict') result = await this.#predict(job, signal);
      else if (kind === 'evaluate') result = await this.#evaluate(job, signal);
      else throw new InvalidArgumentError(`job ${job.id}: unknown kind '${kind}' (fit, predict or evaluate)`);
      this.#emit({ type: 'completed', jobId: job.id!, kind, seconds: (Date.now() - started) / 1000 });
      return result;
    } catch (err) {
      const error = failureText(err);
      this.#emit({ type: 'failed', jobId: job.id!, kind, seconds: (Date.now() - started) / 1000, error });
      // our typed errors come from the job's input or a cancel: another try would meet them again
      if (err instanceof InpFormerError) throw new (loadEngine().bullmq.UnrecoverableError)(error);
      throw err;
    }
  }

  async #started(job: BullMQ.Job, resumeFromStep: number | null): Promise<void> {
    const attempt = job.attemptsStarted;
    this.#emit({ type: 'started', jobId: job.id!, kind: job.name as JobKind, attempt, resumeFromStep });
    await job.updateProgress({ type: 'started', worker: this.id, attempt, resumeFromStep } satisfies JobProgress);
  }

  async #fit(job: BullMQ.Job, signal: AbortSignal): Promise<unknown> {
    const spec = job.data as FitJob;
    const target = this.#modelPath(spec.model);
    const dir = path.join(this.#o.models, JOBS_FOLDER, encodeURIComponent(job.id!));
    const checkpoint = path.join(dir, 'checkpoint.pth');
    // a checkpoint of this job's id: an earlier attempt (a dead worker, a retry) got this far
    const resume = await exists(checkpoint);
    await ensureDir(dir, (m, cause) => new FileWriteError(checkpoint, m, { cause })); // fit writes the training state there first
    const model = await InpFormer.create(this.#runtime(spec.create as Record<string, unknown>));
    try {
      let firstStep: number | undefined;
      let lastSent = 0;
      const run = model.fit(spec.data, {
        ...spec.fit,
        checkpoint: { path: checkpoint, everyEpochs: spec.checkpointEveryEpochs ?? 1 },
        resumeFrom: resume ? checkpoint : undefined,
        signal,
        onWarning: (m) => void job.log(`warning: ${m}`).catch(() => undefined),
        onProgress: (e) => {
          if (firstStep === undefined) {
            firstStep = e.step;
            void this.#started(job, resume ? e.step - 1 : null).catch(() => undefined);
          }
          this.#emit({ type: 'progress', jobId: job.id!, progress: e });
          if (e.type === 'step' && Date.now() - lastSent < PROGRESS_INTERVAL_MS) return;
          lastSent = Date.now();
          void job.updateProgress({ ...e, worker: this.id } satisfies JobProgress).catch(() => undefined);
        },
      });
      const summary = await run;
      await model.save(target); // makes its folders; atomic, as every save
      await fs.rm(dir, { recursive: true, force: true });
      return { model: spec.model, summary, resumedFromStep: resume && firstStep !== undefined ? firstStep - 1 : null, worker: this.id };
    } catch (err) {
      // a cancelled fit will not be resumed; any other failure keeps its checkpoint for a retry
      if ((err as InpFormerError).code === 'ERR_INP_ABORTED') await fs.rm(dir, { recursive: true, force: true });
      throw err;
    } finally {
      await model.dispose();
    }
  }

  async #predict(job: BullMQ.Job, signal: AbortSignal): Promise<unknown> {
    const spec = job.data as WirePredictJob;
    return this.#withModel(job, signal, async (model) => {
      const predictions = await model.predict(spec.inputs.map(fromWireInput), { mapSize: spec.mapSize, signal });
      return { predictions: predictions.map((p) => toWirePrediction(p, spec.maps ?? false)), worker: this.id };
    });
  }

  async #evaluate(job: BullMQ.Job, signal: AbortSignal): Promise<unknown> {
    const spec = job.data as EvaluateJob;
    return this.#withModel(job, signal, async (model) => ({ report: await model.evaluate(spec.data, { signal }), worker: this.id }));
  }

  /** Run `use` with the job's model from the cache; a cancel before it starts fails the job at once. */
  async #withModel<T>(job: BullMQ.Job, signal: AbortSignal, use: (model: InpFormer) => Promise<T>): Promise<T> {
    await this.#started(job, null);
    const { model, release } = await this.#cache.acquire(this.#modelPath((job.data as { model: unknown }).model));
    try {
      if (signal.aborted) throw new AbortError(`job ${job.id} was cancelled`);
      return await use(model);
    } finally {
      await release();
    }
  }
}

/** Start a worker on a queue: `await startWorker({ redis, models })`, later `await worker.close()`. */
export function startWorker(options: WorkerOptions): Promise<InpFormerWorker> {
  return InpFormerWorker.start(options);
}
