import { join } from 'node:path';
import { exited, spawnTs, waitForLine, PROCESS_TEST_TIMEOUT_MS } from '../support/processes';
import { SpaceLockService } from '../../lib';
import { lockApp } from '../redis/redis-test-app';

describe('optional peers', () => {
  it(
    'works when @opentelemetry/api, @nestjs/terminus and @nestjs/event-emitter cannot be required',
    async () => {
      const child = spawnTs(join(__dirname, 'fixtures', 'without-optional-peers.ts'));
      const [line] = await waitForLine(child, /^\{.*\}$/);
      expect(await exited(child)).toBe(0);
      const report = JSON.parse(line) as Record<string, unknown>;
      expect(report).toEqual({
        // The root asks for none of them; building the service asks once for the OpenTelemetry API.
        afterRoot: [],
        asked: ['@opentelemetry/api'],
        loaded: [],
        result: 'ran',
        events: ['acquired', 'released'],
        healthy: true,
        indicator: 'LockHealthIndicator needs TerminusModule (@nestjs/terminus 11 or later) imported by the app',
      });
    },
    PROCESS_TEST_TIMEOUT_MS,
  );

  it('with the OpenTelemetry API present but no SDK registered, nothing listens to lock events', async () => {
    const { app, locks } = await lockApp({ keyPrefix: 'otel-api-only:' });
    try {
      expect(require.cache[require.resolve('@opentelemetry/api')]).toBeDefined();
      expect((locks as unknown as { lockEvents: { active: boolean } }).lockEvents.active).toBe(false);
      expect(locks).toBeInstanceOf(SpaceLockService);
    } finally {
      await app.close();
    }
  });
});
