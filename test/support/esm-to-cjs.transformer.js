'use strict';
// Jest's module registry cannot load ES modules on Node 20 (Jest 30 loads them through require(esm)
// only on Node 24.9+, and its ESM mode would turn every spec into an ES module). Nest 12 ships
// ESM-only packages, so jest.config.ts routes them here: TypeScript transpiles each ESM file back to
// CommonJS — the same compiler that built Nest 11's CommonJS from the same sources — and the rest
// of the suite keeps running as CommonJS. The compatibility suite (compat/) runs the real ESM.
const { createHash } = require('node:crypto');
const { readFileSync } = require('node:fs');
const ts = require('typescript');

const compilerOptions = {
  module: ts.ModuleKind.CommonJS,
  target: ts.ScriptTarget.ES2022,
  esModuleInterop: true,
  inlineSourceMap: true,
  inlineSources: true,
};
const ownSource = readFileSync(__filename);

module.exports = {
  process(source, filename) {
    // CommonJS has no import.meta; Nest reads its url (createRequire, file paths), dirname and resolve.
    // A module-level `const require = createRequire(import.meta.url)` (@nestjs/terminus 12) would
    // redeclare CommonJS's own `require`, which already resolves from this file: drop it.
    const withoutImportMeta = source
      .replace(/^const require = createRequire\(import\.meta\.url\);$/m, '')
      .replace(/\bimport\.meta\.url\b/g, "require('node:url').pathToFileURL(__filename).href")
      .replace(/\bimport\.meta\.resolve\(/g, 'require.resolve(')
      .replace(/\bimport\.meta\.dirname\b/g, '__dirname');
    const { outputText } = ts.transpileModule(withoutImportMeta, { compilerOptions, fileName: filename });
    return { code: outputText };
  },
  getCacheKey(source, filename) {
    return createHash('sha256').update(ownSource).update(ts.version).update(filename).update(source).digest('hex');
  },
};
