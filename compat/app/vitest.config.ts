import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Vite's own transform drops decorator metadata, which Nest's dependency injection reads;
  // SWC emits it (unplugin-swc takes experimentalDecorators/emitDecoratorMetadata from tsconfig.json).
  plugins: [swc.vite({ module: { type: 'es6' } })],
  test: { include: ['test/**/*.spec.ts'] },
});
