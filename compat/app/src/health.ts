// LockHealthIndicator under the @nestjs/terminus line this row installs: 200 while the store
// answers, 503 while it does not (a Redis port nothing listens on).
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { Controller, Get, Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { LockHealthIndicator, LockModule, type LockModuleOptions } from 'nestjs-lock';

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly locks: LockHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.locks.isHealthy('locks', { timeoutMs: 300 })]);
  }
}

@Module({})
class HealthAppModule {
  static with(lock: LockModuleOptions): DynamicModule {
    return { module: HealthAppModule, imports: [TerminusModule, LockModule.forRoot(lock)], controllers: [HealthController] };
  }
}

async function healthOf(lock: LockModuleOptions): Promise<{ status: number; body: { status?: string; info?: object; error?: object } }> {
  const app = await NestFactory.create(HealthAppModule.with(lock), { logger: false });
  await app.listen(0, '127.0.0.1');
  try {
    const response = await fetch(`${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/health`);
    return { status: response.status, body: (await response.json()) as { status?: string } };
  } finally {
    await app.close();
  }
}

async function main(): Promise<void> {
  const redisUrl = process.env['REDIS_URL'];
  assert.ok(redisUrl, 'REDIS_URL names the Redis the check runs on');
  const up = await healthOf({ backend: 'redis', redis: { url: redisUrl } });
  assert.equal(up.status, 200, JSON.stringify(up.body));
  assert.deepEqual(Object.keys(up.body.info ?? {}), ['locks']);
  const down = await healthOf({ backend: 'redis', redis: { url: 'redis://127.0.0.1:1' }, backendTimeoutMs: 300 });
  assert.equal(down.status, 503, JSON.stringify(down.body));
  assert.deepEqual(Object.keys(down.body.error ?? {}), ['locks']);
  console.log('health: LockHealthIndicator answers 200 with the store up and 503 with it unreachable');
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
