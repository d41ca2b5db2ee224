// An ES-module consumer of the package under strict TypeScript (module node16): compiled by
// test/types.test.js. Lines marked @ts-expect-error must stay errors: literal unions, not strings.
import { InpFormer, InpFormerError, type Device, type ErrorCode, type Prediction } from 'inp-former';
import inpFormer from 'inp-former';
import { InpFormerQueue, type JobOptions } from 'inp-former/queue';

const device: Device = 'cuda:1';
// @ts-expect-error a misspelt device is a type error
const typo: Device = 'cdua';

async function main(png: Uint8Array): Promise<number> {
  const model = await InpFormer.load('model.pth', { device, signal: AbortSignal.timeout(1000) });
  const p: Prediction = await model.predict(png);
  for await (const r of model.predictEach(['a.png', 'b.png'], { window: 4 })) console.log(r.index, r.prediction.score);
  await model.dispose();
  return p.score;
}

function codeOf(e: unknown): ErrorCode | undefined {
  if (e instanceof InpFormerError) {
    // @ts-expect-error a misspelt error code is a type error
    if (e.code === 'ERR_INP_BUSYY') return undefined;
    return e.code;
  }
  return undefined;
}

const job: JobOptions = { id: 'weave-1' };
const sameClass: typeof InpFormer = inpFormer.InpFormer;
void [typo, main, codeOf, job, sameClass, InpFormerQueue];
