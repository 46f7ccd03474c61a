import type { LockOwner, LockRequest } from '../../lib/lock-backend.interface';
import { redisBackendFixture, uniquePrefix } from './redis-test-app';

const owner: LockOwner = { ownerId: 'batch-test', instanceId: 'i-1', hostname: 'host', pid: 1 };

describe('Script calls of one tick share a write while Redis is busy (real redis-server)', () => {
  const fixture = redisBackendFixture();
  let corks = 0;
  let tokens = 0;

  beforeAll(() => {
    const stream = fixture.client.stream;
    const cork = stream.cork.bind(stream);
    stream.cork = () => {
      corks += 1;
      cork();
    };
  });
  beforeEach(() => (corks = 0));

  function request(key: string): LockRequest {
    tokens += 1;
    return { key, token: `token-${tokens}`, ttlMs: 10_000, mode: 'exclusive', owner };
  }

  /** `count` acquire+release cycles on distinct keys started in one tick, plus rivals for one key. */
  async function burst(prefix: string, count: number): Promise<{ fences: number[]; rivalsGranted: number; released: string[] }> {
    const rivals = Array.from({ length: 20 }, () => fixture.backend.tryAcquire(request(`${prefix}contended`)));
    const cycles = Array.from({ length: count }, async (_, index) => {
      const lease = request(`${prefix}k${index}`);
      const granted = await fixture.backend.tryAcquire(lease);
      if (!granted.acquired) throw new Error(`uncontended ${lease.key} refused`);
      return { fence: granted.fencingToken, released: await fixture.backend.release(lease) };
    });
    const outcomes = await Promise.all(cycles);
    return {
      fences: outcomes.map((outcome) => outcome.fence),
      rivalsGranted: (await Promise.all(rivals)).filter((outcome) => outcome.acquired).length,
      released: outcomes.map((outcome) => outcome.released),
    };
  }

  it('corks the socket only under a backlog; every call keeps its own reply and exclusion holds', async () => {
    const prefix = uniquePrefix('busy');
    const first = await burst(prefix, 300);
    expect(corks).toBeGreaterThan(0);
    expect(first.fences).toEqual(first.fences.map(() => 1));
    expect(first.released).toEqual(first.released.map(() => 'released'));
    expect(first.rivalsGranted).toBe(1);

    // Each key's fencing token moves on by exactly one per grant, even when its calls shared a write.
    const second = await burst(prefix, 300);
    expect(second.fences).toEqual(second.fences.map(() => 2));
    expect(second.rivalsGranted).toBe(0);

    corks = 0;
    const lone = request(`${prefix}lone`);
    await fixture.backend.tryAcquire(lone);
    await fixture.backend.release(lone);
    expect(corks).toBe(0);
  });

  it('scripts missing on the server (restart, fail-over) are sent again with EVAL from a shared write', async () => {
    await fixture.raw.script('FLUSH');
    const outcome = await burst(uniquePrefix('flushed'), 300);
    expect(corks).toBeGreaterThan(0);
    expect(outcome.fences).toEqual(outcome.fences.map(() => 1));
    expect(outcome.released).toEqual(outcome.released.map(() => 'released'));
    expect(outcome.rivalsGranted).toBe(1);
  });
});
