/**
 * sharp, required on first use rather than when the package loads: libvips maps ~19 MiB that a
 * process which only runs tensors through a model (inferTensor, fit on tensors) never needs.
 */
import type Sharp from 'sharp';

type SharpFactory = typeof Sharp;
let loaded: SharpFactory | undefined;

/** sharp(input, options), as the library's default export. */
export function sharp(...args: Parameters<SharpFactory>): ReturnType<SharpFactory> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  loaded ??= require('sharp') as SharpFactory;
  return loaded(...args);
}
