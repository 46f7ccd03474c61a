import 'reflect-metadata';
import { Test } from '@nestjs/testing';
import { LockBackend, LockBackendError, LockModule, RedisLockBackend, SpaceLockService } from '../../lib';

/** A connection the module creates (`redis.url`) reports an unreachable Redis through our errors, not ioredis' stderr. */
describe('a Redis connection the lock module owns', () => {
  it('an unreachable Redis: LockBackendError to the caller, no "Unhandled error event" from ioredis', async () => {
    const printed = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const app = await Test.createTestingModule({
      imports: [LockModule.forRoot({ backend: 'redis', redis: { url: 'redis://127.0.0.1:1' }, backendTimeoutMs: 300, keyPrefix: 'owned-conn:' })],
    }).compile();
    app.useLogger(false);
    await app.init();
    try {
      await expect(app.get(SpaceLockService).tryAcquire('k')).rejects.toBeInstanceOf(LockBackendError);
      // The client has tried (and failed) to connect by now: each failure emitted `error`.
      expect(printed.mock.calls.filter((call) => String(call[0]).includes('Unhandled error event'))).toEqual([]);
      // ioredis 6 keeps quiet either way; ioredis 5 prints every error nobody listens to.
      expect(app.get<RedisLockBackend>(LockBackend).client.listenerCount('error')).toBeGreaterThan(0);
    } finally {
      await app.close();
      printed.mockRestore();
    }
  });
});
