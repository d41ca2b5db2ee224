/**
 * Labelled image sets in MVTec AD layout: `<category>/test/<type>/*.png` with masks in
 * `<category>/ground_truth/<type>/<name>_mask.png` (`good` has none: all normal).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { InvalidArgumentError } from '../errors';
import { listImages, readRegularFile, sharpFailure } from './images';

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

/** A category root (with test/) or a test folder (with good/ and defect folders). */
export async function readLabelledSet(dir: string): Promise<LabelledImage[]> {
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
