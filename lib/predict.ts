/**
 * Prediction helpers: micro-batching of concurrent requests, and mapping an anomaly map from
 * the model's crop back onto the input image.
 */
import { InvalidArgumentError } from './errors';

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

/**
 * The crop's map back on the input image: the crop covers [top, top + crop) of the
 * resize x resize image, which stretches to height x width. Outside the crop the nearest crop
 * value is used (replicate padding); sampling is bilinear (align_corners=False).
 */
export function mapToInput(map: Float32Array, crop: number, resize: number, height: number, width: number): Float32Array {
  const top = Math.round((resize - crop) / 2);
  const out = new Float32Array(height * width);
  const sample = (v: number) => Math.min(crop - 1, Math.max(0, v - top));
  for (let y = 0; y < height; y++) {
    const sy = sample(((y + 0.5) * resize) / height - 0.5);
    const y0 = Math.floor(sy);
    const y1 = Math.min(crop - 1, y0 + 1);
    const fy = sy - y0;
    for (let x = 0; x < width; x++) {
      const sx = sample(((x + 0.5) * resize) / width - 0.5);
      const x0 = Math.floor(sx);
      const x1 = Math.min(crop - 1, x0 + 1);
      const fx = sx - x0;
      const a = map[y0 * crop + x0] * (1 - fx) + map[y0 * crop + x1] * fx;
      const b = map[y1 * crop + x0] * (1 - fx) + map[y1 * crop + x1] * fx;
      out[y * width + x] = a * (1 - fy) + b * fy;
    }
  }
  return out;
}

/** Nearest-neighbour resize then centre crop: what the image transform does to a mask. */
export function maskToCrop(mask: Uint8Array, height: number, width: number, resize: number, crop: number): Uint8Array {
  const top = Math.round((resize - crop) / 2);
  const out = new Uint8Array(crop * crop);
  for (let y = 0; y < crop; y++) {
    const sy = Math.min(height - 1, Math.floor(((y + top) * height) / resize));
    for (let x = 0; x < crop; x++) {
      const sx = Math.min(width - 1, Math.floor(((x + top) * width) / resize));
      out[y * crop + x] = mask[sy * width + sx] ? 1 : 0;
    }
  }
  return out;
}
