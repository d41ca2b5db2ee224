/**
 * The visual report of evaluate(set, { report: dir }), as anomalib's visualiser and its metric
 * plots give them: per image a panel (image | anomaly map with a colour bar | predicted mask |
 * ground truth) with its score and labels; the ROC and PRO curves as pictures; an index.html
 * with the metric table that ties them together and opens in any browser (no script needed;
 * a small one marks the page once every picture has loaded, which the tests read in headless
 * Chromium). Pictures are SVG laid out here and rasterised by sharp, so text and colour bar come
 * from one place. The report is written into a temporary folder beside `dir` and renamed into
 * place: a failed or aborted report leaves nothing half-written.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { sharp } from '../data/sharp';
import { AbortError, FileWriteError } from '../errors';
import { ensureDir, tempFileFor } from '../files';
import { sharpFailure } from '../data/images';
import type { ScoredSet } from './evaluation';
import type { EvaluationCurves, EvaluationReport, CurvePoints, MetricSet } from './report';
import { Thresholds, normalizeMap, normalizeScore } from './postprocess';
import { VIRIDIS, heatmapFiles, renderHeatmap } from './heatmap';

export interface VisualReportInput {
  set: ScoredSet;
  report: EvaluationReport;
  curves: EvaluationCurves;
  thresholds: Thresholds;
  /** 'model': the model's calibrated thresholds; 'set': F1-max thresholds of this very set */
  thresholdsFrom: 'model' | 'set';
  /** the model's resize before its centre crop (set.crop) */
  imageSize: number;
  maxImagePixels: number;
  /** what was evaluated, for the page's heading */
  title: string;
  signal?: AbortSignal;
}

/** Marks an index.html as ours: only such a folder is replaced by a new report. */
const GENERATOR = 'inp-former visual report';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(4));
const rgb = (c: number[]) => `rgb(${c.map((v) => Math.round(v)).join(',')})`;
const png = (pixels: Buffer | Uint8Array, width: number, height: number, channels: 1 | 3) =>
  sharp(pixels, { raw: { width, height, channels } }).png().toBuffer();
const dataUri = (b: Buffer) => `data:image/png;base64,${b.toString('base64')}`;

/** The image as the model sees it: resized to imageSize x imageSize, centre-cropped to `crop`. */
async function modelView(file: string, imageSize: number, crop: number, maxPixels: number): Promise<Buffer> {
  const top = Math.round((imageSize - crop) / 2);
  try {
    return await sharp(file, { limitInputPixels: maxPixels }).removeAlpha().toColourspace('srgb')
      .resize(imageSize, imageSize, { fit: 'fill' }).extract({ left: top, top, width: crop, height: crop }).raw().toBuffer();
  } catch (err) {
    throw sharpFailure(err, file, maxPixels, 'image');
  }
}

interface PanelText {
  name: string;
  score: number;
  normalized: number;
  predicted: boolean;
  truth: { label: 0 | 1; type: string };
}

/** One panel as SVG: four tiles of `d` pixels, the colour bar beside the map, two caption lines. */
function panelSvg(tiles: { image: Buffer; map: Buffer; predicted: Buffer; truth: Buffer | null }, d: number, t: PanelText): string {
  const m = 8;
  const x = [m, m + d + m];
  const bar = x[1] + d + 6;
  x.push(bar + 64, bar + 64 + d + m);
  const width = x[3] + d + m;
  const top = 30;
  const height = top + d + 56;
  const tile = (k: number, title: string, body: string) =>
    `<text x="${x[k] + d / 2}" y="20" text-anchor="middle" class="h">${esc(title)}</text>${body}`;
  const img = (k: number, b: Buffer) =>
    `<image x="${x[k]}" y="${top}" width="${d}" height="${d}" preserveAspectRatio="none" style="image-rendering:pixelated" xlink:href="${dataUri(b)}"/>`;
  const stops = VIRIDIS.map((c, i) => `<stop offset="${(i / (VIRIDIS.length - 1)).toFixed(3)}" stop-color="${rgb(c)}"/>`).join(''); // 0 at the bottom
  const tick = (v: number, label: string) => {
    const y = top + (1 - v) * d;
    return `<line x1="${bar + 12}" x2="${bar + 16}" y1="${y}" y2="${y}" stroke="#333"/><text x="${bar + 18}" y="${y + 4}" class="s">${label}</text>`;
  };
  const truth = t.truth.label === 1 ? `anomalous (${t.truth.type})` : 'normal';
  const right = t.predicted === (t.truth.label === 1);
  return `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${width}" height="${height}">
<style>text{font-family:'DejaVu Sans',sans-serif;fill:#222}.h{font-size:13px;font-weight:bold}.s{font-size:11px}.c{font-size:13px}</style>
<rect width="100%" height="100%" fill="#fff"/>
<defs><linearGradient id="v" x1="0" y1="1" x2="0" y2="0">${stops}</linearGradient></defs>
${tile(0, 'image', img(0, tiles.image))}
${tile(1, 'anomaly map', img(1, tiles.map))}
<rect x="${bar}" y="${top}" width="12" height="${d}" fill="url(#v)" stroke="#333" stroke-width="0.5"/>${tick(1, '1')}${tick(0.5, '0.5 thr')}${tick(0, '0')}
${tile(2, 'predicted mask', img(2, tiles.predicted))}
${tiles.truth ? tile(3, 'ground truth', img(3, tiles.truth)) : tile(3, 'ground truth', `<rect x="${x[3]}" y="${top}" width="${d}" height="${d}" fill="#ddd"/><text x="${x[3] + d / 2}" y="${top + d / 2}" text-anchor="middle" class="c">no mask</text>`)}
<text x="${m}" y="${top + d + 20}" class="c">${esc(t.name)}</text>
<text x="${m}" y="${top + d + 42}" class="c">score ${t.score.toPrecision(5)} (normalised ${t.normalized.toFixed(3)}): <tspan style="fill:${t.predicted ? '#c0392b' : '#1e8449'};font-weight:bold">${t.predicted ? 'ANOMALOUS' : 'normal'}</tspan>; truth: ${esc(truth)} <tspan style="fill:${right ? '#1e8449' : '#c0392b'}">${right ? '(right)' : '(wrong)'}</tspan></text>
</svg>`;
}

/** A line chart as SVG: axes from 0 to xMax and 0 to 1, a grid, one polyline a series, a legend. */
function chartSvg(title: string, xLabel: string, yLabel: string, xMax: number, series: Array<{ name: string; colour: string; points: CurvePoints }>): string {
  const w = 460;
  const h = 420;
  const l = 56;
  const r = 16;
  const tp = 36;
  const b = 48;
  const px = (v: number) => l + (v / xMax) * (w - l - r);
  const py = (v: number) => h - b - v * (h - tp - b);
  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) =>
    `<line x1="${px(f * xMax)}" x2="${px(f * xMax)}" y1="${py(0)}" y2="${py(1)}" class="g"/><line x1="${px(0)}" x2="${px(xMax)}" y1="${py(f)}" y2="${py(f)}" class="g"/>` +
    `<text x="${px(f * xMax)}" y="${py(0) + 16}" text-anchor="middle" class="s">${+(f * xMax).toFixed(3)}</text><text x="${px(0) - 6}" y="${py(f) + 4}" text-anchor="end" class="s">${f}</text>`).join('');
  const lines = series.map((s) => `<polyline fill="none" stroke="${s.colour}" stroke-width="2" points="${s.points.x.map((v, i) => `${px(v).toFixed(1)},${py(s.points.y[i]).toFixed(1)}`).join(' ')}"/>`).join('');
  const legend = series.map((s, i) => `<rect x="${px(xMax) - 190}" y="${py(0) - 24 - i * 20}" width="14" height="3" fill="${s.colour}"/><text x="${px(xMax) - 170}" y="${py(0) - 19 - i * 20}" class="s">${esc(s.name)}</text>`).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">
<style>text{font-family:'DejaVu Sans',sans-serif;fill:#222}.s{font-size:11px}.t{font-size:14px;font-weight:bold}.g{stroke:#ddd}</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="${w / 2}" y="22" text-anchor="middle" class="t">${esc(title)}</text>${grid}
<rect x="${px(0)}" y="${py(1)}" width="${px(xMax) - px(0)}" height="${py(0) - py(1)}" fill="none" stroke="#333"/>${lines}${legend}
<text x="${(px(0) + px(xMax)) / 2}" y="${h - 10}" text-anchor="middle" class="s">${esc(xLabel)}</text>
<text transform="translate(16 ${(py(0) + py(1)) / 2}) rotate(-90)" text-anchor="middle" class="s">${esc(yLabel)}</text>
</svg>`;
}

/** An SVG written as itself and as PNG (`name.svg`, `name.png`). */
async function writePicture(dir: string, name: string, svg: string): Promise<void> {
  await fs.writeFile(path.join(dir, `${name}.svg`), svg);
  await sharp(Buffer.from(svg)).png().toFile(path.join(dir, `${name}.png`));
}

function metricRows(report: EvaluationReport): string {
  const row = (scope: string, images: number, image: MetricSet, pixel?: MetricSet & { aupro: number }) =>
    `<tr><td>${esc(scope)}</td><td>${images}</td><td>${fmt(image.auroc)}</td><td>${fmt(image.ap)}</td><td>${fmt(image.f1Max)}</td>` +
    `<td>${fmt(pixel?.auroc)}</td><td>${fmt(pixel?.ap)}</td><td>${fmt(pixel?.f1Max)}</td><td>${fmt(pixel?.aupro)}</td></tr>`;
  return [row('all', report.images, report.image, report.pixel),
    ...Object.entries(report.perDefectType).map(([type, m]) => row(`good + ${type}`, m.images, m.image, m.pixel))].join('\n');
}

function indexHtml(input: VisualReportInput, panels: Array<{ src: string; type: string; label: 0 | 1; predicted: boolean; score: number; name: string }>, pictures: string[]): string {
  const { report, thresholds, thresholdsFrom, title } = input;
  const types = [...new Set(panels.map((p) => p.type))];
  const wrong = panels.filter((p) => p.predicted !== (p.label === 1)).length;
  const sections = types.map((type) => {
    const list = panels.filter((p) => p.type === type);
    return `<h3>${esc(type)} (${list.length})</h3>\n<div class="panels">\n${list
      .map((p) => `<figure id="${esc(p.src)}"><img src="${p.src}" alt="${esc(p.name)}: score ${p.score.toPrecision(5)}, ${p.predicted ? 'anomalous' : 'normal'}"></figure>`)
      .join('\n')}\n</div>`;
  });
  const source = thresholdsFrom === 'model'
    ? "the model's calibrated thresholds"
    : 'F1-max thresholds of this set (the model was not calibrated)';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="${GENERATOR}">
<title>${esc(title)}: inp-former evaluation</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.curves img{margin-right:16px}.panels{display:flex;flex-direction:column;gap:12px}figure{margin:0}</style></head>
<body>
<h1>${esc(title)}</h1>
<p>${report.images} images, ${report.anomalous} anomalous; ${wrong} misclassified at the image threshold. Labels and masks use ${source}:
image threshold ${thresholds.imageThreshold.toPrecision(5)}, pixel threshold ${thresholds.pixelThreshold.toPrecision(5)}. Maps are normalised so that 0.5 is the pixel threshold.</p>
<h2>Metrics</h2>
<table><tr><th>scope</th><th>images</th><th>image AUROC</th><th>image AP</th><th>image F1-max</th><th>pixel AUROC</th><th>pixel AP</th><th>pixel F1-max</th><th>AUPRO (FPR ≤ 0.3)</th></tr>
${metricRows(report)}
</table>
<h2>Curves</h2>
<div class="curves">${pictures.map((p) => `<img src="${p}.svg" alt="${p}">`).join('')}</div>
<h2>Images</h2>
${sections.join('\n')}
<script>
// Marks the page once every picture has loaded (or failed): data-pictures="loaded/total", data-broken.
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.getAttribute('src'));
  document.body.dataset.pictures = (imgs.length - broken.length) + '/' + imgs.length;
  document.body.dataset.broken = broken.join(' ');
});
</script>
</body></html>
`;
}

async function writeInto(tmp: string, input: VisualReportInput): Promise<void> {
  const { set, thresholds, imageSize, maxImagePixels, signal } = input;
  const c = set.crop;
  const per = c * c;
  const d = Math.max(c, 224); // tiles shown at least 224 px wide, so captions fit
  const files = heatmapFiles(set.items.map((i) => i.file), '');
  const hasMasks = set.items.some((i) => i.maskFile);
  const panels: Parameters<typeof indexHtml>[1] = [];
  for (let k0 = 0; k0 < set.items.length; k0 += 4) {
    if (signal?.aborted) throw new AbortError(`the report was aborted after ${k0} of ${set.items.length} panels`);
    await Promise.all(set.items.slice(k0, k0 + 4).map(async (item, j) => {
      const k = k0 + j;
      const view = await modelView(item.file, imageSize, c, maxImagePixels);
      const map = normalizeMap(set.maps.subarray(k * per, (k + 1) * per), thresholds);
      const predicted = Buffer.alloc(per);
      for (let i = 0; i < per; i++) predicted[i] = map[i] > 0.5 ? 255 : 0;
      let truth: Buffer | null = null;
      if (item.label === 0) truth = Buffer.alloc(per);
      else if (item.maskFile && set.pixelLabels) truth = Buffer.from(set.pixelLabels.subarray(k * per, (k + 1) * per).map((v) => (v ? 255 : 0)));
      const tiles = {
        image: await png(view, c, c, 3),
        map: await png(renderHeatmap({ image: { data: view, width: c, height: c }, map, alpha: 0.6 }), c, c, 3),
        predicted: await png(predicted, c, c, 1),
        truth: truth && (hasMasks || item.label === 0) ? await png(truth, c, c, 1) : null,
      };
      const score = set.scores[k];
      const normalized = normalizeScore(score, thresholds);
      const name = files[k].replace(/\.png$/, '') + path.extname(item.file);
      const text: PanelText = { name, score, normalized, predicted: normalized > 0.5, truth: { label: item.label, type: item.type } };
      const out = path.join(tmp, 'panels', files[k]);
      await fs.mkdir(path.dirname(out), { recursive: true });
      await sharp(Buffer.from(panelSvg(tiles, d, text))).png().toFile(out);
      panels[k] = { src: ['panels', ...files[k].split(path.sep)].map(encodeURIComponent).join('/'), type: item.type, label: item.label, predicted: text.predicted, score, name };
    }));
  }
  const pictures = ['roc'];
  const { curves, report } = input;
  const roc = [{ name: `image (AUROC ${fmt(report.image.auroc)})`, colour: '#1f77b4', points: curves.imageRoc }];
  if (curves.pixelRoc) roc.push({ name: `pixel (AUROC ${fmt(report.pixel?.auroc)})`, colour: '#ff7f0e', points: curves.pixelRoc });
  await writePicture(tmp, 'roc', chartSvg('ROC', 'false positive rate', 'true positive rate', 1, roc));
  if (curves.pro) {
    pictures.push('pro');
    await writePicture(tmp, 'pro', chartSvg('PRO (per-region overlap)', 'false positive rate (to 0.3)', 'mean region overlap', 0.3,
      [{ name: `AUPRO ${fmt(report.pixel?.aupro)}`, colour: '#2ca02c', points: curves.pro }]));
  }
  await fs.writeFile(path.join(tmp, 'index.html'), indexHtml(input, panels, pictures));
}

/** Write the report into `dir` (replacing an earlier report there, nothing else); returns its index.html. */
export async function writeVisualReport(dir: string, input: VisualReportInput): Promise<string> {
  const target = path.resolve(dir);
  const fail = (m: string, cause?: unknown) => new FileWriteError(target, m, { cause });
  const existing = await fs.stat(target).catch(() => undefined);
  if (existing) {
    const ours = await fs.readFile(path.join(target, 'index.html'), 'utf8').then((h) => h.includes(GENERATOR), () => false);
    if (!existing.isDirectory() || (!ours && (await fs.readdir(target)).length > 0)) throw fail('exists and is not an inp-former report (not replaced)');
  }
  await ensureDir(path.dirname(target), fail);
  const tmp = tempFileFor(target);
  try {
    await fs.mkdir(tmp);
    await writeInto(tmp, input);
    if (existing) {
      const old = `${tmp}.old`;
      await fs.rename(target, old);
      await fs.rename(tmp, target);
      await fs.rm(old, { recursive: true, force: true });
    } else {
      await fs.rename(tmp, target);
    }
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    if (err instanceof AbortError || err instanceof FileWriteError || (err as { file?: string }).file) throw err;
    throw fail(`cannot write the report: ${(err as Error).message}`, err);
  }
  return path.join(target, 'index.html');
}
