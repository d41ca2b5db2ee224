/**
 * Training data: batches of preprocessed images produced ahead of the model (bounded prefetch:
 * decoding on the libuv pool through sharp, resize/crop/normalise on the addon's data thread),
 * or ready float32 batches supplied by the caller.
 */
import { ImageDecodeError, InvalidArgumentError } from '../errors';
import { ImageInput, RgbImage, decodeImage, isEncoded, listImages } from './images';
import { CategorySet, FolderDataset, folderTrainingImages, resolveCategories } from './dataset';
import { CATEGORY_SET, FOLDER_DATASET, datasetKind, resolve } from '../model/options';
import { native } from '../native/native';
import { permutation, rng } from '../random';

export interface TensorBatch {
  data: Float32Array;
  shape: [number, number, number, number];
}

export interface Batch extends TensorBatch {
  /** seconds the consumer waited for this batch after asking for it */
  waitSeconds: number;
  /** one per image, the same for the same image in every epoch (the encoder-feature cache's); none for caller-made batches */
  keys?: number[];
}

export interface BatchSource {
  /** batches per epoch, if known */
  stepsPerEpoch: number | undefined;
  epoch(epochIndex: number): AsyncGenerator<Batch>;
}

/** A folder, a Folder-style dataset (its normal training images), a category set (all their normal images), image inputs, or ready batches. */
export type FitSource = string | FolderDataset | CategorySet | ImageInput[] | Iterable<TensorBatch> | AsyncIterable<TensorBatch>;

export interface DataOptions {
  batchSize: number;
  shuffle: boolean;
  seed: number;
  imageSize: number;
  cropSize: number;
  maxImagePixels: number;
  skipBadImages: boolean;
  prefetchBatches: number;
  /** decodes in flight at once */
  decodeConcurrency: number;
  /** few-shot: this many images per category, each expanded into its 22 views */
  fewShot?: number;
  warn: (message: string) => void;
}

/** A batch [B, 3, H, W] checked: `what` names it in messages; with `patchSize`, H and W must be multiples of it. */
export function checkTensorBatch(b: unknown, what: string, patchSize?: number): TensorBatch {
  const batch = b as TensorBatch;
  if (!batch || !(batch.data instanceof Float32Array) || !Array.isArray(batch.shape))
    throw new InvalidArgumentError(`${what}: expected { data: Float32Array, shape: [B, 3, H, W] }`);
  const s = batch.shape;
  if (s.length !== 4 || s[1] !== 3 || !s.every((d) => Number.isInteger(d) && d > 0))
    throw new InvalidArgumentError(`${what}: shape must be [B, 3, H, W], got ${JSON.stringify(s)}`);
  if (patchSize && (s[2] % patchSize || s[3] % patchSize))
    throw new InvalidArgumentError(`${what}: H and W must be multiples of the patch size ${patchSize}, got ${s[2]}x${s[3]}`);
  if (batch.data.length !== s[0] * s[1] * s[2] * s[3])
    throw new InvalidArgumentError(`${what}: data has ${batch.data.length} values, shape ${JSON.stringify(s)} needs ${s[0] * s[1] * s[2] * s[3]}`);
  return batch;
}

class TensorBatchSource implements BatchSource {
  stepsPerEpoch: number | undefined;
  constructor(private readonly batches: Iterable<TensorBatch> | AsyncIterable<TensorBatch>) {
    if (Array.isArray(batches)) this.stepsPerEpoch = batches.length;
  }
  async *epoch(): AsyncGenerator<Batch> {
    let i = 0;
    const it = this.batches as AsyncIterable<TensorBatch>;
    for await (const b of it) {
      const t0 = performance.now();
      const batch = checkTensorBatch(b, `batch ${i++}`);
      yield { ...batch, waitSeconds: (performance.now() - t0) / 1000 };
    }
  }
}

class ImageBatchSource implements BatchSource {
  stepsPerEpoch: number;
  private readonly batchSize: number;
  constructor(private readonly items: ImageInput[], private readonly o: DataOptions) {
    const n = items.length;
    if (n < o.batchSize) {
      o.warn(`only ${n} image(s), fewer than one batch of ${o.batchSize}: training on batches of ${n}`);
      this.batchSize = n;
    } else {
      this.batchSize = o.batchSize;
    }
    this.stepsPerEpoch = Math.floor(n / this.batchSize); // the last short batch is dropped, as the reference does
  }

  private async decode(index: number): Promise<RgbImage | undefined> {
    try {
      return await decodeImage(this.items[index], index, this.o.maxImagePixels);
    } catch (err) {
      if (this.o.skipBadImages && err instanceof ImageDecodeError) {
        this.o.warn(`skipping ${err.message}`);
        return undefined;
      }
      throw err;
    }
  }

  private async makeBatch(indices: number[], limit: <T>(f: () => Promise<T>) => Promise<T>): Promise<(TensorBatch & { keys: number[] }) | undefined> {
    const decoded = await Promise.all(indices.map((i) => limit(() => this.decode(i))));
    const keys = indices.filter((_, j) => decoded[j] !== undefined);
    const images = decoded.filter((x): x is RgbImage => x !== undefined);
    if (images.length === 0) return undefined;
    const data = await native().preprocess(images, this.o.imageSize, this.o.cropSize);
    return { data, shape: [images.length, 3, this.o.cropSize, this.o.cropSize], keys };
  }

  async *epoch(epochIndex: number): AsyncGenerator<Batch> {
    const n = this.items.length;
    const order = this.o.shuffle ? permutation(n, rng(this.o.seed * 1000003 + epochIndex)) : [...Array(n).keys()];
    const batches: number[][] = [];
    for (let s = 0; s < this.stepsPerEpoch; s++) batches.push(order.slice(s * this.batchSize, (s + 1) * this.batchSize));
    const limit = concurrencyLimit(this.o.decodeConcurrency);
    const ahead: Promise<(TensorBatch & { keys: number[] }) | undefined>[] = [];
    let next = 0;
    const fill = () => {
      while (ahead.length < this.o.prefetchBatches && next < batches.length) {
        const p = this.makeBatch(batches[next++], limit);
        p.catch(() => undefined); // surfaced when awaited below
        ahead.push(p);
      }
    };
    fill();
    while (ahead.length > 0) {
      const t0 = performance.now();
      const batch = await ahead.shift()!;
      const waitSeconds = (performance.now() - t0) / 1000;
      fill();
      if (batch) yield { ...batch, waitSeconds };
    }
  }
}

/**
 * Few-shot training data (upstream's few-shot setting): K images picked per category with the
 * seed, pre-processed, each expanded into its 22 views (cpp/core/augment.h), held in memory
 * (22 K images: small by construction) and shuffled each epoch; the last short batch is
 * dropped, as upstream's loader does.
 */
class FewShotBatchSource implements BatchSource {
  stepsPerEpoch: number;
  private readonly batchSize: number;
  private readonly count: number;
  private readonly per: number;
  constructor(private readonly views: Float32Array, private readonly o: DataOptions) {
    this.per = 3 * o.cropSize * o.cropSize;
    this.count = views.length / this.per;
    this.batchSize = Math.min(o.batchSize, this.count);
    if (this.batchSize < o.batchSize) o.warn(`few-shot: ${this.count} views, fewer than one batch of ${o.batchSize}: training on batches of ${this.count}`);
    this.stepsPerEpoch = Math.floor(this.count / this.batchSize);
  }

  static async of(groups: Array<{ name: string; items: ImageInput[] }>, o: DataOptions): Promise<FewShotBatchSource> {
    const k = o.fewShot!;
    const parts: Float32Array[] = [];
    for (const [g, { name, items }] of groups.entries()) {
      if (items.length < k) throw new InvalidArgumentError(`fewShot ${k}: ${name} has only ${items.length} training image(s)`);
      // the shots of each category from the seed (and the category's place), in their listing order
      const picked = permutation(items.length, rng(o.seed * 7919 + g)).slice(0, k).sort((a, b) => a - b);
      const images = await Promise.all(picked.map((i) => decodeImage(items[i], i, o.maxImagePixels)));
      const data = await native().preprocess(images, o.imageSize, o.cropSize);
      parts.push(await native().fewShotViews(data, [k, 3, o.cropSize, o.cropSize]));
    }
    const views = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      views.set(p, at);
      at += p.length;
    }
    return new FewShotBatchSource(views, o);
  }

  async *epoch(epochIndex: number): AsyncGenerator<Batch> {
    const order = this.o.shuffle ? permutation(this.count, rng(this.o.seed * 1000003 + epochIndex)) : [...Array(this.count).keys()];
    for (let s = 0; s < this.stepsPerEpoch; s++) {
      const data = new Float32Array(this.batchSize * this.per);
      const keys = order.slice(s * this.batchSize, (s + 1) * this.batchSize);
      keys.forEach((i, j) => data.set(this.views.subarray(i * this.per, (i + 1) * this.per), j * this.per));
      yield { data, shape: [this.batchSize, 3, this.o.cropSize, this.o.cropSize], waitSeconds: 0, keys };
    }
  }
}

function concurrencyLimit(max: number): <T>(f: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  return async <T>(f: () => Promise<T>) => {
    if (active >= max) await new Promise<void>((r) => queue.push(r));
    active++;
    try {
      return await f();
    } finally {
      active--;
      queue.shift()?.();
    }
  };
}

export async function batchSource(source: FitSource, o: DataOptions): Promise<BatchSource> {
  const groups = await imageGroups(source);
  if (o.fewShot !== undefined) {
    if (!groups) throw new InvalidArgumentError('fewShot needs images (a folder, a Folder dataset, a category set or an array of images), not ready batches');
    return FewShotBatchSource.of(groups, o);
  }
  if (groups) return new ImageBatchSource(groups.flatMap((g) => g.items), o);
  if (source && (Symbol.iterator in Object(source) || Symbol.asyncIterator in Object(source))) {
    return new TensorBatchSource(source as Iterable<TensorBatch>);
  }
  throw new InvalidArgumentError('fit source must be a folder, a Folder dataset { normalDir, ... }, a category set { root, categories }, an array of image paths/Buffers, or an iterable of { data, shape } batches');
}

/** The training images of a source, by category (one group but for a category set); undefined for ready batches. */
async function imageGroups(source: FitSource): Promise<Array<{ name: string; items: ImageInput[] }> | undefined> {
  if (typeof source === 'string') return [{ name: source, items: await listImages(source) }];
  const kind = datasetKind(source);
  if (kind === 'categories') {
    const categories = await resolveCategories(resolve(CATEGORY_SET, source, 'the category set of fit()'));
    return Promise.all(categories.map(async (c) => ({ name: c.dir, items: await listImages(c.dir) })));
  }
  if (kind === 'folder') {
    const ds = resolve(FOLDER_DATASET, source, 'the Folder dataset of fit()');
    return [{ name: ds.normalDir, items: await folderTrainingImages(ds) }];
  }
  if (Array.isArray(source) && (source.length === 0 || typeof source[0] === 'string' || isEncoded(source[0]) || (source[0] as { width?: number }).width !== undefined)) {
    if (source.length === 0) throw new InvalidArgumentError('no training images were given');
    return [{ name: 'the images given', items: source as ImageInput[] }];
  }
  return undefined;
}
