// A CommonJS consumer (.cts, module node16) of the package under strict TypeScript: compiled by
// test/types.test.js beside consumer.mts. It sees the CommonJS types through require().
import inpFormer = require('inp-former');
import queue = require('inp-former/queue');

export async function scoreAll(files: string[], signal: AbortSignal): Promise<number[]> {
  const model = await inpFormer.InpFormer.load('model.pth', { signal, threads: 2, onProgress: (e) => console.log(e.stage) });
  try {
    return (await model.predict(files, { signal })).map((p) => p.score);
  } catch (e) {
    const code: inpFormer.ErrorCode | undefined = e instanceof inpFormer.InpFormerError ? e.code : undefined;
    // @ts-expect-error 'tpu' is not a Device
    const device: inpFormer.Device = code === 'ERR_INP_ABORTED' ? 'cpu' : 'tpu';
    throw new Error(`${code} on ${device}`);
  } finally {
    await model.dispose();
  }
}

export const failed: typeof queue.JobFailedError = queue.JobFailedError;
