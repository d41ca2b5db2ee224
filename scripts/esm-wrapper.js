#!/usr/bin/env node
// Writes dist/index.mjs, the ES-module entry, re-exporting the CommonJS build by name
// (requiring dist/index.js does not load the native addon).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const dist = path.join(__dirname, '..', 'dist');
const names = Object.keys(require(path.join(dist, 'index.js'))).filter((n) => n !== 'default' && n !== '__esModule');
const body = `import cjs from './index.js';\nexport const { ${names.join(', ')} } = cjs;\nexport default cjs;\n`;
fs.writeFileSync(path.join(dist, 'index.mjs'), body);
