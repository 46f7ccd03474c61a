import type { Config } from 'jest';

// ESM-only packages the suite loads (Nest 12, and what @nestjs/common imports lazily). They are
// transpiled to CommonJS for Jest's registry: see test/support/esm-to-cjs.transformer.js.
const esmOnlyPackages = ['@nestjs/', 'file-type/', 'strtok3/', 'token-types/', '@tokenizer/', '@borewit/', 'uint8array-extras/'];

const config: Config = {
  testEnvironment: 'node',
  rootDir: '.',
  roots: ['<rootDir>/test'],
  testRegex: '.*\\.spec\\.ts$',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
    '^.+\\.js$': '<rootDir>/test/support/esm-to-cjs.transformer.js',
  },
  transformIgnorePatterns: [`/node_modules/(?!(${esmOnlyPackages.join('|')}))`],
  moduleFileExtensions: ['ts', 'js', 'json'],
  testTimeout: 30_000,
};

export default config;
