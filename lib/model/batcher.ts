/**
 * Micro-batching of concurrent predict() requests.
 */
import { InvalidArgumentError } from '../errors';

/**
 * Collects single-image requests that arrive close together and runs them as one batch: a busy
 * service gets batched throughput instead of a queue of batch-1 runs. One batch runs at a time
 * (the model's native thread is serial anyway); requests that arrive meanwhile form the next
 * batch, which starts as soon as the running one ends. An idle model waits at most `waitMs` for
 * company; a full batch starts at once.
 */
export class MicroBatcher<Result> {
  #queue: { data: Float32Array; resolve: (r: Result) => void; reject: (e: unknown) => void }[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  constructor(
    private readonly runBatch: (data: Float32Array, count: number) => Promise<Result[]>,
    private readonly perItem: number,
    private readonly maxBatch = 8,
    private readonly waitMs = 2,
  ) {}

  submit(data: Float32Array): Promise<Result> {
    if (data.length !== this.perItem) return Promise.reject(new InvalidArgumentError('wrong input size for this model'));
    return new Promise<Result>((resolve, reject) => {
      this.#queue.push({ data, resolve, reject });
      if (this.#running) return; // the next batch starts when the running one ends
      if (this.#queue.length >= this.maxBatch) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.waitMs);
    });
  }

  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#running) return;
    const batch = this.#queue.splice(0, this.maxBatch);
    if (batch.length === 0) return;
    this.#running = true;
    const data = new Float32Array(batch.length * this.perItem);
    batch.forEach((b, i) => data.set(b.data, i * this.perItem));
    this.runBatch(data, batch.length)
      .then(
        (results) => batch.forEach((b, i) => b.resolve(results[i])),
        (err) => batch.forEach((b) => b.reject(err)),
      )
      .finally(() => {
        this.#running = false;
        if (this.#queue.length) this.#flush();
      });
  }
}
