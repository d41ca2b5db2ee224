#!/usr/bin/env node
// Writes the ES-module entries (dist/index.mjs, dist/queue/index.mjs), re-exporting each
// CommonJS build by name (requiring them loads neither the native addon nor bullmq), and their
// types (index.d.mts), so that ESM importers get ESM types, not CJS ones masquerading
// (are-the-types-wrong checks it in CI).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const dist = path.join(__dirname, '..', 'dist');
for (const entry of ['index', 'queue/index']) {
  const names = Object.keys(require(path.join(dist, `${entry}.js`))).filter((n) => n !== 'default' && n !== '__esModule');
  const base = path.basename(entry);
  const body = `import cjs from './${base}.js';\nexport const { ${names.join(', ')} } = cjs;\nexport default cjs;\n`;
  fs.writeFileSync(path.join(dist, `${entry}.mjs`), body);
  const types = `import * as cjs from './${base}.js';\nexport * from './${base}.js';\nexport default cjs;\n`;
  fs.writeFileSync(path.join(dist, `${entry}.d.mts`), types);
}
