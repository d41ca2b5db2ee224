/**
 * The file format of the models this package saves, writing and reading in one place: a
 * torch.save file that Python's torch.load opens and upstream's
 * INP_Former.load_state_dict(strict=True) accepts, with our configuration and thresholds in the
 * state dict's `_metadata` under MODEL_NAMESPACE (where torch keeps per-module versions, so
 * upstream ignores it). Checkpoints of a fit add their step (`training_step`).
 */
import * as path from 'node:path';
import type { NetworkConfig } from '../model/architecture';
import { CheckpointError, InvalidArgumentError } from '../errors';
import { ensureDir, removeMadeDirs } from '../files';
import type { Thresholds } from '../results/postprocess';
import { stateDictMetadata } from './reader';
import { TensorToSave, writeTorchFile } from './writer';

export const MODEL_NAMESPACE = 'inp_former';
const FORMAT = 'inp-former-checkpoint';
/** upstream's MLP biases, which anomalib's bias-free models lack */
const MLP_BIAS = /^((?:aggregation|decoder)\.\d+\.mlp\.fc[12])\.(weight|bias)$/;

/** What a saved model records beside its weights. */
export interface SavedModel {
  network: NetworkConfig;
  imageSize: number;
  cropSize: number;
  thresholds?: Thresholds;
  /** a multi-class model's thresholds per category */
  categoryThresholds?: Record<string, Thresholds>;
}

const THRESHOLD_KEYS = ['imageThreshold', 'pixelThreshold', 'imageMin', 'imageMax', 'pixelMin', 'pixelMax'] as const;

/** Thresholds read from a file: six finite numbers, or the file is refused (a crafted file must not poison predictions). */
function checkThresholds(v: unknown, what: string, file: string): Thresholds {
  const t = v as Record<string, unknown>;
  if (!t || typeof t !== 'object' || THRESHOLD_KEYS.some((k) => typeof t[k] !== 'number' || !Number.isFinite(t[k]))) {
    throw new CheckpointError(`the inp-former metadata's ${what} are not six finite numbers (${THRESHOLD_KEYS.join(', ')})`, file);
  }
  return Object.fromEntries(THRESHOLD_KEYS.map((k) => [k, t[k]])) as unknown as Thresholds;
}

/**
 * The network's parameters under upstream's names and order; a bias-free (anomalib) model gets
 * zero biases where upstream has them, so that upstream's strict load accepts the file.
 */
export function upstreamStateDict(params: TensorToSave[], mlpBias: boolean): TensorToSave[] {
  if (mlpBias) return params;
  const out: TensorToSave[] = [];
  for (const t of params) {
    out.push(t);
    const m = MLP_BIAS.exec(t.name);
    if (m && m[2] === 'weight') out.push({ name: `${m[1]}.bias`, data: new Float32Array(t.shape[0]), shape: [t.shape[0]] });
  }
  return out;
}

/**
 * Write a model file (atomically; folders made for it are removed again on failure).
 * `extra`: more metadata entries (a checkpoint's training step).
 */
export async function writeModelFile(file: string, params: TensorToSave[], saved: SavedModel, packageVersion: string, extra: Record<string, string> = {}): Promise<void> {
  const made = await ensureDir(path.dirname(path.resolve(file)), (m, cause) => new InvalidArgumentError(`cannot save ${file}: ${m}`, { cause }));
  try {
    await writeTorchFile(file, upstreamStateDict(params, saved.network.mlpBias), {
      [MODEL_NAMESPACE]: { format: FORMAT, version: '1', package_version: packageVersion, config: JSON.stringify(saved), ...extra },
    });
  } catch (err) {
    await removeMadeDirs(made); // nothing half-made left behind
    throw err;
  }
}

/**
 * What a file saved by this package records, or undefined for any other state dict. Removes
 * the zero biases written for upstream from `weights` when the model was bias-free.
 */
export function readSavedModel(root: unknown, weights: Map<string, unknown>, file: string): Partial<SavedModel> | undefined {
  const ours = stateDictMetadata(root, MODEL_NAMESPACE);
  if (!ours || typeof ours.get('config') !== 'string') return undefined;
  let saved: Partial<SavedModel>;
  try {
    saved = JSON.parse(ours.get('config') as string);
  } catch {
    throw new CheckpointError('the inp-former metadata is not valid JSON', file);
  }
  if (saved.thresholds !== undefined) saved.thresholds = checkThresholds(saved.thresholds, 'thresholds', file);
  if (saved.categoryThresholds !== undefined) {
    const per = saved.categoryThresholds as unknown;
    if (!per || typeof per !== 'object' || Array.isArray(per)) throw new CheckpointError("the inp-former metadata's category thresholds are not an object", file);
    saved.categoryThresholds = Object.fromEntries(Object.entries(per).map(([k, v]) => [k, checkThresholds(v, `thresholds of category '${k}'`, file)]));
  }
  if (saved.network?.mlpBias === false) {
    for (const k of [...weights.keys()]) if (MLP_BIAS.exec(k)?.[2] === 'bias') weights.delete(k);
  }
  return saved;
}

/** The training step a checkpoint written during a fit records, if any. */
export function trainingStepOf(root: unknown): string | undefined {
  const step = stateDictMetadata(root, MODEL_NAMESPACE)?.get('training_step');
  return typeof step === 'string' ? step : undefined;
}
