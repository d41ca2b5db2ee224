/**
 * Labelled image sets, in two layouts:
 * - MVTec AD: `<category>/test/<type>/*.png` with masks in
 *   `<category>/ground_truth/<type>/<name>_mask.png` (`good` has none: all normal);
 * - Folder-style, as anomalib's Folder: a normal folder (training, and a held-out normal test
 *   split unless a normal test folder is given), abnormal folders, optional mask folders.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { sharp } from './sharp';
import { InvalidArgumentError } from '../errors';
import { permutation, rng } from '../random';
import { datasetKind } from '../model/options';
import { IMAGE_EXTENSIONS, listImages, readRegularFile, sharpFailure } from './images';

/**
 * A Folder-style dataset (anomalib's Folder): folders named by role instead of the MVTec AD
 * layout. Relative folders are resolved against `root` (default: the working directory).
 */
export interface FolderDataset {
  /** normal images: fit() trains on them, less the normal test split */
  normalDir: string;
  /** abnormal images, one folder per defect type (its name is the type); evaluation only */
  abnormalDirs?: string | string[];
  /** ground-truth masks: one folder for all abnormal folders, or one for each; a mask is named as its image, or `<stem>_mask` */
  maskDirs?: string | string[];
  /** normal test images; without it `normalSplitRatio` of normalDir is held out for testing */
  normalTestDir?: string;
  /** share of normalDir held out as normal test images when there is no normalTestDir (default 0.2, as anomalib) */
  normalSplitRatio?: number;
  /** seed of that split (default 0) */
  seed?: number;
  /** folder that relative folders are resolved against */
  root?: string;
}

/** A FolderDataset with its defaults filled in and its folders as lists. */
export interface ResolvedFolderDataset {
  normalDir: string;
  abnormalDirs?: string[];
  maskDirs?: string[];
  normalTestDir?: string;
  normalSplitRatio: number;
  seed: number;
  root?: string;
}

/** A labelled set: an MVTec AD category (or its test folder), a Folder-style dataset, or several categories. */
export type LabelledSource = string | FolderDataset | CategorySet;

/** How messages name a labelled set. */
export function describeSet(source: string | ResolvedFolderDataset): string {
  return typeof source === 'string' ? source : `the Folder dataset of ${source.normalDir}`;
}

const within = (ds: ResolvedFolderDataset, dir: string) => path.resolve(ds.root ?? '.', dir);

/** The normal images of a Folder dataset, split into training and normal test images (seeded, as anomalib's normal_split_ratio). */
async function normalSplit(ds: ResolvedFolderDataset): Promise<{ train: string[]; test: string[] }> {
  const normals = await listImages(within(ds, ds.normalDir));
  if (ds.normalTestDir !== undefined) return { train: normals, test: await listImages(within(ds, ds.normalTestDir)) };
  const held = Math.round(normals.length * ds.normalSplitRatio);
  if (held >= normals.length) throw new InvalidArgumentError(`${ds.normalDir}: a normal split ratio of ${ds.normalSplitRatio} leaves none of its ${normals.length} images for training`);
  const order = permutation(normals.length, rng(ds.seed));
  const isTest = new Set(order.slice(0, held));
  return { train: normals.filter((_, i) => !isTest.has(i)), test: normals.filter((_, i) => isTest.has(i)) };
}

/** The training images of a Folder dataset: its normal folder less the normal test split. */
export async function folderTrainingImages(ds: ResolvedFolderDataset): Promise<string[]> {
  return (await normalSplit(ds)).train;
}

/** Mask files of a folder by the stem of the image they belong to (`000.png` or `000_mask.png` for `000.jpg`). */
async function masksByStem(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => { throw new InvalidArgumentError(`${dir}: no such mask folder`); })) {
    if (!e.isFile() || !IMAGE_EXTENSIONS.has(path.extname(e.name).toLowerCase())) continue;
    const stem = e.name.slice(0, -path.extname(e.name).length);
    out.set(stem.endsWith('_mask') ? stem.slice(0, -5) : stem, path.join(dir, e.name));
  }
  return out;
}

async function readFolderSet(ds: ResolvedFolderDataset): Promise<LabelledImage[]> {
  const abnormal = ds.abnormalDirs ?? [];
  const masks = ds.maskDirs ?? [];
  if (masks.length > 1 && masks.length !== abnormal.length) {
    throw new InvalidArgumentError(`maskDirs: ${masks.length} mask folders for ${abnormal.length} abnormal folders (give one for all, or one each)`);
  }
  const out: LabelledImage[] = (await normalSplit(ds)).test.map((file) => ({ file, type: 'good', label: 0 as const }));
  for (const [k, dir] of abnormal.entries()) {
    const maskDir = masks.length ? within(ds, masks[Math.min(k, masks.length - 1)]) : undefined;
    const byStem = maskDir ? await masksByStem(maskDir) : undefined;
    const type = path.basename(path.resolve(within(ds, dir)));
    for (const file of await listImages(within(ds, dir))) {
      const item: LabelledImage = { file, type, label: 1 };
      if (byStem) {
        const stem = path.basename(file, path.extname(file));
        item.maskFile = byStem.get(stem);
        if (!item.maskFile) throw new InvalidArgumentError(`${file}: no mask for it in ${maskDir} (expected ${stem}.png or ${stem}_mask.png)`);
      }
      out.push(item);
    }
  }
  return out;
}

export interface LabelledImage {
  file: string;
  /** the folder name: 'good' or the defect type */
  type: string;
  label: 0 | 1;
  maskFile?: string;
}

async function isDir(p: string): Promise<boolean> {
  return fs.stat(p).then((s) => s.isDirectory(), () => false);
}

/** A category root (with test/), a test folder (with good/ and defect folders), or a Folder dataset. */
export async function readLabelledSet(source: string | ResolvedFolderDataset): Promise<LabelledImage[]> {
  if (typeof source !== 'string') return readFolderSet(source);
  const dir = source;
  if (!(await isDir(dir))) throw new InvalidArgumentError(`${dir}: no such folder`);
  const root = (await isDir(path.join(dir, 'test'))) ? path.join(dir, 'test') : dir;
  const gtCandidates = [path.join(dir, 'ground_truth'), path.join(root, '..', 'ground_truth')];
  let gtRoot: string | undefined;
  for (const c of gtCandidates) if (await isDir(c)) gtRoot = gtRoot ?? c;
  const types = (await fs.readdir(root, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  if (!types.includes('good')) throw new InvalidArgumentError(`${root}: expected a 'good' folder beside the defect folders (MVTec AD layout)`);
  const out: LabelledImage[] = [];
  for (const type of types) {
    for (const file of await listImages(path.join(root, type))) {
      const item: LabelledImage = { file, type, label: type === 'good' ? 0 : 1 };
      if (type !== 'good' && gtRoot) {
        const stem = path.basename(file).replace(/\.[^.]+$/, '');
        const maskFile = path.join(gtRoot, type, `${stem}_mask.png`);
        if (await fs.stat(maskFile).then(() => true, () => false)) item.maskFile = maskFile;
      }
      out.push(item);
    }
  }
  return out;
}

/** A mask as 0/1 bytes (any non-zero pixel is defect); over `maxPixels` refused from its header. */
export async function readMask(file: string, maxPixels: number): Promise<{ data: Uint8Array; width: number; height: number }> {
  const bytes = await readRegularFile(file);
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels }).removeAlpha().toColourspace('b-w').raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const out = new Uint8Array(info.width * info.height);
    for (let i = 0; i < out.length; i++) out[i] = data[i * info.channels] > 0 ? 1 : 0;
    return { data: out, width: info.width, height: info.height };
  } catch (err) {
    throw sharpFailure(err, file, maxPixels, 'mask');
  }
}

/**
 * Several MVTec AD-layout categories as one dataset (upstream's multi-class setting): one model
 * trains on all their normal images and is evaluated and calibrated per category.
 */
export interface CategorySet {
  /** the dataset's folder (MVTec AD, VisA in MVTec layout, ...) */
  root?: string;
  /** category names under `root`, or category folders; default: every folder under `root` with train/good or test/ */
  categories?: string[];
}

/** A category of a CategorySet: its name (the folder's name) and folder. */
export interface Category {
  name: string;
  dir: string;
}

/** Whether a source is a CategorySet: the kind options.ts's datasetKind() tells apart by its keys. */
export function isCategorySet(v: unknown): v is CategorySet {
  return datasetKind(v) === 'categories';
}

/** The categories of a set, checked: each a folder, names unique. */
export async function resolveCategories(set: CategorySet): Promise<Category[]> {
  let dirs: string[];
  if (set.categories) {
    dirs = set.categories.map((c) => (set.root !== undefined ? path.resolve(set.root, c) : path.resolve(c)));
  } else {
    if (set.root === undefined) throw new InvalidArgumentError('a category set needs root, categories or both');
    if (!(await isDir(set.root))) throw new InvalidArgumentError(`${set.root}: no such folder`);
    const entries = (await fs.readdir(set.root, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => path.join(set.root!, e.name)).sort();
    dirs = [];
    for (const d of entries) if ((await isDir(path.join(d, 'train', 'good'))) || (await isDir(path.join(d, 'test')))) dirs.push(d);
    if (dirs.length === 0) throw new InvalidArgumentError(`${set.root}: no category folders (with train/good or test/) in it`);
  }
  const out: Category[] = [];
  const seen = new Map<string, string>();
  for (const dir of dirs) {
    if (!(await isDir(dir))) throw new InvalidArgumentError(`${dir}: no such category folder`);
    const name = path.basename(dir);
    if (seen.has(name)) throw new InvalidArgumentError(`two categories are named '${name}': ${seen.get(name)} and ${dir}`);
    seen.set(name, dir);
    out.push({ name, dir });
  }
  return out;
}
