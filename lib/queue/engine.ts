/**
 * What the queue needs of BullMQ and Redis, in one place: loading them (optional peer
 * dependencies: only users of inp-former/queue install them), the connection options, the
 * cancel channel, and how a typed error crosses a job's boundary as text and comes back typed.
 */
import type * as BullMQ from 'bullmq';
import type IORedis from 'ioredis';
import { InpFormerError, JobFailedError, errorOfCode } from '../errors';

export type Engine = typeof BullMQ;

/** bullmq, or a typed error that says what to install. */
export function loadEngine(): { bullmq: Engine; Redis: typeof IORedis } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- optional peer dependencies, loaded on first use
    return { bullmq: require('bullmq'), Redis: require('ioredis').default ?? require('ioredis') };
  } catch (err) {
    throw new InpFormerError('inp-former/queue needs the bullmq and ioredis packages: npm install bullmq ioredis', 'ERR_INP_QUEUE_DEPENDENCY', { cause: err });
  }
}

export interface RedisOptions {
  host?: string;
  port?: number;
  username?: string;
  password?: string;
  db?: number;
  tls?: Record<string, unknown>;
  [key: string]: unknown;
}

/**
 * ioredis options from a URL or options. `maxRetriesPerRequest: null` is what BullMQ's workers
 * require (a blocked worker waits for Redis to come back instead of failing its commands).
 */
export function connectionOf(redis: string | Record<string, unknown>): RedisOptions {
  if (typeof redis !== 'string') return { maxRetriesPerRequest: null, ...redis };
  const u = new URL(redis);
  const db = u.pathname.replace(/^\//, '');
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db ? { db: Number(db) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
  };
}

/** The Redis pub/sub channel on which producers ask workers to cancel a running job. */
export const cancelChannel = (prefix: string, queue: string) => `${prefix}:${queue}:inp-former:cancel`;
/** The key that marks a job cancelled, for a worker that takes it up later (queued, or handed on). */
export const cancelKey = (prefix: string, queue: string, jobId: string) => `${prefix}:${queue}:inp-former:cancelled:${jobId}`;
/** How long a cancel mark is kept: longer than any job waits in a queue. */
export const CANCEL_MARK_SECONDS = 7 * 24 * 3600;

/**
 * A job's failure as one line of text (BullMQ keeps only an error's message): readable in a
 * dashboard, and parsed back by the producer into the same class.
 *   [ERR_INP_IMAGE file="/data/x.png"] /data/x.png: not an image
 */
export function failureText(err: unknown): string {
  if (err instanceof InpFormerError) {
    const file = (err as { file?: unknown }).file;
    return `[${err.code}${typeof file === 'string' ? ` file=${JSON.stringify(file)}` : ''}] ${err.message}`;
  }
  return (err as Error)?.message ?? String(err);
}

const FAILURE = /^\[(ERR_[A-Z_]+)(?: file=("(?:[^"\\]|\\.)*"))?\] ([\s\S]*)$/;

/** The typed error of a failed job, from its failure text. */
export function failureOf(reason: string | undefined, jobId: string): InpFormerError {
  const m = FAILURE.exec(reason ?? '');
  if (m) {
    const typed = errorOfCode(m[1], m[3], m[2] ? (JSON.parse(m[2]) as string) : undefined);
    if (typed) return Object.assign(typed, { jobId });
  }
  return new JobFailedError(`job ${jobId} failed: ${reason ?? 'no reason recorded'}`, jobId);
}
