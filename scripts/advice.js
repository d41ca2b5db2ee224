// What to install or run when libtorch is missing or does not fit: the one text that the
// build (CMakeLists.txt, binding.gyp, scripts/install.js), the loader (lib/native/native.ts) and
// `inp-former doctor` print.
'use strict';

/** Run-time packages by distribution, then the LIBTORCH route for anything else. */
function installAdvice() {
  return [
    '  Debian 12: sudo apt-get install libtorch1.13 libopenblas0-pthread',
    '  Debian 13: sudo apt-get install libtorch2.6 libopenblas0-pthread',
    '  (to build from source, libtorch-dev instead of the run-time package, plus cmake or node-gyp and g++)',
    '  Any other libtorch (official zip, CUDA build, a pip torch): build against it with',
    `    ${buildFromSourceCommand('/path/to/libtorch')}`,
  ].join('\n');
}

/** The exact command that builds the addon from source against a libtorch folder. */
function buildFromSourceCommand(libtorchDir) {
  return `LIBTORCH=${libtorchDir} npm rebuild inp-former --build-from-source`;
}

/** When no libtorch was found: why, where the locator looked, and what to install. */
function notFoundMessage(t) {
  return `inp-former: ${t.error} (looked at: ${t.tried.join('; ')}).\n${installAdvice()}`;
}

module.exports = { installAdvice, buildFromSourceCommand, notFoundMessage };
