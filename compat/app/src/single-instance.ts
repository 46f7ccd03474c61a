// ESM apps only: `import` and `require` of nestjs-lock must hand out the same classes and tokens.
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { createRequire } from 'node:module';
import { NestFactory } from '@nestjs/core';
import * as imported from 'nestjs-lock';

const required = createRequire(import.meta.url)('nestjs-lock') as typeof imported;

for (const name of ['LockModule', 'SpaceLockService', 'LockHeldError', 'LockError', 'MemoryLockStore', 'LOCK_OPTIONS'] as const) {
  assert.equal(required[name], imported[name], `${name} is one object whichever way it is loaded`);
}

const app = await NestFactory.createApplicationContext(imported.LockModule.forRoot(), { logger: false });
const locks = app.get(imported.SpaceLockService);
assert.equal(app.get(required.SpaceLockService), locks, 'one DI token');
const held = await locks.acquire('single-instance');
const error: unknown = await locks.acquire('single-instance').catch((caught: unknown) => caught);
assert.ok(error instanceof imported.LockHeldError, 'instanceof the imported LockHeldError');
assert.ok(error instanceof required.LockHeldError, 'instanceof the required LockHeldError');
await held.release();
await app.close();
console.log('single instance: import and require give the same classes, DI tokens and errors');
