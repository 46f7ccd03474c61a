import { SETS_MARGIN_MS } from '../../lib/backends/redis/holder-set.scripts';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import type { AcquireOutcome, LockOwner, LockRequest } from '../../lib/lock-backend.interface';
import { redisBackendFixture, uniquePrefix } from './redis-test-app';

/** Interleavings of the holder-set scripts that once broke an invariant (found in review). */
const owner: LockOwner = { ownerId: 'interleavings', instanceId: 'i-1', hostname: 'host', pid: 1 };
let tokens = 0;

function request(key: string, { mode = 'exclusive', limit, ttlMs = 5_000, waiter }: { mode?: 'shared' | 'exclusive'; limit?: number; ttlMs?: number; waiter?: string } = {}): LockRequest {
  tokens += 1;
  return { key, token: waiter ?? `r1t${tokens}`, ttlMs, mode, owner, limit, queue: waiter ? { waitMs: 5_000 } : undefined };
}

function fenceOf(outcome: AcquireOutcome): number {
  if (!outcome.acquired) throw new Error(`not granted: ${JSON.stringify(outcome)}`);
  return outcome.fencingToken;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('shared locks and permits on Redis: interleavings of the holder-set scripts', () => {
  const fixture = redisBackendFixture({ queueReservationMs: 150 });

  it('a reader that shortened its lease with extend(ttlMs) and crashed keeps writers out only until its shortened lease ends', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('interleave:shorten')}job`;
    const reader = request(key, { mode: 'shared', ttlMs: 10_000 });
    fenceOf(await backend.tryAcquire(reader));
    expect(await backend.extend([{ ...reader, ttlMs: 300 }])).toEqual([true]);
    // The reader's process dies: no release. Its lease ends 300 ms after the extend.
    await sleep(600);
    expect((await backend.inspect(key)).filter((record) => !record.stale)).toEqual([]);
    // Exclusive leases shorten on extend (EXTEND's PEXPIRE); the marker should follow the latest lease.
    expect(await raw.pttl(lockKeys(key).lease)).toBeLessThanOrEqual(0);
    expect(await backend.tryAcquire(request(key))).toMatchObject({ acquired: true });
  });

  it('a permit holder that crashed leaves no key without an expiry behind', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('interleave:leak')}export`;
    fenceOf(await backend.tryAcquire(request(key, { limit: 3, ttlMs: 200 })));
    await sleep(400);
    const keys = lockKeys(key);
    // Nothing shows it any more (the marker is gone) ...
    expect(await raw.exists(keys.lease)).toBe(0);
    expect(await backend.inspect(key)).toEqual([]);
    // ... and its record and expiry go by themselves: the lease plus SETS_MARGIN_MS, never "no expiry".
    for (const leftover of [keys.holders, keys.expiries]) {
      const pttl = await raw.pttl(leftover);
      expect({ key: leftover, expiring: pttl > 0 && pttl <= 200 + SETS_MARGIN_MS }).toEqual({ key: leftover, expiring: true });
    }
  });

  it('the holder and expiry sets outlive the longest lease in them, also one lengthened by extend', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('interleave:sets-ttl')}scan`;
    const keys = lockKeys(key);
    const reader = request(key, { mode: 'shared', ttlMs: 1_000 });
    fenceOf(await backend.tryAcquire(reader));
    fenceOf(await backend.tryAcquire(request(key, { mode: 'shared', ttlMs: 1_000 })));
    expect(await backend.extend([{ ...reader, ttlMs: 5 * SETS_MARGIN_MS }])).toEqual([true]);
    for (const set of [keys.holders, keys.expiries]) expect(await raw.pttl(set)).toBeGreaterThan(5 * SETS_MARGIN_MS - 1_000);
  });

  it('forceRelease of a crashed writer racing readers that take the freed lock: the readers keep their marker', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('interleave:reap')}scan`;
    const writer = request(key, { ttlMs: 200 });
    const writerFence = fenceOf(await backend.tryAcquire(writer));
    await sleep(300); // the writer crashed: its lease ended, its record stays (shown as stale)
    const reader = request(key, { mode: 'shared', ttlMs: 10_000 });
    // The interleaving: the holder-set forceRelease script sees no marker ('plain'); before the
    // exclusive FORCE_RELEASE runs, a reader takes the free lock.
    const holderSet = (backend as unknown as { holderSet: { forceRelease: (key: string, fence?: number) => Promise<unknown> } }).holderSet;
    const original = holderSet.forceRelease.bind(holderSet);
    holderSet.forceRelease = async (k, f) => {
      const answer = await original(k, f);
      holderSet.forceRelease = original;
      fenceOf(await backend.tryAcquire(reader));
      return answer;
    };
    try {
      await backend.forceRelease({ key, reason: 'reap the crashed writer', expectFencingToken: writerFence });
    } finally {
      holderSet.forceRelease = original;
    }
    // The reader's read lease is alive (its own script answers so) ...
    expect(await raw.zscore(lockKeys(key).expiries, reader.token)).not.toBeNull();
    // ... so no writer may get in (invariants 1 and 5) ...
    expect(await backend.tryAcquire(request(key))).toMatchObject({ acquired: false });
    expect(await raw.get(lockKeys(key).lease)).toBe('shared:');
    // ... and the reader keeps its lease.
    expect(await backend.extend([reader])).toEqual([true]);
  });

  it('a one-shot permit attempt that finds waiters queued on a lock with free permits gets one once the queue has moved', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('interleave:oneshot')}export`;
    // Two permits, both held; a waiter queues; both holders crash.
    fenceOf(await backend.tryAcquire(request(key, { limit: 2, ttlMs: 300 })));
    fenceOf(await backend.tryAcquire(request(key, { limit: 2, ttlMs: 300 })));
    expect(await backend.tryAcquire(request(key, { limit: 2, waiter: 'r1-queued' }))).toMatchObject({ acquired: false });
    await sleep(450);
    // HOLDER_TRY_ACQUIRE answers nil (a waiter is queued); the 7-key acquire passes the waiter
    // its permit, and one of the two permits is still free: the one-shot attempt should get it.
    const oneShot = await backend.tryAcquire(request(key, { limit: 2 }));
    expect(await raw.lrange(lockKeys(key).queue, 0, -1)).toEqual([]);
    expect(oneShot).toMatchObject({ acquired: true });
  });
  it("a waiter does not spin while the lock is kept for another waiter's turn (queued:<other>)", async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('interleave:spin')}job`;
    // A release kept the turn for the first queued waiter, who has not come back yet.
    await raw.set(lockKeys(key).lease, 'queued:first', 'PX', 1_000);
    const startedAt = Date.now();
    // The second waiter's wait: nothing is published, the lock is not ours; it should sleep
    // (until a release message or its 300 ms timer), not return at once to ask again.
    expect(await backend.waitForRelease(key, 300, new AbortController().signal, 'second')).toBeUndefined();
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(250);
  });
  it('two limits on one key never hold together, even after a shortened lease left a marker with no holder behind', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('interleave:drift')}export`;
    const keys = lockKeys(key);
    // limit 2, full; a limit-2 waiter queues; both holders crash and the marker goes.
    fenceOf(await backend.tryAcquire(request(key, { limit: 2, ttlMs: 300 })));
    fenceOf(await backend.tryAcquire(request(key, { limit: 2, ttlMs: 300 })));
    expect(await backend.tryAcquire(request(key, { limit: 2, ttlMs: 5_000, waiter: 'r1-q2' }))).toMatchObject({ acquired: false });
    await sleep(400);
    // A caller with limit 3 waits on the free lock: it queues behind the limit-2 waiter, who is passed its permit.
    expect(await backend.tryAcquire(request(key, { limit: 3, ttlMs: 1_000, waiter: 'r1-p3' }))).toMatchObject({ acquired: false });
    expect(await raw.zscore(keys.expiries, 'r1-q2')).not.toBeNull();
    // The limit-2 holder shortens its lease, then crashes.
    expect(await backend.extend([{ key, token: 'r1-q2', mode: 'exclusive', limit: 2, ttlMs: 100 }])).toEqual([true]);
    await sleep(200);
    // A limit-2 waiter and a limit-2 one-shot attempt arrive.
    const w2 = await backend.tryAcquire(request(key, { limit: 2, waiter: 'r1-w2' }));
    const c2 = await backend.tryAcquire(request(key, { limit: 2 }));
    const p3Holds = (await raw.zscore(keys.expiries, 'r1-p3')) !== null;
    const w2Holds = (await raw.zscore(keys.expiries, 'r1-w2')) !== null || w2.acquired;
    const limit2Holds = w2Holds || c2.acquired;
    expect({ p3Holds, limit2Holds, marker: await raw.get(keys.lease) }).not.toMatchObject({ p3Holds: true, limit2Holds: true });
  });
});
