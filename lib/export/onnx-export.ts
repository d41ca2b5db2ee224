/**
 * exportOnnx(): the whole INP-Former as one ONNX graph (opset 17) written from our own weights,
 * with no Python: pre-processed images [B, 3, crop, crop] in; the blurred anomaly map
 * [B, 1, crop, crop] and the image score [B] out, computed as cpp/core does (encoder blocks up
 * to the last target layer, INP extractor, bottleneck, INP-guided decoder, 1 - cos per group
 * upsampled with align_corners, averaged, Gaussian blur with reflect padding, mean of the top 1%).
 * Shapes are static (batch and size fixed at export). What the graph cannot compute itself is
 * computed here once: the position embeddings interpolated to the crop's patch grid (torch's
 * bicubic with DINOv2's 0.1 offset) and the blur kernel.
 */
import type { NetworkConfig } from '../model/architecture';
import type { TensorToSave } from '../checkpoint/writer';
import { InvalidArgumentError } from '../errors';
import { OnnxGraph } from './onnx-graph';

export interface OnnxExportInput {
  network: NetworkConfig;
  /** the model's parameters under upstream's names (stateDict()) */
  params: TensorToSave[];
  batch: number;
  /** the crop side the model runs at */
  size: number;
  producerVersion: string;
}

/** torch's cubic convolution weights for a fractional offset t (A = -0.75). */
function cubicWeights(t: number): number[] {
  const A = -0.75;
  const c1 = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
  const c2 = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)];
}

/**
 * DINOv2's interpolate_pos_encoding as cpp/core/vit_encoder.cpp runs it: the n x n patch grid
 * of position embeddings resized to g x g by torch's bicubic (align_corners false, scale factor
 * (g + offset) / n, edges clamped); the class position kept.
 */
export function interpolatePositions(pos: Float32Array, n: number, dim: number, g: number, offset: number): Float32Array {
  const out = new Float32Array((1 + g * g) * dim);
  out.set(pos.subarray(0, dim));
  if (g === n) return pos.slice(0, (1 + n * n) * dim);
  const scale = 1 / ((g + offset) / n); // torch's source scale when a scale factor is given
  const taps = Array.from({ length: g }, (_, d) => {
    const real = scale * (d + 0.5) - 0.5;
    const i = Math.floor(real);
    return { idx: [-1, 0, 1, 2].map((k) => Math.min(n - 1, Math.max(0, i + k))), w: cubicWeights(real - i) };
  });
  for (let y = 0; y < g; y++) {
    for (let x = 0; x < g; x++) {
      for (let c = 0; c < dim; c++) {
        let v = 0;
        for (let a = 0; a < 4; a++) {
          let row = 0;
          for (let b = 0; b < 4; b++) row += taps[x].w[b] * pos[(1 + taps[y].idx[a] * n + taps[x].idx[b]) * dim + c];
          v += taps[y].w[a] * row;
        }
        out[(1 + y * g + x) * dim + c] = v;
      }
    }
  }
  return out;
}

/** anomalib's Gaussian kernel (cpp/core/anomaly_map.cpp gaussianKernel2d). */
function gaussianKernel(size: number, sigma: number): Float32Array {
  const x = Array.from({ length: size }, (_, i) => i - Math.floor(size / 2) + (size % 2 === 0 ? 0.5 : 0));
  const g = x.map((v) => Math.exp(-(v * v) / (2 * sigma * sigma)));
  const sum = g.reduce((a, b) => a + b, 0);
  const k1 = g.map((v) => v / sum);
  const k2 = k1.flatMap((a) => k1.map((b) => a * b));
  const total = k2.reduce((a, b) => a + Math.abs(b), 0);
  return Float32Array.from(k2.map((v) => v / total));
}

export function buildOnnxModel(input: OnnxExportInput): Uint8Array {
  const { network: net, batch: B, size } = input;
  const enc = net.encoder;
  const D = enc.embedDim;
  const p = enc.patchSize;
  if (size % p !== 0) throw new InvalidArgumentError(`exportOnnx(): size ${size} is not a multiple of the patch size ${p}`);
  const g = size / p;
  const params = new Map(input.params.map((t) => [t.name, t]));
  const G = new OnnxGraph();
  const w = (name: string): string => {
    const t = params.get(name);
    if (!t) throw new InvalidArgumentError(`exportOnnx(): the model has no parameter ${name}`);
    return G.weight(name, t.data, t.shape);
  };
  const has = (name: string) => params.has(name);
  /** x [.., in] times W^T [in, out] (+ b): torch's Linear */
  const linear = (x: string, name: string): string => {
    const t = params.get(`${name}.weight`)!;
    const [out, inDim] = t.shape;
    const wt = new Float32Array(t.data.length);
    for (let o = 0; o < out; o++) for (let i = 0; i < inDim; i++) wt[i * out + o] = t.data[o * inDim + i];
    const y = G.op('MatMul', [x, G.weight(`${name}.weight_t`, wt, [inDim, out])]);
    return has(`${name}.bias`) ? G.op('Add', [y, w(`${name}.bias`)]) : y;
  };
  const layerNorm = (x: string, name: string, eps: number) => G.op('LayerNormalization', [x, w(`${name}.weight`), w(`${name}.bias`)], { axis: -1, epsilon: { f: eps } });
  const gelu = (x: string) => G.op('Mul', [G.op('Mul', [x, G.op('Add', [G.op('Erf', [G.op('Div', [x, G.scalar(Math.SQRT2)])]), G.scalar(1)])]), G.scalar(0.5)]);
  const reshape = (x: string, shape: number[]) => G.op('Reshape', [x, G.ints(shape)]);
  const transpose = (x: string, perm: number[]) => G.op('Transpose', [x], { perm });
  const slice = (x: string, start: number, end: number, axis: number) => G.op('Slice', [x, G.ints([start]), G.ints([end]), G.ints([axis])]);
  const gather = (x: string, i: number) => G.op('Gather', [x, G.ints([i])], { axis: 0 });
  /** [B, N, C] -> [B, H, N, C/H] */
  const heads = (x: string, n: number, h: number) => transpose(reshape(x, [B, n, h, D / h]), [0, 2, 1, 3]);
  /** torch's reshape(B, n, parts, H, d).permute(2, 0, 3, 1, 4): `parts` tensors [B, H, n, d] (q, k, v) */
  const split = (x: string, n: number, parts: number, h: number) => {
    const t = transpose(reshape(x, [B, n, parts, h, D / h]), [2, 0, 3, 1, 4]);
    return Array.from({ length: parts }, (_, i) => G.op('Squeeze', [gather(t, i), G.ints([0])]));
  };
  /** the blocks' MLP: fc2(gelu(fc1(x))) */
  const mlp = (x: string, name: string) => linear(gelu(linear(x, `${name}.fc1`)), `${name}.fc2`);
  /** [B, H, N, d] -> [B, N, H d] */
  const merge = (x: string, n: number) => reshape(transpose(x, [0, 2, 1, 3]), [B, n, D]);
  const l2normalize = (x: string) => G.op('Div', [x, G.op('Max', [G.op('ReduceL2', [x], { axes: [-1], keepdims: 1 }), G.scalar(1e-12)])]);

  // ---- encoder: patch embedding, class and register tokens, position embeddings, blocks
  const X = 'images';
  let x = G.op('Conv', [X, w('encoder.patch_embed.proj.weight'), w('encoder.patch_embed.proj.bias')], { kernel_shape: [p, p], strides: [p, p] });
  x = transpose(reshape(x, [B, D, g * g]), [0, 2, 1]);
  const cls = G.op('Expand', [w('encoder.cls_token'), G.ints([B, 1, D])]);
  x = G.op('Concat', [cls, x], { axis: 1 });
  const posT = params.get('encoder.pos_embed')!;
  const pos = interpolatePositions(posT.data, enc.posGridSize, D, g, enc.interpolateOffset);
  x = G.op('Add', [x, G.weight('pos_embed_interpolated', pos, [1, 1 + g * g, D])]);
  const R = enc.numRegisterTokens;
  if (R > 0) x = G.op('Concat', [slice(x, 0, 1, 1), G.op('Expand', [w('encoder.register_tokens'), G.ints([B, R, D])]), slice(x, 1, 1 + g * g, 1)], { axis: 1 });
  const N = 1 + R + g * g;
  const last = Math.max(...net.targetLayers);
  const blocks: string[] = [];
  for (let i = 0; i <= last; i++) {
    const b = `encoder.blocks.${i}`;
    const h = enc.numHeads;
    const [qRaw, k, v] = split(linear(layerNorm(x, `${b}.norm1`, enc.lnEps), `${b}.attn.qkv`), N, 3, h);
    const q = G.op('Mul', [qRaw, G.scalar(Math.pow(D / h, -0.5))]);
    const attn = G.op('Softmax', [G.op('MatMul', [q, transpose(k, [0, 1, 3, 2])])], { axis: -1 });
    const a = linear(merge(G.op('MatMul', [attn, v]), N), `${b}.attn.proj`);
    x = G.op('Add', [x, G.op('Mul', [a, w(`${b}.ls1.gamma`)])]);
    const y = layerNorm(x, `${b}.norm2`, enc.lnEps);
    let m: string;
    if (enc.swiglu) {
      const [x1, x2] = G.opMany('Split', [linear(y, `${b}.mlp.w12`), G.ints([enc.mlpHiddenDim, enc.mlpHiddenDim])], { axis: -1 }, 2);
      m = linear(G.op('Mul', [G.op('Mul', [x1, G.op('Sigmoid', [x1])]), x2]), `${b}.mlp.w3`);
    } else {
      m = mlp(y, `${b}.mlp`);
    }
    x = G.op('Add', [x, G.op('Mul', [m, w(`${b}.ls2.gamma`)])]);
    blocks.push(x);
  }
  const skip = 1 + R;
  const T = g * g;
  let en = net.targetLayers.map((l) => blocks[l]);
  if (net.removeClassToken) en = en.map((e) => slice(e, skip, N, 1));
  const tokens = net.removeClassToken ? T : N;
  const mean = (xs: string[]) => G.op('ReduceMean', [G.op('Concat', xs.map((e) => G.op('Unsqueeze', [e, G.ints([1])])), { axis: 1 })], { axes: [1], keepdims: 0 });

  // ---- INP extractor, bottleneck, INP-guided decoder
  let feats = mean(en);
  const M = net.inpNum;
  const H = net.numHeads;
  let protos = G.op('Expand', [G.op('Unsqueeze', [w('prototype_token'), G.ints([0])]), G.ints([B, M, D])]);
  for (let i = 0; i < net.extractorDepth; i++) {
    const b = `aggregation.${i}`;
    const qIn = layerNorm(protos, `${b}.norm1`, net.inpLnEps);
    const kvIn = layerNorm(feats, `${b}.norm1`, net.inpLnEps);
    const q = heads(linear(qIn, `${b}.attn.q`), M, H);
    const [k, v] = split(linear(kvIn, `${b}.attn.kv`), tokens, 2, H);
    const attn = G.op('Softmax', [G.op('Mul', [G.op('MatMul', [q, transpose(k, [0, 1, 3, 2])]), G.scalar(Math.pow(D / H, -0.5))])], { axis: -1 });
    protos = G.op('Add', [protos, linear(merge(G.op('MatMul', [attn, v]), M), `${b}.attn.proj`)]);
    protos = G.op('Add', [protos, mlp(layerNorm(protos, `${b}.norm2`, net.inpLnEps), `${b}.mlp`)]);
  }
  feats = mlp(feats, 'bottleneck.0');
  const de: string[] = [];
  for (let i = 0; i < net.decoderDepth; i++) {
    const b = `decoder.${i}`;
    const q = l2normalize(heads(linear(layerNorm(feats, `${b}.norm1`, net.inpLnEps), `${b}.attn.q`), tokens, H));
    const [kRaw, v] = split(linear(layerNorm(protos, `${b}.norm1`, net.inpLnEps), `${b}.attn.kv`), M, 2, H);
    const k = l2normalize(kRaw);
    const attn = G.op('Relu', [G.op('Mul', [G.op('MatMul', [q, transpose(k, [0, 1, 3, 2])]), w(`${b}.attn.learn_scale`)])]);
    const y = linear(merge(G.op('MatMul', [attn, v]), tokens), `${b}.attn.proj`);
    feats = G.op('Add', [y, mlp(layerNorm(y, `${b}.norm2`, net.inpLnEps), `${b}.mlp`)]);
    de.push(feats);
  }
  de.reverse();

  // ---- anomaly map and score
  const maps = net.fuseLayerEncoder.map((groupEn, gi) => {
    let e = mean(groupEn.map((j) => en[j]));
    let d = mean(net.fuseLayerDecoder[gi].map((j) => de[j]));
    if (!net.removeClassToken) {
      e = slice(e, skip, N, 1);
      d = slice(d, skip, N, 1);
    }
    // torch's cosine_similarity over the channels: x.y / sqrt(max(|x|^2 |y|^2, eps^2)), eps 1e-8
    const dot = G.op('ReduceSum', [G.op('Mul', [e, d]), G.ints([-1])], { keepdims: 0 });
    const ee = G.op('ReduceSum', [G.op('Mul', [e, e]), G.ints([-1])], { keepdims: 0 });
    const dd = G.op('ReduceSum', [G.op('Mul', [d, d]), G.ints([-1])], { keepdims: 0 });
    const cos = G.op('Div', [dot, G.op('Sqrt', [G.op('Max', [G.op('Mul', [ee, dd]), G.scalar(1e-16)])])]);
    const m = reshape(G.op('Sub', [G.scalar(1), cos]), [B, 1, g, g]);
    return G.op('Resize', [m, '', '', G.ints([B, 1, size, size])], { mode: 'linear', coordinate_transformation_mode: 'align_corners' });
  });
  const raw = G.op('ReduceMean', [G.op('Concat', maps, { axis: 1 })], { axes: [1], keepdims: 1 });
  const padded = G.op('Pad', [raw, G.ints([0, 0, 2, 2, 0, 0, 2, 2])], { mode: 'reflect' });
  const map = G.op('Conv', [padded, G.weight('blur_kernel', gaussianKernel(5, 4), [1, 1, 5, 5])], { kernel_shape: [5, 5] });
  const kTop = Math.max(1, Math.floor(size * size * 0.01));
  const [top] = G.opMany('TopK', [reshape(map, [B, size * size]), G.ints([kTop])], { axis: 1, largest: 1, sorted: 1 }, 2);
  const score = G.op('ReduceMean', [top], { axes: [1], keepdims: 0 });
  G.nodes.push({ opType: 'Identity', input: [map], output: ['anomaly_map'], name: 'anomaly_map' });
  G.nodes.push({ opType: 'Identity', input: [score], output: ['score'], name: 'score' });
  return G.encode({ name: X, dims: [B, 3, size, size] }, [{ name: 'anomaly_map', dims: [B, 1, size, size] }, { name: 'score', dims: [B] }], input.producerVersion);
}
