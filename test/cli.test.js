// The inp-former command, end to end through child processes.
'use strict';
const test = require('ava');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const sharp = require('sharp');
const { FIXTURES, FIXTURE, tmpdir } = require('./helpers');

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');
const WEAVE = path.join(FIXTURES, 'datasets', 'synth-ad', 'weave');

function cli(args, options = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', ...options });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let model;
let fitOutput;
test.before(() => {
  model = path.join(tmpdir(), 'cli-model.pth');
  fitOutput = cli(['fit', WEAVE, '--out', model, '--epochs', '2', '--batch-size', '8', '--image-size', '128', '--crop-size', '112', '--warmup', '3', '--validation', WEAVE]);
  if (fitOutput.code !== 0) throw new Error(fitOutput.stderr);
});

test('fit --validation prints the thresholds it calibrated; --version prints the version', (t) => {
  t.regex(fitOutput.stdout, /calibrated on .*weave: image threshold \d\.\d+, pixel threshold \d\.\d+ \(saved with the model\)/);
  const v = cli(['--version']);
  t.is(v.code, 0);
  t.is(v.stdout.trim(), require('../package.json').version);
});

test('fit: progress per epoch, a labelled note about the built-in encoder, the model saved', (t) => {
  t.true(fs.existsSync(model));
  const again = path.join(tmpdir(), 'again.pth');
  const r = cli(['fit', WEAVE, '--out', again, '--epochs', '2', '--batch-size', '16', '--image-size', '64', '--crop-size', '56', '--warmup', '1']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /built-in RANDOM encoder/);
  t.regex(r.stderr, /^epoch 1\/2 done \(step 3\/6\): mean loss \d\.\d{4}, [\d.]+ img\/s, ETA \d+:\d\d$/m);
  t.notRegex(r.stderr, /\[#*\.*\]/, 'no redrawn step bar when stderr is not a terminal');
  t.regex(r.stdout, /trained 6 steps \(2 epochs, 96 images\)/);
  t.true(fs.existsSync(again));
});

test('fit: Ctrl-C stops cleanly and saves the weights so far', async (t) => {
  const out = path.join(tmpdir(), 'interrupted.pth');
  const child = spawn(process.execPath, [CLI, 'fit', WEAVE, '--out', out, '--epochs', '500', '--batch-size', '4', '--image-size', '64', '--crop-size', '56'], { encoding: 'utf8' });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (/epoch 1\//.test(stderr) && !child.sent) {
      child.sent = true;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c)));
  t.is(code, 130, stderr);
  t.regex(stderr, /interrupted: saved the weights so far/);
  t.true(fs.existsSync(out));
  const info = JSON.parse(cli(['info', out, '--json']).stdout);
  t.is(info.kind, 'inp-former');
});

test('predict: table, JSON and heatmaps', async (t) => {
  const heat = tmpdir();
  const r = cli(['predict', model, path.join(WEAVE, 'test', 'hole'), path.join(WEAVE, 'test', 'good', '000.png'), '--json', '--heatmaps', heat]);
  t.is(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout);
  t.is(rows.length, 11);
  t.true(rows.every((x) => typeof x.score === 'number' && typeof x.isAnomalous === 'boolean'));
  t.true(rows.filter((x) => x.file.includes('/hole/')).filter((x) => x.isAnomalous).length >= 5);
  // mirrored folders: hole/000.png and good/000.png both get their heatmap (they overwrote each other)
  t.deepEqual(rows.map((x) => path.relative(heat, x.heatmap)).filter((f) => f.endsWith('000.png')).sort(), ['good/000.png', 'hole/000.png']);
  t.is(new Set(rows.map((x) => x.heatmap)).size, 11);
  t.true(rows.every((x) => fs.existsSync(x.heatmap)));
  const png = path.join(heat, 'hole', '000.png');
  const meta = await sharp(png).metadata();
  t.is(meta.width, 256);
  const table = cli(['predict', model, path.join(WEAVE, 'test', 'good', '001.png')]);
  t.regex(table.stdout, /file\s+score\s+normalized\s+anomalous/);
});

test('evaluate: the metric table and JSON', (t) => {
  const r = cli(['evaluate', model, WEAVE]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /image AUROC .* AUPRO/);
  t.regex(r.stdout, /^hole\s+\d\.\d{4}/m);
  const j = JSON.parse(cli(['evaluate', model, WEAVE, '--json']).stdout);
  t.is(j.images, 50);
  t.true(j.pixel.aupro > 0 && j.pixel.aupro <= 1);
});

test('info: format, architecture and thresholds without running anything', (t) => {
  const r = cli(['info', path.join(FIXTURE, 'anomalib_inp_former.ckpt'), '--json']);
  t.is(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  t.is(info.kind, 'anomalib');
  t.is(info.architecture.encoder.embedDim, 96);
  t.false(info.architecture.mlpBias);
  t.truthy(info.thresholds.imageThreshold);
  const enc = JSON.parse(cli(['info', path.join(FIXTURE, 'dinov2_encoder.torchscript.pt'), '--json']).stdout);
  t.is(enc.format, 'torchscript');
  t.is(enc.encoder.numRegisterTokens, 4);
});

test('--help everywhere, one-line errors, non-zero exit codes', (t) => {
  for (const c of ['fit', 'predict', 'evaluate', 'info']) {
    const r = cli([c, '--help']);
    t.is(r.code, 0);
    t.regex(r.stdout, new RegExp(`inp-former ${c}`));
  }
  t.is(cli(['weights', '--help']).code, 0);
  t.is(cli(['--help']).code, 0);
  const unknown = cli(['frobnicate']);
  t.is(unknown.code, 2);
  t.is(unknown.stderr.trim().split('\n').length, 1);
  const missing = cli(['predict', path.join(tmpdir(), 'none.pth'), path.join(WEAVE, 'test', 'good', '000.png')]);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /^inp-former: .*none\.pth: cannot open/);
  t.is(missing.stderr.trim().split('\n').length, 1);
  t.is(cli(['fit', WEAVE]).code, 2, 'fit without --out');
});

test('weights download: progress, resume of a partial download, atomic rename (local server)', async (t) => {
  const payload = Buffer.alloc(300_000, 7);
  payload.write('dinov2 test weights');
  let requests = [];
  let cutFirst = true;
  const cache = tmpdir();
  const server = http.createServer((req, res) => {
    requests.push({ url: req.url, range: req.headers.range });
    if (!req.url.endsWith('/dinov2_vits14/dinov2_vits14_pretrain.pth')) {
      res.writeHead(404).end();
      return;
    }
    const start = req.headers.range ? Number(/bytes=(\d+)-/.exec(req.headers.range)[1]) : 0;
    const body = payload.subarray(start);
    res.writeHead(start ? 206 : 200, { 'content-length': body.length, ...(start ? { 'content-range': `bytes ${start}-${payload.length - 1}/${payload.length}` } : {}) });
    if (cutFirst) {
      cutFirst = false;
      // Cut only once the client has written the first 100 kB: a fixed delay lost the race on a
      // loaded machine (a reset discards what the client has not read yet).
      const partialFile = path.join(cache, 'dinov2_vits14_pretrain.pth.partial');
      const deadline = Date.now() + 30_000;
      const cutWhenWritten = () => {
        const size = fs.existsSync(partialFile) ? fs.statSync(partialFile).size : 0;
        if (size >= 100_000 || Date.now() > deadline) res.destroy();
        else setTimeout(cutWhenWritten, 10);
      };
      res.write(body.subarray(0, 100_000), cutWhenWritten);
    } else {
      res.end(body);
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  const env = { ...process.env, INP_FORMER_WEIGHTS_URL: base, INP_FORMER_CACHE: cache };
  const run = () => new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'weights', 'download', 'dinov2_vits14'], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
  const first = await run();
  t.not(first.code, 0, 'the cut connection fails the first try');
  t.false(fs.existsSync(path.join(cache, 'dinov2_vits14_pretrain.pth')), 'no final file from a partial download');
  t.true(fs.statSync(path.join(cache, 'dinov2_vits14_pretrain.pth.partial')).size >= 100_000);
  const second = await run();
  server.close();
  t.is(second.code, 0, second.stderr);
  t.regex(second.stderr, /downloading dinov2_vits14: .*MiB/);
  t.is(second.stdout.trim(), path.join(cache, 'dinov2_vits14_pretrain.pth'));
  t.deepEqual(fs.readFileSync(path.join(cache, 'dinov2_vits14_pretrain.pth')), payload);
  t.regex(requests[requests.length - 1].range, /^bytes=\d+-$/, 'the second request resumed');
  t.false(fs.existsSync(path.join(cache, 'dinov2_vits14_pretrain.pth.partial')));
  const unknown = cli(['weights', 'download', 'dinov3_huge'], { env });
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /unknown weights/);
});

test('numeric options are checked before anything runs: decimal, bounded, a finite learning rate', (t) => {
  const out = path.join(tmpdir(), 'never.pth');
  const cases = [
    [['--epochs', '0x10'], /expected an integer from 1 to 1000000 for --epochs, got '0x10'/],
    [['--lr=1e308'], /expected a number above 0 and at most 1 for --lr, got 1e\+308/],
    [['--lr', 'NaN'], /expected a number above 0 and at most 1 for --lr, got 'NaN'/],
    [['--threads', '100000'], /expected an integer from 1 to 1024 for --threads, got 100000/],
    [['--image-size', '100000'], /expected an integer from 1 to 4096 for --image-size/],
    [['--batch-size=-3'], /expected an integer from 1 to 4096 for --batch-size, got '-3'/],
    [['--max-image-pixels', '0'], /expected an integer from 1 to 10000000000 for --max-image-pixels, got 0/],
    [['--device', 'tpu'], /expected 'cpu', 'cuda', 'cuda:N' or 'auto' for --device, got 'tpu'/],
  ];
  for (const [extra, message] of cases) {
    const r = cli(['fit', WEAVE, '--out', out, ...extra]);
    t.is(r.code, 2, `${extra.join(' ')}: usage error`);
    t.regex(r.stderr, message);
  }
  t.false(fs.existsSync(out), 'nothing trained, nothing written');
  const tooBig = cli(['predict', path.join(FIXTURE, 'inp_former.pth'), path.join(WEAVE, 'train', 'good'), '--max-image-pixels', '100']);
  t.is(tooBig.code, 1);
  t.regex(tooBig.stderr, /larger than the limit of 100 pixels/);
});

test('fit checks where it will write and read before training', (t) => {
  const dir = tmpdir();
  const cases = [
    [['--out', dir], /--out .* is a folder; give a file name/],
    [['--out', path.join(dir, 'm.pth'), '--validation', path.join(dir, 'nonexistent')], /--validation .*nonexistent: no such folder/],
    [['--out', path.join(dir, 'm.pth'), '--resume', path.join(dir, 'nope.pth')], /--resume .*nope\.pth: no such checkpoint file/],
    [['--out', '/proc/nope/m.pth'], /--out \/proc\/nope\/m\.pth: cannot create folder \/proc\/nope/],
  ];
  for (const [extra, message] of cases) {
    const r = cli(['fit', WEAVE, ...extra]);
    t.is(r.code, 2, extra.join(' '));
    t.regex(r.stderr, message);
    t.notRegex(r.stderr, /epoch/, 'no training started');
  }
});

test('--config: API options by call from a JSON file, flags win, bad files and keys refused', (t) => {
  const dir = tmpdir();
  const config = path.join(dir, 'fit.json');
  fs.writeFileSync(config, JSON.stringify({ create: { imageSize: 64, cropSize: 56, seed: 3 }, fit: { epochs: 1, batchSize: 16, warmupSteps: 1 } }));
  const out = path.join(dir, 'm.pth');
  const r = cli(['fit', WEAVE, '--out', out, '--config', config]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /trained 3 steps \(1 epochs, 48 images\)/);
  t.is(JSON.parse(cli(['info', out, '--json']).stdout).cropSize, 56);
  const flagsWin = cli(['fit', WEAVE, '--out', out, '--config', config, '--epochs', '2']);
  t.regex(flagsWin.stdout, /trained 6 steps \(2 epochs, 96 images\)/);
  fs.writeFileSync(config, JSON.stringify({ fit: { epoch: 1 } }));
  const typo = cli(['fit', WEAVE, '--out', out, '--config', config]);
  t.is(typo.code, 1);
  t.regex(typo.stderr, /unknown option 'epoch' for fit\(\): did you mean 'epochs'\?/);
  fs.writeFileSync(config, JSON.stringify({ load: {} }));
  const section = cli(['fit', WEAVE, '--out', out, '--config', config]);
  t.is(section.code, 2);
  t.regex(section.stderr, /unknown section 'load' \(this command reads 'create', 'fit'\)/);
  fs.writeFileSync(config, '{ not json');
  t.regex(cli(['predict', model, path.join(WEAVE, 'test', 'good', '000.png'), '--config', config]).stderr, /--config .*fit\.json: not JSON/);
  fs.writeFileSync(config, JSON.stringify({ load: { cropSize: 56 } }));
  t.is(cli(['evaluate', model, WEAVE, '--config', config, '--json']).code, 0);
});

test('fit on a terminal: step bars redraw in place, each epoch keeps a summary line of its own', (t) => {
  const out = path.join(tmpdir(), 'tty.pth');
  const command = [process.execPath, CLI, 'fit', WEAVE, '--out', out, '--epochs', '2', '--batch-size', '16', '--image-size', '64', '--crop-size', '56', '--warmup', '1']
    .map((a) => `'${a}'`).join(' ');
  // script(1) gives the command a pseudo-terminal, as a user's shell would
  const r = spawnSync('script', ['-qefc', command, '/dev/null'], { encoding: 'utf8', timeout: 120000 });
  t.is(r.status, 0, r.stdout);
  const screen = r.stdout.replace(/\x1b\[K/g, '').replace(/\r\n/g, '\n'); // the terminal writes \r\n for \n
  t.regex(screen, /\r\[#+\.*\] epoch 1\/2 step 1\/6 loss \d\.\d{4}/, 'a step bar drawn with a carriage return');
  const lines = screen.split('\n').map((l) => l.split('\r').pop().trim()); // what stays on screen
  t.deepEqual(lines.filter((l) => l.startsWith('epoch ')).map((l) => l.replace(/:.*/, '')), ['epoch 1/2 done (step 3/6)', 'epoch 2/2 done (step 6/6)']);
  t.true(lines.some((l) => l.startsWith('trained 6 steps')));
});
