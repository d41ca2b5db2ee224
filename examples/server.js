#!/usr/bin/env node
// An HTTP inspection service on inp-former's public API (docs/serving.md):
//   node examples/server.js --model bottle.pth [--port 8080] [--host 127.0.0.1]
//        [--max-pending 64] [--max-bytes 20000000] [--batch N] [--threads N]
//
//   POST /predict   body: one encoded image (PNG, JPEG, WebP, TIFF)
//                   -> 200 { score, normalizedScore, isAnomalous, width, height, ms }
//                   -> 400 a bad image (its error code and message), 413 too large,
//                      503 too many requests in flight (Retry-After), 504 waited too long
//   GET  /health    -> 200 { status, model, pending, served, failed, eventLoopDelayMs: { p50, p99, max } }
//
// The model is loaded once. Concurrent requests call predict() at once and the model batches
// them into native runs of up to `predictBatchSize` images (--batch; the default is 8 on CUDA and
// 1 on the CPU, where batching was measured slower per image): inference runs on the model's own
// native thread, so the event loop stays free to answer /health and to read bodies while
// images are scored. SIGTERM or Ctrl-C: stop accepting, finish what is in flight, free the model.
'use strict';
const http = require('node:http');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { parseArgs } = require('node:util');
const { InpFormer, InpFormerError } = require('inp-former');

const { values } = parseArgs({
  options: {
    model: { type: 'string' }, port: { type: 'string', default: '8080' }, host: { type: 'string', default: '127.0.0.1' },
    'max-pending': { type: 'string', default: '64' }, 'max-bytes': { type: 'string', default: '20000000' },
    'timeout-ms': { type: 'string', default: '30000' }, batch: { type: 'string' }, threads: { type: 'string' },
    'image-size': { type: 'string' }, 'crop-size': { type: 'string' },
  },
});
if (!values.model) {
  console.error('usage: node examples/server.js --model <model.pth> [--port 8080] [--max-pending 64] [--batch N]');
  process.exit(2);
}
const maxPending = Number(values['max-pending']);
const maxBytes = Number(values['max-bytes']);
const timeoutMs = Number(values['timeout-ms']);
const number = (v) => (v === undefined ? undefined : Number(v));

const delay = monitorEventLoopDelay({ resolution: 10 }); // enabled once the model is loaded
const stats = { pending: 0, served: 0, failed: 0 };

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * The request body. Past maxBytes nothing more is kept: the rest is drained (so that the client,
 * still sending, reads the 413 instead of a reset connection) and the call rejects.
 */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= maxBytes) parts.push(chunk);
      else parts.length = 0;
    });
    req.on('end', () => (size > maxBytes ? reject(Object.assign(new Error(`the image is larger than ${maxBytes} bytes`), { status: 413 })) : resolve(Buffer.concat(parts))));
    req.on('error', reject);
  });
}

async function predict(model, req, res) {
  if (stats.pending >= maxPending) {
    req.resume(); // drained, not read: the client gets the 503, not a reset
    return send(res, 503, { error: 'busy', message: `${stats.pending} requests in flight` }, { 'retry-after': '1' });
  }
  stats.pending++;
  const started = performance.now();
  try {
    const body = await readBody(req);
    if (body.length === 0) return send(res, 400, { error: 'ERR_EMPTY_BODY', message: 'POST one encoded image as the body' });
    // the signal refuses an image that has waited too long for its turn
    const p = await model.predict(body, { signal: AbortSignal.timeout(timeoutMs) });
    stats.served++;
    send(res, 200, { score: p.score, normalizedScore: p.normalizedScore, isAnomalous: p.isAnomalous, width: p.width, height: p.height, ms: Math.round(performance.now() - started) });
  } catch (err) {
    stats.failed++;
    if (err.status === 413) return send(res, 413, { error: 'ERR_TOO_LARGE', message: err.message });
    if (err instanceof InpFormerError) {
      const status = err.code === 'ERR_INP_IMAGE' || err.code === 'ERR_INP_INVALID_ARGUMENT' ? 400 : err.code === 'ERR_INP_ABORTED' ? 504 : 500;
      return send(res, status, { error: err.code, message: err.message });
    }
    send(res, 500, { error: 'ERR_INTERNAL', message: String(err?.message ?? err) });
  } finally {
    stats.pending--;
  }
}

async function main() {
  const model = await InpFormer.load(values.model, {
    predictBatchSize: number(values.batch), threads: number(values.threads),
    imageSize: number(values['image-size']), cropSize: number(values['crop-size']),
  });
  delay.enable();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (req.method === 'POST' && url.pathname === '/predict') return void predict(model, req, res);
    if (req.method === 'GET' && url.pathname === '/health') {
      const ms = (q) => Math.round(delay.percentile(q) / 1e4) / 100;
      return send(res, 200, {
        status: 'ok', model: values.model, ...stats,
        eventLoopDelayMs: { p50: ms(50), p99: ms(99), max: Math.round(delay.max / 1e4) / 100 },
      });
    }
    send(res, 404, { error: 'ERR_NOT_FOUND', message: 'POST /predict or GET /health' });
  });
  server.listen(Number(values.port), values.host, () => {
    const { address, port } = server.address();
    console.log(`listening on http://${address}:${port}`);
  });
  const stop = () => {
    console.log('stopping: finishing the requests in flight');
    server.close(async () => {
      await model.dispose();
      console.log('stopped');
      process.exit(0);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  console.error(err instanceof InpFormerError ? `${err.code}: ${err.message}` : err);
  process.exit(1);
});
