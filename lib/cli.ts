#!/usr/bin/env node
/**
 * The `inp-former` command: fit, predict, evaluate, info, weights download.
 * Errors go to stderr, whole (a load error carries its install advice), with a non-zero exit
 * code; `--help` works everywhere.
 */
import { promises as fs, constants as fsConstants } from 'node:fs';
import { ensureDir } from './files';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { InpFormer, CreateOptions, LoadOptions, RandomEncoderSpec } from './model/model';
import { EXPORT_ONNX, FIT, FOLDER_DATASET, RUNTIME, Schema, WORKER } from './model/options';
import type { MetricSet } from './results/report';
import type { CategorySet, FolderDataset } from './data/dataset';
import { WorkerEvent, startWorker } from './queue/worker';
import { InpFormerError } from './errors';
import { readCheckpointFile } from './checkpoint/reader';
import { inferEncoderSpec, inferNetworkConfig, interpretCheckpoint } from './model/architecture';
import { IMAGE_EXTENSIONS, listImages } from './data/images';
import { DINOV2_WEIGHTS, cacheDir, downloadWeights } from './weights';
import type { FitOptions, FitProgress } from './model/training';
import { doctor, formatDoctorReport } from './native/doctor';

/** The small built-in encoder used when no DINOv2 weights are given (random, untrained). */
export const TINY_ENCODER: RandomEncoderSpec = { embedDim: 64, depth: 10, numHeads: 4, posGridSize: 16, seed: 1 };

/**
 * The CLI's option flags: each is an option of lib/model/options.ts, which owns its range, default and
 * help. Checked before anything runs, so a typo never starts a 120 GB allocation
 * (--image-size 100000), a run that never ends (--threads 100000) or a fit that saves NaN
 * weights (--lr=1e308). Integers are decimal only (`0x10` is not 16).
 */
type Flag = { flag: string; schema: Schema; key: string; kind: 'integer' | 'number' | 'text' | 'list' };
const flag = (name: string, schema: Flag['schema'], key: string, kind: Flag['kind']): Flag => ({ flag: name, schema, key, kind });
const RUNTIME_FLAGS = [
  flag('device', RUNTIME, 'device', 'text'), flag('precision', RUNTIME, 'precision', 'text'), flag('threads', RUNTIME, 'threads', 'integer'),
  flag('max-image-pixels', RUNTIME, 'maxImagePixels', 'integer'),
];
const WORKER_FLAGS = [
  flag('redis', WORKER, 'redis', 'text'), flag('models', WORKER, 'models', 'text'), flag('queue', WORKER, 'name', 'text'),
  flag('prefix', WORKER, 'prefix', 'text'), flag('concurrency', WORKER, 'concurrency', 'integer'), flag('cache', WORKER, 'cacheSize', 'integer'),
  flag('threads', WORKER, 'threads', 'integer'), flag('device', WORKER, 'device', 'text'), flag('lock-ms', WORKER, 'lockDurationMs', 'integer'),
  flag('stalled-ms', WORKER, 'stalledIntervalMs', 'integer'), flag('max-stalled', WORKER, 'maxStalledCount', 'integer'),
];
const FIT_FLAGS = [
  flag('epochs', FIT, 'epochs', 'integer'), flag('batch-size', FIT, 'batchSize', 'integer'), flag('max-steps', FIT, 'maxSteps', 'integer'),
  flag('warmup', FIT, 'warmupSteps', 'integer'), flag('lr', FIT, 'learningRate', 'number'), flag('seed', FIT, 'seed', 'integer'),
  flag('shot', FIT, 'fewShot', 'integer'), flag('recipe', FIT, 'recipe', 'text'),
  flag('image-size', RUNTIME, 'imageSize', 'integer'), flag('crop-size', RUNTIME, 'cropSize', 'integer'), ...RUNTIME_FLAGS,
];

const EXPORT_FLAGS = [flag('batch', EXPORT_ONNX, 'batch', 'integer'), flag('size', EXPORT_ONNX, 'size', 'integer')];
// A Folder-style dataset (anomalib's Folder) instead of an MVTec folder; --abnormal-dir and --mask-dir repeat.
const FOLDER_FLAGS = [
  flag('normal-dir', FOLDER_DATASET, 'normalDir', 'text'), flag('abnormal-dir', FOLDER_DATASET, 'abnormalDirs', 'list'),
  flag('mask-dir', FOLDER_DATASET, 'maskDirs', 'list'), flag('normal-test-dir', FOLDER_DATASET, 'normalTestDir', 'text'),
  flag('normal-split-ratio', FOLDER_DATASET, 'normalSplitRatio', 'number'),
];

function flagHelp(flags: Flag[]): string {
  return flags
    .map((f) => {
      const rule = f.schema[f.key];
      const left = `  --${f.flag} <${f.kind === 'integer' || f.kind === 'number' ? 'n' : 'x'}>${f.kind === 'list' ? '...' : ''}`.padEnd(28);
      return `${left}${rule.doc}${rule.fallback !== undefined ? ` (default ${rule.fallback})` : ''}`;
    })
    .join('\n');
}

/** The parseArgs options of some flags. */
const argOptions = (flags: Flag[]) => Object.fromEntries(flags.map((f) => [f.flag, { type: 'string' as const, multiple: f.kind === 'list' }]));

/** A flag's value, parsed strictly and checked by its option's rule; undefined when not given. */
function flagValue(values: Record<string, unknown>, f: Flag): unknown {
  const raw = values[f.flag];
  if (raw === undefined) return undefined;
  if (f.kind === 'list') return checkFlag(f, raw);
  const v = String(raw);
  let parsed: unknown = v;
  if (f.kind === 'integer' && /^\d+$/.test(v.trim())) parsed = Number(v);
  if (f.kind === 'number' && v.trim() !== '' && Number.isFinite(Number(v))) parsed = Number(v);
  return checkFlag(f, parsed);
}

function checkFlag(f: Flag, value: unknown): unknown {
  try {
    return f.schema[f.key].check(value, `--${f.flag}`);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** The Folder dataset the flags describe, if any. */
function folderDatasetOf(values: Record<string, unknown>): FolderDataset | undefined {
  const o = optionsOf(values, FOLDER_FLAGS) as Partial<FolderDataset>;
  if (Object.keys(o).length === 0) return undefined;
  if (o.normalDir === undefined) throw new UsageError('a Folder dataset needs --normal-dir (with --abnormal-dir, --mask-dir, --normal-test-dir as it has them)');
  return o as FolderDataset;
}

/**
 * The data of fit or evaluate: one folder argument, a Folder dataset by flags, or with
 * --categories the folder as a dataset root and the categories in it (a,b,c or 'all').
 */
function dataOf(positional: string | undefined, values: Record<string, unknown>, usage: string): string | FolderDataset | CategorySet {
  const folder = folderDatasetOf(values);
  if ((positional === undefined) === (folder === undefined)) throw new UsageError(`usage: ${usage} (a folder, or a Folder dataset by --normal-dir ...; not both)`);
  const categories = values.categories as string | undefined;
  if (categories !== undefined) {
    if (positional === undefined) throw new UsageError('--categories needs the dataset folder as the argument');
    const names = categories.split(',').map((c) => c.trim()).filter(Boolean);
    if (names.length === 0) throw new UsageError("--categories: give names (a,b,c) or 'all'");
    return names.length === 1 && names[0] === 'all' ? { root: positional } : { root: positional, categories: names };
  }
  return positional ?? folder!;
}

/** The values of `flags` as options: { epochs: 3, learningRate: 0.001, ... } (unset ones left out). */
function optionsOf(values: Record<string, unknown>, flags: Flag[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of flags) {
    const v = flagValue(values, f);
    if (v !== undefined) out[f.key] = v;
  }
  return out;
}

const folderHelp = `\nA Folder-style dataset (anomalib's Folder) instead of <dir>:\n${flagHelp(FOLDER_FLAGS)}\n`;

const HELP: Record<string, string> = {
  main: `inp-former <command> [options]

Commands:
  fit <dir> --out <model.pth>        train on normal images (a folder, an MVTec category, --normal-dir ...,
                                     or a dataset's categories: <root> --categories a,b,c|all)
  predict <model> <images|dirs...>   score images; --heatmaps <dir>, --json
  evaluate <model> <category-dir>    image and pixel metrics on an MVTec AD-layout category (or --normal-dir ...)
  info <checkpoint>                  format, architecture, tensors and thresholds of a file
  export <model> --out <model.onnx>  the network, map and score as an ONNX graph (opset 17)
  weights download <name>            fetch Meta's DINOv2 weights into ${cacheDir()}
  doctor                             libtorch, binary, BLAS, CPU features, threads, CUDA; what to install
  worker --redis <url> --models <dir>   run queued fit/predict/evaluate jobs (inp-former/queue; needs bullmq, ioredis)

Run inp-former <command> --help for its options; inp-former --version prints the version.`,
  fit: `inp-former fit <dir> --out <model.pth> [options]
  inp-former fit --normal-dir <dir> [--abnormal-dir <dir>...] [--mask-dir <dir>...] --out <model.pth> [options]

  --encoder <file>          DINOv2 weights (.pth, .safetensors, TorchScript); default: the small
                            built-in random encoder (for trying things out, not for real use)
${flagHelp(FIT_FLAGS)}
  --validation <dir>        calibrate thresholds on a labelled folder after training (default for
                            a Folder dataset with abnormal folders: its test part)
  --categories <a,b,c|all>  <dir> is a dataset root: one model for these categories (multi-class),
                            thresholds per category from each one's test set
${folderHelp}
  --checkpoint <file>       save model + training state every epoch
  --resume <file>           continue from such a checkpoint
  --config <file.json>      API options: { "create": {...}, "fit": {...} } (flags win)

Ctrl-C stops after the current step and saves the model to --out.`,
  predict: `inp-former predict <model> <images or folders...> [--heatmaps <dir>] [--json] [--map-size input|crop] [--category <name>] [--config <file.json>]\n\n  --category <name>         a multi-class model: labels with this category's thresholds\n${flagHelp(RUNTIME_FLAGS)}\n  --config <file.json>      load() options: { "load": {...} } (flags win)`,
  evaluate: `inp-former evaluate <model> <category-dir> [--json] [--report <dir>] [--config <file.json>]\n  inp-former evaluate <model> <dataset-root> --categories a,b,c|all    (a row per category and their mean)\n  inp-former evaluate <model> --normal-dir <dir> --abnormal-dir <dir>... [--mask-dir <dir>...] [options]\n\n${flagHelp(RUNTIME_FLAGS)}\n  --report <dir>            also write a visual report: a panel per image, ROC and PRO curves, index.html\n${folderHelp}\n  --config <file.json>      load() options: { "load": {...} } (flags win)`,
  worker: `inp-former worker --redis <url> --models <dir> [options]

${flagHelp(WORKER_FLAGS)}
  --json                    log events as JSON lines

Runs jobs added with inp-former/queue's InpFormerQueue until stopped. SIGTERM or Ctrl-C: stop
taking jobs and finish the running ones; a second one: quit now (another worker resumes a
running fit from its last checkpoint once the lock expires). See docs/scale-out.md.`,
  info: `inp-former info <checkpoint> [--json]    (reads the file only; runs nothing)`,
  export: `inp-former export <model> --out <model.onnx> [--batch N] [--size N] [--config <file.json>]

${flagHelp(EXPORT_FLAGS)}

Input 'images': pre-processed images [batch, 3, size, size] (resize, centre crop, ImageNet
mean/std); outputs 'anomaly_map' [batch, 1, size, size] and 'score' [batch], as predict().`,
  doctor: `inp-former doctor [--json]    (exit code 1 when the native addon cannot load)`,
  weights: `inp-former weights download <name> [--dir <folder>]

  names: ${Object.keys(DINOV2_WEIGHTS).join(', ')}
  INP_FORMER_WEIGHTS_URL overrides the base URL, INP_FORMER_CACHE the folder.`,
};

class UsageError extends Error {}

/** The entries of `o` that are set. */
const defined = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

/**
 * --config FILE: API options as JSON, by call — { "create": {...}, "fit": {...} } for fit,
 * { "load": {...} } for predict and evaluate. Flags win over it; the API checks every key.
 */
async function readConfig(file: string | undefined, sections: string[]): Promise<Record<string, Record<string, unknown>>> {
  if (file === undefined) return {};
  const text = await fs.readFile(file, 'utf8').catch((err: Error) => {
    throw new UsageError(`--config ${file}: ${err.message}`);
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--config ${file}: not JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`--config ${file}: expected an object { ${sections.map((k) => `"${k}": {...}`).join(', ')} }`);
  for (const [k, v] of Object.entries(parsed)) {
    if (!sections.includes(k)) throw new UsageError(`--config ${file}: unknown section '${k}' (this command reads ${sections.map((x) => `'${x}'`).join(', ')})`);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new UsageError(`--config ${file}: '${k}' must be an object of options`);
  }
  return parsed as Record<string, Record<string, unknown>>;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports -- the package's own version, read once
const PACKAGE_VERSION: string = require('../package.json').version;

function cmdDoctor(args: string[]): number {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) return out(HELP.doctor), 0;
  const report = doctor();
  out(values.json ? JSON.stringify(report, null, 2) : formatDoctorReport(report));
  return report.ok ? 0 : 1;
}

function out(s: string): void {
  process.stdout.write(s + '\n');
}

/**
 * Where a fit will write and read, checked before it trains: a wrong --out or --validation used
 * to surface only after training, losing the trained weights.
 */
async function checkFitPaths(p: { out: string; checkpoint?: string; validation?: string; resume?: string }): Promise<void> {
  for (const [flag, file] of [['--out', p.out], ['--checkpoint', p.checkpoint]] as const) {
    if (file === undefined) continue;
    const st = await fs.stat(file).catch(() => undefined);
    if (st?.isDirectory()) throw new UsageError(`${flag} ${file} is a folder; give a file name, e.g. ${path.join(file, 'model.pth')}`);
    const dir = path.dirname(path.resolve(file));
    await ensureDir(dir, (m) => new UsageError(`${flag} ${file}: ${m}`));
    await fs.access(dir, fsConstants.W_OK).catch(() => {
      throw new UsageError(`${flag} ${file}: cannot write in ${dir}`);
    });
  }
  if (p.validation !== undefined && !(await fs.stat(p.validation).catch(() => undefined))?.isDirectory()) {
    throw new UsageError(`--validation ${p.validation}: no such folder`);
  }
  if (p.resume !== undefined && !(await fs.stat(p.resume).catch(() => undefined))?.isFile()) {
    throw new UsageError(`--resume ${p.resume}: no such checkpoint file`);
  }
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '--:--';
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
}

/**
 * A fit's progress: each step redraws one bar line on a terminal; each epoch ends with a summary
 * line of its own (the epoch's mean loss), so a step's loss is never overwritten by a mean.
 */
function progressLine(e: FitProgress): string {
  if (e.type === 'epoch') {
    return `epoch ${e.epoch}/${e.epochs} done (step ${e.step}/${e.steps}): mean loss ${e.loss.toFixed(4)}, ${e.imagesPerSecond.toFixed(1)} img/s, ETA ${fmtTime(e.etaSeconds)}`;
  }
  const width = 24;
  const filled = Math.round((e.step / e.steps) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] epoch ${e.epoch}/${e.epochs} step ${e.step}/${e.steps} ` +
    `loss ${e.loss.toFixed(4)} ${e.imagesPerSecond.toFixed(1)} img/s ETA ${fmtTime(e.etaSeconds)}`;
}

async function cmdFit(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: {
      out: { type: 'string' }, encoder: { type: 'string' }, validation: { type: 'string' }, checkpoint: { type: 'string' },
      resume: { type: 'string' }, categories: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean' }, ...argOptions(FIT_FLAGS), ...argOptions(FOLDER_FLAGS),
    },
  });
  if (values.help) return out(HELP.fit), 0;
  if (positionals.length > 1 || !values.out) throw new UsageError('usage: inp-former fit <dir> --out <model.pth> (see --help)');
  const data = dataOf(positionals[0], values, 'inp-former fit <dir> --out <model.pth>');
  const given = optionsOf(values, FIT_FLAGS);
  const { epochs, batchSize, maxSteps, warmupSteps, learningRate, seed, fewShot, recipe, imageSize, cropSize, device, precision, threads, maxImagePixels } = given;
  const config = await readConfig(values.config, ['create', 'fit']);
  const create = { ...config.create, ...defined({ encoder: values.encoder, imageSize, cropSize, device, precision, threads, seed, maxImagePixels }) } as CreateOptions;
  const fitOptions = {
    ...config.fit,
    ...defined({ epochs, batchSize, maxSteps, warmupSteps, learningRate, seed, fewShot, recipe, validation: values.validation, resumeFrom: values.resume, checkpoint: values.checkpoint ? { path: values.checkpoint } : undefined }),
  } as FitOptions;
  // as anomalib does with a Folder datamodule: thresholds from its test part unless told otherwise
  if (fitOptions.validation === undefined && typeof data !== 'string' && 'abnormalDirs' in data && data.abnormalDirs !== undefined) fitOptions.validation = data;
  // a category set: per-category thresholds from each category's test set
  if (fitOptions.validation === undefined && typeof data !== 'string' && !('normalDir' in data)) fitOptions.validation = data;
  await checkFitPaths({ out: values.out, checkpoint: fitOptions.checkpoint?.path, validation: typeof fitOptions.validation === 'string' ? fitOptions.validation : undefined, resume: fitOptions.resumeFrom });
  if (create.encoder === undefined) {
    create.encoder = TINY_ENCODER;
    process.stderr.write('note: no --encoder given: using the small built-in RANDOM encoder (untrained; for trying things out). Real use: --encoder dinov2_vitb14_reg4_pretrain.pth\n');
  }
  const model = await InpFormer.create(create);
  const controller = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('\nstopping after this step (Ctrl-C again to quit without saving)...\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  const tty = process.stderr.isTTY;
  try {
    const run = model.fit(data, { ...fitOptions, signal: controller.signal, onWarning: (m) => process.stderr.write(`warning: ${m}\n`) });
    for await (const e of run) {
      if (e.type === 'epoch') process.stderr.write(`${tty ? '\r' : ''}${progressLine(e)}${tty ? '\x1b[K' : ''}\n`);
      else if (tty) process.stderr.write(`\r${progressLine(e)}\x1b[K`);
    }
    const summary = await run;
    await model.save(values.out);
    out(`trained ${summary.steps} steps (${summary.epochs} epochs, ${summary.imagesSeen} images) in ${summary.seconds.toFixed(1)} s, final loss ${summary.finalLoss.toFixed(4)}; saved ${values.out}`);
    for (const [name, th] of Object.entries(summary.categoryThresholds ?? {})) {
      out(`calibrated ${name}: image threshold ${th.imageThreshold.toPrecision(5)}, pixel threshold ${th.pixelThreshold.toPrecision(5)} (saved with the model)`);
    }
    if (summary.thresholds) {
      const th = summary.thresholds;
      out(`calibrated on ${typeof fitOptions.validation === 'string' ? fitOptions.validation : `the test part of ${(fitOptions.validation as FolderDataset).normalDir}`}: image threshold ${th.imageThreshold.toPrecision(5)}, pixel threshold ${th.pixelThreshold.toPrecision(5)} (saved with the model)`);
    }
    return 0;
  } catch (err) {
    if (interrupted && (err as InpFormerError).code === 'ERR_INP_ABORTED') {
      await model.save(values.out);
      process.stderr.write(`interrupted: saved the weights so far to ${values.out}\n`);
      return 130;
    }
    if ((err as InpFormerError).code === 'ERR_INP_DIVERGED') {
      // the model holds the weights of the last finite step: keep them, say so, fail
      await model.save(values.out);
      process.stderr.write(`inp-former: ${(err as Error).message}\nsaved the last finite weights to ${values.out}\n`);
      return 1;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
    await model.dispose();
  }
}

async function expandInputs(items: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const item of items) {
    const st = await fs.stat(item).catch(() => undefined);
    if (!st) throw new UsageError(`${item}: no such file or folder`);
    if (st.isDirectory()) for (const f of await listImages(item)) files.push(f); // no push(...): folders can hold 100,000s
    else if (IMAGE_EXTENSIONS.has(path.extname(item).toLowerCase())) files.push(item);
    else throw new UsageError(`${item}: not an image (${[...IMAGE_EXTENSIONS].join(', ')})`);
  }
  return files;
}

async function cmdPredict(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: {
      heatmaps: { type: 'string' }, json: { type: 'boolean' }, 'map-size': { type: 'string' }, category: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean' }, ...argOptions(RUNTIME_FLAGS),
    },
  });
  if (values.help) return out(HELP.predict), 0;
  if (positionals.length < 2) throw new UsageError('usage: inp-former predict <model> <images or folders...>');
  const files = await expandInputs(positionals.slice(1));
  const config = await readConfig(values.config, ['load']);
  const model = await InpFormer.load(positionals[0], { ...config.load, ...optionsOf(values, RUNTIME_FLAGS) } as LoadOptions);
  // streamed: each row as soon as its image is scored, a bounded number of images in memory
  const tty = process.stderr.isTTY;
  const started = Date.now();
  const progress = ({ done, total }: { done: number; total: number | null }) => {
    if (!tty || total === null) return;
    const eta = done ? ((Date.now() - started) / 1000 / done) * (total - done) : 0;
    process.stderr.write(`\r${done}/${total} images, ETA ${fmtTime(eta)}\x1b[K${done === total ? '\r\x1b[K' : ''}`);
  };
  try {
    const rows = model.predictEach(files, { heatmap: values.heatmaps, mapSize: values['map-size'] as 'input' | 'crop' | undefined, category: values.category, onProgress: progress });
    if (values.json) {
      let first = true;
      out('[');
      for await (const { index, prediction: r } of rows) {
        const row = { file: files[index], score: r.score, normalizedScore: r.normalizedScore, isAnomalous: r.isAnomalous, heatmap: r.heatmap };
        out(`${first ? '' : ','}${JSON.stringify(row)}`);
        first = false;
      }
      out(']');
    } else {
      const w = Math.max(4, ...files.map((f) => f.length));
      out(`${'file'.padEnd(w)}  score     normalized  anomalous`);
      for await (const { index, prediction: r } of rows) {
        out(`${files[index].padEnd(w)}  ${r.score.toFixed(5)}   ${r.normalizedScore === null ? '-'.padEnd(10) : r.normalizedScore.toFixed(4).padEnd(10)}  ${r.isAnomalous === null ? '- (not calibrated)' : r.isAnomalous ? 'yes' : 'no'}`);
      }
    }
    return 0;
  } finally {
    await model.dispose();
  }
}

async function cmdEvaluate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: { json: { type: 'boolean' }, report: { type: 'string' }, categories: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean' }, ...argOptions(RUNTIME_FLAGS), ...argOptions(FOLDER_FLAGS) },
  });
  if (values.help) return out(HELP.evaluate), 0;
  if (positionals.length < 1 || positionals.length > 2) throw new UsageError('usage: inp-former evaluate <model> <category-dir>');
  const data = dataOf(positionals[1], values, 'inp-former evaluate <model> <category-dir>');
  const config = await readConfig(values.config, ['load']);
  const model = await InpFormer.load(positionals[0], { ...config.load, ...optionsOf(values, RUNTIME_FLAGS) } as LoadOptions);
  try {
    const r = await model.evaluate(data, defined({ report: values.report }));
    if (values.json) return out(JSON.stringify(r, null, 2)), 0;
    const f = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '   -  ' : x.toFixed(4));
    type Row = { image: MetricSet; pixel?: MetricSet & { aupro: number } };
    const row = (name: string, m: Row) =>
      out(`${name.padEnd(14)} ${f(m.image.auroc).padEnd(12)} ${f(m.image.ap).padEnd(9)} ${f(m.image.f1Max).padEnd(9)} ${f(m.pixel?.auroc).padEnd(12)} ${f(m.pixel?.ap).padEnd(9)} ${f(m.pixel?.f1Max).padEnd(9)} ${f(m.pixel?.aupro)}`);
    out(`${r.images} images, ${r.anomalous} anomalous`);
    out('scope          image AUROC  image AP  image F1  pixel AUROC  pixel AP  pixel F1  AUPRO');
    if ('categories' in r) {
      // upstream's multi-class table: a row per category, then their mean
      for (const [name, m] of Object.entries(r.categories)) row(name, m);
      row('mean', r.mean);
      for (const [name, m] of Object.entries(r.categories)) if (m.reportFile) out(`report of ${name}: ${m.reportFile}`);
      return 0;
    }
    row('all', r);
    for (const [type, m] of Object.entries(r.perDefectType)) row(type, m);
    if (r.reportFile) out(`report: ${r.reportFile}`);
    return 0;
  } finally {
    await model.dispose();
  }
}

async function cmdExport(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: { out: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean' }, ...argOptions(EXPORT_FLAGS) },
  });
  if (values.help) return out(HELP.export), 0;
  if (positionals.length !== 1 || !values.out) throw new UsageError('usage: inp-former export <model> --out <model.onnx> [--batch N] [--size N]');
  const options = optionsOf(values, EXPORT_FLAGS) as { batch?: number; size?: number };
  const config = await readConfig(values.config, ['load']);
  const model = await InpFormer.load(positionals[0], config.load as LoadOptions);
  try {
    await model.exportOnnx(values.out, options);
    const batch = options.batch ?? 1;
    const size = options.size ?? model.config.cropSize;
    out(`wrote ${values.out}: input 'images' [${batch}, 3, ${size}, ${size}] (pre-processed); outputs 'anomaly_map' [${batch}, 1, ${size}, ${size}], 'score' [${batch}]`);
    return 0;
  } finally {
    await model.dispose();
  }
}

async function cmdInfo(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' }, help: { type: 'boolean' } } });
  if (values.help) return out(HELP.info), 0;
  if (positionals.length !== 1) throw new UsageError('usage: inp-former info <checkpoint>');
  const file = await readCheckpointFile(positionals[0]);
  const ck = interpretCheckpoint(file);
  let params = 0;
  for (const t of ck.weights.values()) params += t.numel;
  const info: Record<string, unknown> = { file: positionals[0], format: file.format, kind: ck.kind, tensors: ck.weights.size, parameters: params };
  if (ck.kind !== 'encoder') info.architecture = inferNetworkConfig(ck.weights, ck.recorded, {}, positionals[0]);
  else {
    info.encoder = inferEncoderSpec(ck.weights, undefined, positionals[0]);
  }
  if (ck.recorded.imageSize) info.imageSize = ck.recorded.imageSize;
  if (ck.recorded.cropSize) info.cropSize = ck.recorded.cropSize;
  info.thresholds = ck.thresholds ?? null;
  if (values.json) return out(JSON.stringify(info, null, 2)), 0;
  for (const [k, v] of Object.entries(info)) out(`${k.padEnd(13)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  return 0;
}

async function cmdWeights(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { dir: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help || positionals[0] !== 'download') {
    out(HELP.weights);
    return values.help ? 0 : 2;
  }
  if (positionals.length !== 2) throw new UsageError('usage: inp-former weights download <name>');
  const tty = process.stderr.isTTY;
  let last = 0;
  const file = await downloadWeights(positionals[1], {
    dir: values.dir,
    onProgress: ({ received, total }) => {
      const now = Date.now();
      if (now - last < 200 && received !== total) return;
      last = now;
      const mb = (b: number) => (b / 2 ** 20).toFixed(1);
      const msg = `downloading ${positionals[1]}: ${mb(received)}${total ? ` / ${mb(total)} MiB (${((100 * received) / total).toFixed(0)}%)` : ' MiB'}`;
      process.stderr.write(tty ? `\r${msg}\x1b[K` : msg + '\n');
    },
  });
  if (tty) process.stderr.write('\n');
  out(file);
  return 0;
}

function workerEventLine(e: WorkerEvent): string | undefined {
  switch (e.type) {
    case 'started':
      return `job ${e.jobId}: ${e.kind} started (attempt ${e.attempt}${e.resumeFromStep !== null ? `, resuming from step ${e.resumeFromStep}` : ''})`;
    case 'progress':
      return e.progress.type === 'epoch' ? `job ${e.jobId}: ${progressLine(e.progress)}` : undefined;
    case 'completed':
      return `job ${e.jobId}: ${e.kind} completed in ${e.seconds.toFixed(1)} s`;
    case 'failed':
      return `job ${e.jobId}: ${e.kind} failed after ${e.seconds.toFixed(1)} s: ${e.error}`;
    case 'error':
      return `worker error: ${e.error}`;
  }
}

async function cmdWorker(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' }, help: { type: 'boolean' }, ...argOptions(WORKER_FLAGS) } });
  if (values.help) return out(HELP.worker), 0;
  const given = optionsOf(values, WORKER_FLAGS) as { redis?: string; models?: string; name?: string };
  if (positionals.length !== 0 || !given.redis || !given.models) throw new UsageError('usage: inp-former worker --redis <url> --models <dir> (see --help)');
  const log = (e: WorkerEvent) => {
    const line = values.json ? JSON.stringify({ time: new Date().toISOString(), ...e }) : workerEventLine(e);
    if (line) process.stderr.write(line + '\n');
  };
  const worker = await startWorker({ ...given, redis: given.redis, models: given.models, onEvent: log });
  process.stderr.write(`worker ${worker.id} on queue '${given.name ?? WORKER.name.fallback}' (models: ${given.models})\n`);
  let stops = 0;
  const stopped = new Promise<void>((done) => {
    const stop = () => {
      stops++;
      process.stderr.write(stops === 1 ? 'stopping: finishing the running jobs (again to quit now)\n' : 'quitting now\n');
      worker.close(stops > 1).then(done, done);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await stopped;
  return stops > 1 ? 130 : 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'fit':
        return await cmdFit(rest);
      case 'predict':
        return await cmdPredict(rest);
      case 'evaluate':
        return await cmdEvaluate(rest);
      case 'info':
        return await cmdInfo(rest);
      case 'export':
        return await cmdExport(rest);
      case 'weights':
        return await cmdWeights(rest);
      case 'doctor':
        return cmdDoctor(rest);
      case 'worker':
        return await cmdWorker(rest);
      case '--version':
      case '-v':
        out(PACKAGE_VERSION);
        return 0;
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        out(HELP.main);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command '${command}' (see inp-former --help)`);
    }
  } catch (err) {
    const e = err as Error & { code?: string };
    // Native load errors already start with the package name; say it once.
    const msg = (e.message ?? String(err)).replace(/^inp-former: /, '');
    process.stderr.write(`inp-former: ${msg}\n`);
    return err instanceof UsageError || e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ? 2 : 1;
  }
}

if (require.main === module) {
  // `inp-former predict ... | head` closes stdout early: that is not an error
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
