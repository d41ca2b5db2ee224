/**
 * A small builder of ONNX graphs (opset 17) over onnx-proto's message types: named float
 * initializers, int64 constants, nodes with attributes, and the ModelProto bytes. Shapes are
 * static: an exported model has a fixed batch and image size, as upstream's convert_onnx.py.
 */
import { onnx } from 'onnx-proto';

export const OPSET = 17;

/** An attribute: an int, ints, a string, or a float as { f }. */
type Attr = number | number[] | string | { f: number };

export class OnnxGraph {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  #count = 0;

  readonly #named = new Set<string>();

  /** A float32 initializer (weights, constants); returns its name. A name given again is the same initializer. */
  weight(name: string, data: Float32Array, dims: number[]): string {
    if (this.#named.has(name)) return name;
    this.#named.add(name);
    const bytes = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    this.initializers.push({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: bytes });
    return name;
  }

  /** A float32 scalar constant. */
  scalar(v: number): string {
    return this.weight(`const_${this.#count++}`, Float32Array.of(v), []);
  }

  /** An int64 constant vector (shapes, axes, indices). */
  ints(values: number[]): string {
    const name = `ints_${this.#count++}`;
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims: [values.length], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  }

  /** One node; returns its output's name (or names, with `outputs` > 1). */
  op(type: string, inputs: string[], attrs: Record<string, Attr> = {}, outputs = 1): string {
    return this.opMany(type, inputs, attrs, outputs)[0];
  }

  opMany(type: string, inputs: string[], attrs: Record<string, Attr> = {}, outputs = 1): string[] {
    const id = this.#count++;
    const out = Array.from({ length: outputs }, (_, i) => `${type.toLowerCase()}_${id}${outputs > 1 ? `_${i}` : ''}`);
    const attribute = Object.entries(attrs).map(([name, v]): onnx.IAttributeProto => {
      const T = onnx.AttributeProto.AttributeType;
      if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
      if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
      if (typeof v === 'object') return { name, type: T.FLOAT, f: v.f };
      return { name, type: T.INT, i: v };
    });
    this.nodes.push({ opType: type, input: inputs, output: out, name: `${type}_${id}`, attribute });
    return out;
  }

  /** The model's bytes: a graph with one float input and the named float outputs. */
  encode(input: { name: string; dims: number[] }, outputs: Array<{ name: string; dims: number[] }>, producerVersion: string): Uint8Array {
    const info = (v: { name: string; dims: number[] }): onnx.IValueInfoProto => ({
      name: v.name,
      type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: v.dims.map((d) => ({ dimValue: d })) } } },
    });
    const model: onnx.IModelProto = {
      irVersion: 8,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: 'inp-former',
      producerVersion,
      graph: { name: 'inp_former', node: this.nodes, initializer: this.initializers, input: [info(input)], output: outputs.map(info) },
    };
    return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
  }
}
