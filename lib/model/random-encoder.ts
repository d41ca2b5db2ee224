/**
 * Random DINOv2-shaped encoders, for tests and the offline demo: `create({ encoder: { embedDim,
 * depth, numHeads } })`. Weights are reproducible from the spec's seed and carry Meta's names,
 * so they take the same path into the network as real DINOv2 weights.
 */
import { EncoderSpec, TensorMap } from './architecture';
import { HostTensor } from '../checkpoint/tensor';
import { MAX_RANDOM_ENCODER_PARAMETERS, RANDOM_ENCODER, Resolved, invalid } from './options';
import { normal, rng } from '../random';

/** The encoder a random-encoder spec describes; refused when larger than any DINOv2. */
export function randomEncoderSpec(r: Resolved<typeof RANDOM_ENCODER>): EncoderSpec {
  if (r.embedDim % r.numHeads !== 0) throw invalid('encoder.numHeads', `a divisor of embedDim ${r.embedDim}`, r.numHeads);
  const mlp = r.mlpHiddenDim ?? r.embedDim * 4;
  const params = r.depth * (4 * r.embedDim ** 2 + 2 * r.embedDim * mlp) + (r.posGridSize ** 2 + 1 + r.numRegisterTokens) * r.embedDim;
  if (params > MAX_RANDOM_ENCODER_PARAMETERS)
    throw invalid('encoder', `a random encoder of at most ${MAX_RANDOM_ENCODER_PARAMETERS.toExponential(1)} parameters (DINOv2-g has 1.1e9)`, `${params.toExponential(2)} parameters`);
  return {
    embedDim: r.embedDim, depth: r.depth, numHeads: r.numHeads, numRegisterTokens: r.numRegisterTokens, patchSize: r.patchSize,
    posGridSize: r.posGridSize, mlpHiddenDim: mlp, swiglu: false, lnEps: 1e-6, interpolateOffset: 0.1,
  };
}

/** Random DINOv2-shaped weights (Meta names), reproducible from the spec's seed. */
export function randomEncoderWeights(spec: EncoderSpec, seed: number): TensorMap {
  const gauss = normal(rng(seed * 7919 + 17));
  const uniform = rng(seed * 104729 + 3);
  const out: TensorMap = new Map();
  const add = (name: string, shape: number[], fill: (i: number) => number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = fill(i);
    out.set(name, HostTensor.fromFloat32(data, shape));
  };
  const D = spec.embedDim;
  const H = spec.mlpHiddenDim;
  add('cls_token', [1, 1, D], () => 0.05 * gauss());
  add('pos_embed', [1, spec.posGridSize ** 2 + 1, D], () => 0.05 * gauss());
  if (spec.numRegisterTokens > 0) add('register_tokens', [1, spec.numRegisterTokens, D], () => 0.05 * gauss());
  add('mask_token', [1, D], () => 0);
  add('patch_embed.proj.weight', [D, 3, spec.patchSize, spec.patchSize], () => 0.05 * gauss());
  add('patch_embed.proj.bias', [D], () => 0.02 * gauss());
  for (let b = 0; b < spec.depth; b++) {
    const p = `blocks.${b}.`;
    add(p + 'norm1.weight', [D], () => 1 + 0.1 * gauss());
    add(p + 'norm1.bias', [D], () => 0.02 * gauss());
    add(p + 'attn.qkv.weight', [3 * D, D], () => 0.05 * gauss());
    add(p + 'attn.qkv.bias', [3 * D], () => 0.02 * gauss());
    add(p + 'attn.proj.weight', [D, D], () => 0.05 * gauss());
    add(p + 'attn.proj.bias', [D], () => 0.02 * gauss());
    add(p + 'ls1.gamma', [D], () => 0.2 + 0.8 * uniform());
    add(p + 'norm2.weight', [D], () => 1 + 0.1 * gauss());
    add(p + 'norm2.bias', [D], () => 0.02 * gauss());
    add(p + 'mlp.fc1.weight', [H, D], () => 0.05 * gauss());
    add(p + 'mlp.fc1.bias', [H], () => 0.02 * gauss());
    add(p + 'mlp.fc2.weight', [D, H], () => 0.05 * gauss());
    add(p + 'mlp.fc2.bias', [D], () => 0.02 * gauss());
    add(p + 'ls2.gamma', [D], () => 0.2 + 0.8 * uniform());
  }
  add('norm.weight', [D], () => 1);
  add('norm.bias', [D], () => 0);
  return out;
}
