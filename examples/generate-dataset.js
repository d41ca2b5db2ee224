#!/usr/bin/env node
// Generates examples/data/tiles: a small synthetic inspection set in MVTec AD layout
// (ceramic-like tiles; defects: cracks and spots, each with its mask). Deterministic.
//   node examples/generate-dataset.js
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const sharp = require('sharp');

const SIZE = 128;
const root = path.join(__dirname, 'data', 'tiles');

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A tile: a warm glaze with soft mottling and a grout grid. */
function tile(seed) {
  const r = rng(seed);
  const phase = [r() * 6.28, r() * 6.28, r() * 6.28];
  const shift = Math.floor(r() * 8);
  const px = Buffer.alloc(SIZE * SIZE * 3);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const mottle = 10 * Math.sin(x / 9 + phase[0]) * Math.cos(y / 11 + phase[1]) + 6 * Math.sin((x + y) / 5 + phase[2]);
      const grout = (x + shift) % 32 < 2 || (y + shift) % 32 < 2;
      const noise = (r() - 0.5) * 8;
      const base = grout ? [120, 115, 110] : [200 + mottle, 170 + mottle * 0.8, 130 + mottle * 0.5];
      for (let c = 0; c < 3; c++) px[(y * SIZE + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(base[c] + noise)));
    }
  }
  return px;
}

function addDefect(px, kind, seed) {
  const r = rng(seed * 31 + 7);
  const mask = Buffer.alloc(SIZE * SIZE);
  const paint = (x, y, color) => {
    if (x < 0 || y < 0 || x >= SIZE || y >= SIZE) return;
    const i = y * SIZE + x;
    mask[i] = 255;
    for (let c = 0; c < 3; c++) px[i * 3 + c] = color[c];
  };
  if (kind === 'crack') {
    let x = 20 + r() * 88;
    let y = 20 + r() * 88;
    let a = r() * 6.28;
    for (let s = 0; s < 40; s++) {
      a += (r() - 0.5) * 0.6;
      x += Math.cos(a) * 1.2;
      y += Math.sin(a) * 1.2;
      for (let d = -1; d <= 1; d++) paint(Math.round(x) + d, Math.round(y), [60, 45, 35]);
    }
  } else {
    const cx = 20 + r() * 88;
    const cy = 20 + r() * 88;
    const rad = 5 + r() * 5;
    for (let y = Math.floor(cy - rad); y <= cy + rad; y++)
      for (let x = Math.floor(cx - rad); x <= cx + rad; x++)
        if ((x - cx) ** 2 + (y - cy) ** 2 <= rad * rad) paint(x, y, [90, 120, 160]);
  }
  return mask;
}

async function png(file, data, channels) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp(data, { raw: { width: SIZE, height: SIZE, channels } }).png().toFile(file);
}

(async () => {
  fs.rmSync(root, { recursive: true, force: true });
  const name = (i) => String(i).padStart(3, '0');
  for (let i = 0; i < 32; i++) await png(path.join(root, 'train', 'good', `${name(i)}.png`), tile(1000 + i), 3);
  for (let i = 0; i < 8; i++) await png(path.join(root, 'test', 'good', `${name(i)}.png`), tile(2000 + i), 3);
  for (const [k, kind] of ['crack', 'spot'].entries()) {
    for (let i = 0; i < 8; i++) {
      const px = tile(3000 + 100 * k + i);
      const mask = addDefect(px, kind, 100 * k + i);
      await png(path.join(root, 'test', kind, `${name(i)}.png`), px, 3);
      await png(path.join(root, 'ground_truth', kind, `${name(i)}_mask.png`), mask, 1);
    }
  }
  console.log(`wrote ${root}`);
})();
