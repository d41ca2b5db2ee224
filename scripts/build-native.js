#!/usr/bin/env node
// The native build, as prebuildify calls node-gyp (`<script> rebuild --release ...`): runs
// cmake-js, which leaves build/Release/inp_former.node. Arguments are ignored: N-API builds
// do not depend on the Node version.
'use strict';
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const root = path.join(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
