/**
 * From the tensors of a checkpoint to the network's architecture and canonical names.
 * Canonical names are upstream INP-Former's state_dict keys (`encoder.*`, `bottleneck.0.*`,
 * `aggregation.0.*`, `decoder.N.*`, `prototype_token`); the mappings here bring anomalib's,
 * Meta's, timm's and TorchScript names to them. Shapes decide the architecture, explicit
 * options override, and a mismatch is a CheckpointError naming the key and both shapes.
 */
import { CheckpointError, InvalidArgumentError } from '../errors';
import { readSavedModel } from '../checkpoint/model-file';
import type { Thresholds } from '../results/postprocess';
export type { Thresholds } from '../results/postprocess';
import { DEFAULT_FUSE_GROUPS, DEFAULT_INP_NUM } from './options';
import { PyObject } from '../checkpoint/pickle';
import { CheckpointFile, collectModuleTensors } from '../checkpoint/reader';
import { HostTensor, StorageBytes } from '../checkpoint/tensor';

export type TensorMap = Map<string, HostTensor>;

export interface EncoderSpec {
  embedDim: number;
  depth: number;
  numHeads: number;
  numRegisterTokens: number;
  patchSize: number;
  posGridSize: number;
  mlpHiddenDim: number;
  swiglu: boolean;
  lnEps: number;
  interpolateOffset: number;
}

export interface NetworkConfig {
  encoder: EncoderSpec;
  targetLayers: number[];
  fuseLayerEncoder: number[][];
  fuseLayerDecoder: number[][];
  removeClassToken: boolean;
  inpNum: number;
  numHeads: number;
  decoderDepth: number;
  extractorDepth: number;
  mlpRatio: number;
  qkvBias: boolean;
  mlpBias: boolean;
  inpLnEps: number;
}

/** Architecture options a user may give (all optional; the weights decide the rest). */
export interface ArchitectureOptions {
  /** Attention heads of the encoder (cannot be read from shapes; default: decoder heads, else embedDim / 64). */
  encoderHeads?: number;
  targetLayers?: number[];
  fuseLayerEncoder?: number[][];
  fuseLayerDecoder?: number[][];
  removeClassToken?: boolean;
  inpNum?: number;
}

export interface InterpretedCheckpoint {
  kind: 'upstream' | 'anomalib' | 'inp-former' | 'encoder';
  /** canonical names; for kind 'encoder', Meta's encoder names without the `encoder.` prefix */
  weights: TensorMap;
  /** what the file records of the configuration (anomalib hyper-parameters, our metadata) */
  recorded: Partial<NetworkConfig> & { imageSize?: number; cropSize?: number; precision?: string };
  thresholds?: Thresholds;
  /** a multi-class model's thresholds per category (our saved models) */
  categoryThresholds?: Record<string, Thresholds>;
}

const shapeStr = (s: number[]) => `[${s.join(', ')}]`;

function mapOf(v: unknown): Map<unknown, unknown> | undefined {
  return v instanceof Map ? v : undefined;
}

function tensorEntries(m: Map<unknown, unknown>): TensorMap {
  const out: TensorMap = new Map();
  for (const [k, v] of m) if (typeof k === 'string' && v instanceof HostTensor) out.set(k, v);
  return out;
}

/** Meta DINOv2 or timm DINOv2 names -> Meta's. */
export function normalizeEncoderNames(t: TensorMap, file?: string): TensorMap {
  const out: TensorMap = new Map();
  for (const [k, v] of t) {
    if (k.startsWith('head.') || k === 'fc_norm.weight' || k === 'fc_norm.bias') continue;
    if (k === 'reg_token') out.set('register_tokens', v);
    else out.set(k, v);
  }
  const pos = out.get('pos_embed');
  if (!pos) throw new CheckpointError("no 'pos_embed': not a DINOv2 encoder", file);
  const n = pos.shape[1];
  const side = Math.round(Math.sqrt(n));
  if (side * side === n) {
    // timm's DINOv2 with registers folds the cls position into cls_token and stores patch
    // positions only; a zero cls position with that cls_token is the same network.
    const d = pos.shape[2];
    const padded = () => {
      const data = new Float32Array((n + 1) * d);
      data.set(pos.toFloat32(), d);
      return Buffer.from(data.buffer);
    };
    // a storage a load left in the file (InpFormer.load) is padded when it is read
    const storage = pos.isRead ? padded() : new StorageBytes(undefined, () => pos.source.read().then(padded));
    out.set('pos_embed', new HostTensor('float32', [1, n + 1, d], HostTensor.contiguousStrides([1, n + 1, d]), 0, storage));
  } else if (Math.round(Math.sqrt(n - 1)) ** 2 !== n - 1) {
    throw new CheckpointError(`'pos_embed' has ${n} positions, which is not a square grid`, file);
  }
  if (!out.has('mask_token')) {
    const d = pos.shape[2];
    out.set('mask_token', HostTensor.fromFloat32(new Float32Array(d), [1, d]));
  }
  return out;
}

const KNOWN_HEADS: Record<number, number> = { 384: 6, 768: 12, 1024: 16, 1536: 24 };

export function inferEncoderSpec(enc: TensorMap, heads: number | undefined, file?: string): EncoderSpec {
  const need = (k: string) => {
    const t = enc.get(k);
    if (!t) throw new CheckpointError(`missing key '${k}' for the encoder`, file);
    return t;
  };
  const pos = need('pos_embed');
  const embedDim = pos.shape[2];
  const grid = Math.round(Math.sqrt(pos.shape[1] - 1));
  if (grid * grid !== pos.shape[1] - 1) throw new CheckpointError(`'pos_embed' ${shapeStr(pos.shape)} is not cls + a square grid`, file);
  let depth = 0;
  while (enc.has(`blocks.${depth}.norm1.weight`)) depth++;
  if (depth === 0) throw new CheckpointError("no 'blocks.0.norm1.weight': not a DINOv2 encoder (chunked blocks are not supported)", file);
  const patch = need('patch_embed.proj.weight');
  const swiglu = enc.has('blocks.0.mlp.w12.weight');
  const hidden = swiglu ? need('blocks.0.mlp.w12.weight').shape[0] / 2 : need('blocks.0.mlp.fc1.weight').shape[0];
  const numHeads = heads ?? KNOWN_HEADS[embedDim] ?? Math.max(1, Math.round(embedDim / 64));
  if (embedDim % numHeads !== 0) throw new InvalidArgumentError(`encoderHeads ${numHeads} does not divide the embedding size ${embedDim}`);
  return {
    embedDim,
    depth,
    numHeads,
    numRegisterTokens: enc.get('register_tokens')?.shape[1] ?? 0,
    patchSize: patch.shape[2],
    posGridSize: grid,
    mlpHiddenDim: hidden,
    swiglu,
    lnEps: 1e-6,
    interpolateOffset: 0.1,
  };
}

/** upstream's choice of encoder layers: [2..9] for 12-block encoders, every second of 4..18 for 24. */
export function defaultTargetLayers(depth: number): number[] {
  if (depth >= 10 && depth <= 12) return [2, 3, 4, 5, 6, 7, 8, 9];
  if (depth === 24) return [4, 6, 8, 10, 12, 14, 16, 18];
  throw new InvalidArgumentError(`no default targetLayers for a ${depth}-block encoder: pass targetLayers`);
}

/** The network of a new model: upstream's INP-Former around `encoder`, with the user's choices. */
export function newNetworkConfig(encoder: EncoderSpec, o: ArchitectureOptions): NetworkConfig {
  return {
    encoder,
    targetLayers: o.targetLayers ?? defaultTargetLayers(encoder.depth),
    fuseLayerEncoder: o.fuseLayerEncoder ?? DEFAULT_FUSE_GROUPS,
    fuseLayerDecoder: o.fuseLayerDecoder ?? DEFAULT_FUSE_GROUPS,
    removeClassToken: o.removeClassToken ?? true,
    inpNum: o.inpNum ?? DEFAULT_INP_NUM,
    numHeads: encoder.numHeads,
    decoderDepth: 8,
    extractorDepth: 1,
    mlpRatio: 4,
    qkvBias: true,
    mlpBias: true,
    inpLnEps: 1e-8,
  };
}

function count(weights: TensorMap, prefix: string): number {
  let n = 0;
  while (weights.has(`${prefix}.${n}.norm1.weight`)) n++;
  return n;
}

/** The full network configuration from canonical weights plus recorded values and options. */
export function inferNetworkConfig(
  weights: TensorMap,
  recorded: Partial<NetworkConfig>,
  options: ArchitectureOptions,
  file?: string,
): NetworkConfig {
  const encWeights: TensorMap = new Map();
  for (const [k, v] of weights) if (k.startsWith('encoder.')) encWeights.set(k.slice(8), v);
  const learnScale = weights.get('decoder.0.attn.learn_scale');
  const heads = learnScale?.shape[0];
  const encoder = inferEncoderSpec(encWeights, options.encoderHeads ?? recorded.encoder?.numHeads ?? heads, file);
  const proto = weights.get('prototype_token');
  const fc1 = weights.get('bottleneck.0.fc1.weight');
  const cfg: NetworkConfig = {
    encoder,
    targetLayers: options.targetLayers ?? recorded.targetLayers ?? defaultTargetLayers(encoder.depth),
    fuseLayerEncoder: options.fuseLayerEncoder ?? recorded.fuseLayerEncoder ?? DEFAULT_FUSE_GROUPS,
    fuseLayerDecoder: options.fuseLayerDecoder ?? recorded.fuseLayerDecoder ?? DEFAULT_FUSE_GROUPS,
    removeClassToken: options.removeClassToken ?? recorded.removeClassToken ?? true,
    inpNum: proto?.shape[0] ?? options.inpNum ?? recorded.inpNum ?? DEFAULT_INP_NUM,
    numHeads: heads ?? encoder.numHeads,
    decoderDepth: weights.size ? count(weights, 'decoder') || 8 : 8,
    extractorDepth: weights.size ? count(weights, 'aggregation') || 1 : 1,
    mlpRatio: fc1 ? fc1.shape[0] / encoder.embedDim : 4,
    qkvBias: learnScale ? weights.has('decoder.0.attn.q.bias') : true,
    mlpBias: learnScale ? weights.has('decoder.0.mlp.fc1.bias') : true,
    inpLnEps: 1e-8,
  };
  if (options.inpNum !== undefined && proto && options.inpNum !== proto.shape[0]) {
    throw new CheckpointError(`inpNum ${options.inpNum} was asked for but 'prototype_token' has shape ${shapeStr(proto.shape)}`, file);
  }
  return cfg;
}

function numberOf(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (v instanceof HostTensor && v.numel === 1) return v.item();
  return undefined;
}

function readThresholds(m: Map<unknown, unknown>, prefix: string): Thresholds | undefined {
  const g = (k: string) => numberOf(m.get(prefix + k));
  const t = {
    imageThreshold: g('_image_threshold'),
    pixelThreshold: g('_pixel_threshold'),
    imageMin: g('image_min'),
    imageMax: g('image_max'),
    pixelMin: g('pixel_min'),
    pixelMax: g('pixel_max'),
  };
  if (Object.values(t).some((x) => x === undefined || !Number.isFinite(x))) return undefined;
  return t as Thresholds;
}

function listOfInts(v: unknown): number[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'number') ? (v as number[]) : undefined;
}

function listOfLists(v: unknown): number[][] | undefined {
  if (!Array.isArray(v)) return undefined;
  const out = v.map(listOfInts);
  return out.every((x) => x) ? (out as number[][]) : undefined;
}

function stateOf(v: unknown): Map<unknown, unknown> | undefined {
  return v instanceof PyObject ? mapOf(v.state) : undefined;
}

function squareSize(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  const l = listOfInts(v);
  return l && (l.length === 1 || (l.length === 2 && l[0] === l[1])) ? l[0] : undefined;
}

/** Resize and CenterCrop sizes of anomalib's pickled PreProcessor (torchvision v2 transforms). */
function anomalibSizes(preProcessor: unknown): { imageSize?: number; cropSize?: number } {
  const modules = mapOf(stateOf(preProcessor)?.get('_modules'));
  const transforms = stateOf(modules?.get('transform'))?.get('transforms');
  const out: { imageSize?: number; cropSize?: number } = {};
  if (!Array.isArray(transforms)) return out;
  for (const t of transforms) {
    if (!(t instanceof PyObject)) continue;
    const size = squareSize(stateOf(t)?.get('size'));
    if (t.cls.name === 'Resize') out.imageSize = size;
    if (t.cls.name === 'CenterCrop' || t.cls.name === 'ExportableCenterCrop') out.cropSize = size;
  }
  return out;
}

/** What kind of checkpoint this is, with its weights under canonical names. */
export function interpretCheckpoint(file: CheckpointFile): InterpretedCheckpoint {
  const where = file.path;
  if (file.format === 'torchscript') {
    return { kind: 'encoder', weights: normalizeEncoderNames(collectModuleTensors(file.root), where), recorded: {} };
  }
  const root = mapOf(file.root);
  if (!root) throw new CheckpointError('the file does not hold a dict of tensors', where);

  // anomalib / Lightning checkpoint
  const sd = mapOf(root.get('state_dict'));
  if (sd) {
    const all = tensorEntries(sd);
    const weights: TensorMap = new Map();
    for (const [k, v] of all) {
      if (!k.startsWith('model.')) continue; // trainable_modules.* duplicate model.*, post_processor.* below
      const name = k.slice(6);
      if (name === 'gaussian_blur.kernel') continue; // recomputed (kernel 5, sigma 4)
      weights.set(name === 'prototype_token.0' ? 'prototype_token' : name, v);
    }
    if (!weights.has('prototype_token')) throw new CheckpointError("no 'model.prototype_token.0': not an anomalib InpFormer checkpoint", where);
    const hp = mapOf(root.get('hyper_parameters')) ?? new Map();
    const recorded: InterpretedCheckpoint['recorded'] = {
      targetLayers: listOfInts(hp.get('target_layers')),
      fuseLayerEncoder: listOfLists(hp.get('fuse_layer_encoder')),
      fuseLayerDecoder: listOfLists(hp.get('fuse_layer_decoder')),
      removeClassToken: typeof hp.get('remove_class_token') === 'boolean' ? (hp.get('remove_class_token') as boolean) : undefined,
      inpNum: numberOf(hp.get('inp_num')),
      ...anomalibSizes(hp.get('pre_processor')),
    };
    const precision = hp.get('precision');
    if (precision instanceof PyObject && precision.args[1] === 'BFLOAT16') recorded.precision = 'bfloat16';
    return { kind: 'anomalib', weights, recorded, thresholds: readThresholds(sd, 'post_processor.') };
  }

  const weights = tensorEntries(root);
  if (weights.has('prototype_token') && [...weights.keys()].some((k) => k.startsWith('encoder.'))) {
    const saved = readSavedModel(root, weights, where);
    if (saved) {
      const recorded = { ...(saved.network ?? {}), imageSize: saved.imageSize, cropSize: saved.cropSize };
      return { kind: 'inp-former', weights, recorded, thresholds: saved.thresholds, categoryThresholds: saved.categoryThresholds };
    }
    return { kind: 'upstream', weights, recorded: {} };
  }
  if (weights.has('pos_embed') && weights.has('patch_embed.proj.weight')) {
    return { kind: 'encoder', weights: normalizeEncoderNames(weights, where), recorded: {} };
  }
  // a dict wrapping a state dict under a common key ('model', 'state_dict', 'teacher')
  for (const key of ['model', 'teacher', 'student', 'net']) {
    const inner = mapOf(root.get(key));
    if (inner) return interpretCheckpoint({ ...file, root: inner });
  }
  throw new CheckpointError(
    'unrecognised checkpoint layout: expected an INP-Former state_dict, an anomalib InpFormer .ckpt or DINOv2 encoder weights',
    where,
  );
}

/** Encoder weights (Meta names) under the network's names. Shapes are checked by the native
 * strict load, which names the key and both shapes. */
export function withEncoderPrefix(enc: TensorMap): TensorMap {
  const out: TensorMap = new Map();
  for (const [k, v] of enc) out.set(`encoder.${k}`, v);
  return out;
}

/** The DINOv2 encoder weights (Meta names) of an opened encoder file or whole INP-Former checkpoint. */
export function encoderWeightsOf(opened: CheckpointFile): TensorMap {
  const file = opened.path;
  const ck = interpretCheckpoint(opened);
  if (ck.kind === 'encoder') return ck.weights;
  // an INP-Former checkpoint also holds an encoder
  const enc: TensorMap = new Map();
  for (const [k, v] of ck.weights) if (k.startsWith('encoder.')) enc.set(k.slice(8), v);
  if (enc.size === 0) throw new CheckpointError('holds no encoder weights', file);
  return enc;
}
