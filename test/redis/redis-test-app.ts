import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, SpaceLockService, type LockModuleOptions } from '../../lib';

export interface LockApp {
  app: INestApplicationContext;
  locks: SpaceLockService;
}

/** An application context with only the lock module: one "replica" inside the test process. */
export async function lockApp(options: LockModuleOptions): Promise<LockApp> {
  const app = await NestFactory.createApplicationContext(LockModule.forRoot(options), { logger: false, abortOnError: false });
  await app.init();
  return { app, locks: app.get(SpaceLockService) };
}

let prefixes = 0;
/** A key prefix no other test uses, so suites sharing a server never see each other's keys. */
export function uniquePrefix(name: string): string {
  prefixes += 1;
  return `t${process.pid}-${prefixes}-${name}:`;
}
