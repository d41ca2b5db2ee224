// Real services for tests: a redis-server on a free 127.0.0.1 port (Debian's package, installed
// by scripts/setup.sh), and `inp-former worker` processes; each started by a test and stopped after.
'use strict';
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { tmpdir } = require('./helpers');

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** Resolves when `child` prints a line matching `pattern` on `stream`; rejects if it exits first. */
function waitForLine(child, stream, pattern, what) {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (d) => {
      seen += d;
      if (pattern.test(seen)) {
        child[stream].off('data', onData);
        resolve();
      }
    };
    child[stream].on('data', onData);
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready:\n${seen}`)));
  });
}

/** A redis-server of its own: { url, stop() }. No persistence; its folder is removed after. */
async function startRedis() {
  const port = await freePort();
  const dir = tmpdir('inp-former-redis-');
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const failed = new Promise((_, reject) => child.once('error', (err) => reject(new Error(`cannot start redis-server (apt-get install redis-server; scripts/setup.sh does): ${err.message}`))));
  await Promise.race([waitForLine(child, 'stdout', /Ready to accept connections/, 'redis-server'), failed]);
  const exited = new Promise((r) => child.once('exit', r));
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * An `inp-former worker` process: { child, pid, log(), stop() }. Short locks, so that a killed
 * worker's job is handed on within seconds. `log()` is its stderr so far (JSON lines).
 */
async function startWorkerProcess({ redis, models, queue, extra = [] }) {
  const args = [CLI, 'worker', '--redis', redis, '--models', models, '--queue', queue, '--threads', '1', '--lock-ms', '2000', '--stalled-ms', '1000', '--json', ...extra];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  await waitForLine(child, 'stderr', /^worker \S+ on queue/m, 'inp-former worker');
  return {
    child,
    pid: child.pid,
    exited,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

module.exports = { freePort, startRedis, startWorkerProcess };
