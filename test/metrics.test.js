// Metrics against hand-computed values, ties included (scikit-learn / torchmetrics / anomalib definitions).
'use strict';
const test = require('ava');
const { metrics: m } = require('inp-former/internal');

const close = (t, a, b, eps = 1e-9) => t.true(Math.abs(a - b) <= eps, `${a} != ${b}`);

test('AUROC: sklearn example and ties (trapezoid over distinct thresholds)', (t) => {
  close(t, m.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 0.75);
  // ties: thresholds 0.9 -> (0, .5), 0.5 -> (1, 1): area 0.5 * (0.5 + 1) = 0.75
  close(t, m.auroc([0.5, 0.5, 0.5, 0.9], [0, 1, 0, 1]), 0.75);
  // all tied: the diagonal
  close(t, m.auroc([1, 1, 1, 1], [0, 1, 0, 1]), 0.5);
  close(t, m.auroc([0.2, 0.9, 0.1, 0.8], [0, 1, 0, 1]), 1);
  t.true(Number.isNaN(m.auroc([0.1, 0.2], [0, 0])), 'one class: undefined');
});

test('average precision: sklearn example, ties, no interpolation', (t) => {
  close(t, m.averagePrecision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 0.8333333333333333);
  // ties: 0.9 -> P 1, R .5; 0.5 -> P .5, R 1: .5 * 1 + .5 * .5
  close(t, m.averagePrecision([0.5, 0.5, 0.5, 0.9], [0, 1, 0, 1]), 0.75);
  // descending P not interpolated: scores 3 > 2 > 1 with labels 0,1,1 -> (1/2)(1/2) + (1/2)(2/3)
  close(t, m.averagePrecision([3, 2, 1], [0, 1, 1]), 0.5 * 0.5 + 0.5 * (2 / 3));
});

test('F1-max and its threshold (lowest threshold among equal F1, as torch.argmax over the reversed curve)', (t) => {
  const a = m.f1Max([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]);
  close(t, a.f1, 0.8, 1e-9);
  t.is(a.threshold, 0.35);
  const b = m.f1Max([0.5, 0.5, 0.5, 0.9], [0, 1, 0, 1]);
  close(t, b.f1, 2 / 3, 1e-9);
  t.is(b.threshold, 0.5);
});

test('AUPRO: one region, hand-computed with anomalib resampling and the FPR 0.3 limit', (t) => {
  // region pixels 0.9, 0.6; normal 0.8 ... 0.01. Global FPR grid: 5 points <= 0.3; resampled
  // (fpr, tpr) = (0,0) (.03125,.5) (.125,.75) (.21875,1) (.3,1): area 0.2296875, / 0.3.
  const s = [0.9, 0.6, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01];
  const r = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0];
  close(t, m.aupro(s, r), 0.765625, 1e-6);
  // perfect separation: every region fully found before any false positive; with a fine FPR
  // grid (1000 normal pixels) only the resampled first step keeps it below 1
  const normals = Array.from({ length: 1000 }, (_, i) => i / 2000);
  const perfect = m.aupro([0.9, 0.8, 0.7, ...normals], [1, 1, 2, ...normals.map(() => 0)]);
  t.true(perfect > 0.995 && perfect <= 1 + 1e-9, `${perfect}`);
});

test('AUPRO averages regions: a small missed region weighs as much as a large found one', (t) => {
  // region 1 (3 px) scores above all normals, region 2 (1 px) below all normals
  const s = [0.99, 0.98, 0.97, 0.001, ...Array.from({ length: 20 }, (_, i) => 0.5 + i * 0.01)];
  const r = [1, 1, 1, 2, ...Array(20).fill(0)];
  const v = m.aupro(s, r);
  t.true(v > 0.45 && v < 0.55, `${v}`);
});

test('8-connected components', (t) => {
  const mask = [
    1, 0, 0, 1,
    0, 1, 0, 1,
    0, 0, 0, 0,
    1, 1, 0, 0,
  ];
  const { labels, count } = m.connectedComponents(mask, 4, 4);
  t.is(count, 3, 'the diagonal pair is one component');
  t.is(labels[0], labels[5]);
  t.is(labels[3], labels[7]);
  t.not(labels[0], labels[3]);
});
