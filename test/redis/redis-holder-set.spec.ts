import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import { recordTail } from '../../lib/backends/redis/redis-holder-record';
import type { AcquireOutcome, LockOwner, LockRequest } from '../../lib/lock-backend.interface';
import { runCli } from '../../lib/cli/run';
import type { HolderView } from '../../lib/cli/format';
import { recordingIo } from '../ops/ops-support';
import { until } from '../support/redis-server';
import { redisBackendFixture, uniquePrefix } from './redis-test-app';

const owner: LockOwner = { ownerId: 'holders-test', instanceId: 'i-1', hostname: 'host', pid: 1 };
let tokens = 0;

interface Ask {
  mode?: 'shared' | 'exclusive';
  limit?: number;
  ttlMs?: number;
  /** A waiting caller: the same token on every attempt. */
  waiter?: string;
}

function request(key: string, { mode = 'exclusive', limit, ttlMs = 5_000, waiter }: Ask = {}): LockRequest {
  tokens += 1;
  return { key, token: waiter ?? `t${tokens}`, ttlMs, mode, owner, limit, queue: waiter ? { waitMs: 5_000 } : undefined };
}

function fenceOf(outcome: AcquireOutcome): number {
  if (!outcome.acquired) throw new Error(`not granted: ${JSON.stringify(outcome)}`);
  return outcome.fencingToken;
}

describe('Redis shared locks and permits (real redis-server)', () => {
  const fixture = redisBackendFixture({ queueReservationMs: 150 });

  it('readers hold together with their own fencing tokens; a writer waits; every holder is listed', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('readers')}scan`;
    const readers = [request(key, { mode: 'shared' }), request(key, { mode: 'shared' }), request(key, { mode: 'shared', ttlMs: 9_000 })];
    const fences = [];
    for (const reader of readers) fences.push(fenceOf(await backend.tryAcquire(reader)));
    expect(fences[1]).toBeGreaterThan(fences[0]);
    expect(fences[2]).toBeGreaterThan(fences[1]);
    expect(await backend.tryAcquire(request(key))).toMatchObject({ acquired: false });
    // The marker in the lease key ends with the latest reader's lease: earlier versions see it held.
    expect(await raw.get(lockKeys(key).lease)).toBe('shared:');
    expect(await raw.pttl(lockKeys(key).lease)).toBeGreaterThan(8_000);

    const records = await backend.inspect(key);
    expect(records.map((record) => [record.mode, record.fencingToken, record.ownerId])).toEqual(fences.map((fence) => ['shared', fence, 'holders-test']));
    const listed = await backend.list({ prefix: key, limit: 10 });
    expect(listed.map((record) => record.fencingToken)).toEqual(fences);

    for (const reader of readers) expect(await backend.release(reader)).toBe('released');
    expect(await raw.exists(lockKeys(key).lease, lockKeys(key).holders, lockKeys(key).expiries)).toBe(0);
    const writer = fenceOf(await backend.tryAcquire(request(key)));
    expect(writer).toBeGreaterThan(fences[2]);
  });

  it('a queued writer keeps new readers out; the last reader passes it the lock; queued readers follow together', async () => {
    const { backend } = fixture;
    const key = `${uniquePrefix('writer')}scan`;
    const reader = request(key, { mode: 'shared' });
    fenceOf(await backend.tryAcquire(reader));
    expect(await backend.tryAcquire(request(key, { waiter: 'writer' }))).toMatchObject({ acquired: false });
    // A new reader, trying or waiting, does not get in ahead of the writer.
    expect(await backend.tryAcquire(request(key, { mode: 'shared' }))).toMatchObject({ acquired: false });
    expect(await backend.tryAcquire(request(key, { mode: 'shared', waiter: 'r1' }))).toMatchObject({ acquired: false });
    expect(await backend.tryAcquire(request(key, { mode: 'shared', waiter: 'r2' }))).toMatchObject({ acquired: false });

    const signal = new AbortController().signal;
    const writerPassed = backend.waitForRelease(key, 3_000, signal, 'writer');
    await until(async () => (await fixture.raw.pubsub('NUMSUB', lockKeys(key).channel))[1] === 1, 2_000, 'subscribed');
    expect(await backend.release(reader)).toBe('released');
    const writerFence = (await writerPassed)?.fencingToken;
    expect(writerFence).toBeGreaterThan(0);
    expect(await backend.tryAcquire(request(key, { waiter: 'writer' }))).toEqual({ acquired: true, fencingToken: writerFence });

    // The writer leaves: the first reader gets a kept turn (an exclusive release grants plain
    // leases only), asks again, and the reader behind it comes along in the same step.
    expect(await backend.release({ key, token: 'writer', mode: 'exclusive' })).toBe('released');
    const first = fenceOf(await backend.tryAcquire(request(key, { mode: 'shared', waiter: 'r1' })));
    const second = fenceOf(await backend.tryAcquire(request(key, { mode: 'shared', waiter: 'r2' })));
    expect(first).toBeGreaterThan(writerFence as number);
    expect(second).toBeGreaterThan(first);
    expect((await backend.inspect(key)).map((record) => record.mode)).toEqual(['shared', 'shared']);
    await backend.release({ key, token: 'r1', mode: 'shared' });
    await backend.release({ key, token: 'r2', mode: 'shared' });
    expect(await fixture.raw.exists(lockKeys(key).lease, lockKeys(key).queue)).toBe(0);
  });

  it('limit 3: three permits, the fourth misses until the earliest lease ends; the queue gets the freed permit pushed', async () => {
    const { backend } = fixture;
    const key = `${uniquePrefix('permits')}export`;
    const permits = [request(key, { limit: 3, ttlMs: 4_000 }), request(key, { limit: 3 }), request(key, { limit: 3 })];
    for (const permit of permits) fenceOf(await backend.tryAcquire(permit));
    const miss = await backend.tryAcquire(request(key, { limit: 3 }));
    expect(miss.acquired).toBe(false);
    if (!miss.acquired) {
      expect(miss.retryAfterMs).toBeGreaterThan(3_000);
      expect(miss.retryAfterMs).toBeLessThanOrEqual(4_000);
    }
    expect(await backend.tryAcquire(request(key, { limit: 3, waiter: 'p4' }))).toMatchObject({ acquired: false });
    const passed = backend.waitForRelease(key, 3_000, new AbortController().signal, 'p4');
    expect(await backend.release(permits[1])).toBe('released');
    expect((await passed)?.fencingToken).toBeGreaterThan(0);
    expect((await backend.inspect(key)).map((record) => record.limit)).toEqual([3, 3, 3]);
    for (const permit of [permits[0], permits[2], request(key, { limit: 3, waiter: 'p4' })]) expect(await backend.release(permit)).toBe('released');
  });

  it('a different limit, a plain lock on permits or permits on a plain lock: limitInUse, never queued', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('mismatch')}export`;
    const permit = request(key, { limit: 3 });
    fenceOf(await backend.tryAcquire(permit));
    expect(await backend.tryAcquire(request(key, { limit: 5 }))).toEqual({ acquired: false, retryAfterMs: null, limitInUse: 3 });
    expect(await backend.tryAcquire(request(key, { limit: 5, waiter: 'w5' }))).toEqual({ acquired: false, retryAfterMs: null, limitInUse: 3 });
    expect(await backend.tryAcquire(request(key))).toEqual({ acquired: false, retryAfterMs: null, limitInUse: 3 });
    expect(await backend.tryAcquire(request(key, { waiter: 'plain' }))).toEqual({ acquired: false, retryAfterMs: null, limitInUse: 3 });
    expect(await backend.tryAcquire(request(key, { mode: 'shared' }))).toEqual({ acquired: false, retryAfterMs: null, limitInUse: 3 });
    expect(await raw.exists(lockKeys(key).queue)).toBe(0);
    await backend.release(permit);

    const plain = request(key);
    fenceOf(await backend.tryAcquire(plain));
    expect(await backend.tryAcquire(request(key, { limit: 2 }))).toEqual({ acquired: false, retryAfterMs: null, limitInUse: 1 });
    await backend.release(plain);
  });

  it('a permit whose holder never releases frees its place when its lease ends, not before', async () => {
    const { backend } = fixture;
    const key = `${uniquePrefix('crash')}export`;
    fenceOf(await backend.tryAcquire(request(key, { limit: 2, ttlMs: 400 })));
    const kept = request(key, { limit: 2 });
    fenceOf(await backend.tryAcquire(kept));
    const miss = await backend.tryAcquire(request(key, { limit: 2 }));
    expect(miss.acquired).toBe(false);
    await until(async () => (await backend.tryAcquire(request(key, { limit: 2 }))).acquired, 3_000, 'permit freed');
    expect(await backend.release(kept)).toBe('released');
  });

  it('the marker ends with the latest lease: moved by its release only; an ended lease answers expired', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('marker')}export`;
    const lease = lockKeys(key).lease;
    const ended = request(key, { limit: 4, ttlMs: 200 });
    const [early, latest] = [request(key, { limit: 4, ttlMs: 3_000 }), request(key, { limit: 4, ttlMs: 6_000 })];
    for (const permit of [ended, early, latest]) fenceOf(await backend.tryAcquire(permit));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await backend.release(ended)).toBe('expired');
    expect(await backend.release(early)).toBe('released');
    // Neither was the latest: the marker still ends with `latest`.
    expect(await raw.pttl(lease)).toBeGreaterThan(5_000);
    const later = request(key, { limit: 4, ttlMs: 2_000 });
    fenceOf(await backend.tryAcquire(later));
    expect(await backend.release(latest)).toBe('released');
    expect(await raw.pttl(lease)).toBeLessThanOrEqual(2_000);
    expect(await raw.pttl(lease)).toBeGreaterThan(1_000);
    expect(await backend.release(later)).toBe('released');
    expect(await raw.exists(lease, lockKeys(key).holders, lockKeys(key).expiries)).toBe(0);

    // A one-shot reader on a writer's lock misses with the writer's remaining lease; a permit there is a caller error.
    const writer = request(key, { ttlMs: 3_000 });
    fenceOf(await backend.tryAcquire(writer));
    const reader = await backend.tryAcquire(request(key, { mode: 'shared' }));
    expect(reader.acquired).toBe(false);
    if (!reader.acquired) expect(reader.retryAfterMs).toBeGreaterThan(2_000);
    expect(await backend.tryAcquire(request(key, { limit: 4 }))).toEqual({ acquired: false, retryAfterMs: null, limitInUse: 1 });
    await backend.release(writer);
  });

  it('heartbeats of plain, shared and permit leases go in one call, answered in order; an ended one answers false', async () => {
    const { backend, raw } = fixture;
    const prefix = uniquePrefix('extend');
    const plain = request(`${prefix}a`, { ttlMs: 1_000 });
    const reader = request(`${prefix}b`, { mode: 'shared', ttlMs: 1_000 });
    const permit = request(`${prefix}c`, { limit: 2, ttlMs: 1_000 });
    for (const lease of [plain, reader, permit]) fenceOf(await backend.tryAcquire(lease));
    const gone = { ...request(`${prefix}b`, { mode: 'shared' }), token: 'never-granted' };
    const answers = await backend.extend([reader, plain, gone, permit].map((lease) => ({ ...lease, ttlMs: 20_000 })));
    expect(answers).toEqual([true, true, false, true]);
    for (const lease of [plain, reader, permit]) expect(await raw.pttl(lockKeys(lease.key).lease)).toBeGreaterThan(15_000);
    expect((await backend.inspect(reader.key))[0].ttlMs).toBe(20_000);
  });

  it('force release evicts one holder by fencing token, or all; changed-hands when none has it', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('reap')}scan`;
    const readers = [request(key, { mode: 'shared' }), request(key, { mode: 'shared' }), request(key, { mode: 'shared' })];
    const fences = [];
    for (const reader of readers) fences.push(fenceOf(await backend.tryAcquire(reader)));
    expect(await backend.forceRelease({ key, reason: 'test', expectFencingToken: 1 })).toMatchObject({ outcome: 'changed-hands', current: { fencingToken: fences[0] } });
    expect(await backend.forceRelease({ key, reason: 'test', expectFencingToken: fences[1] })).toMatchObject({ outcome: 'released', previous: { fencingToken: fences[1], mode: 'shared' } });
    expect((await backend.inspect(key)).map((record) => record.fencingToken)).toEqual([fences[0], fences[2]]);
    expect(await backend.extend([{ ...readers[1], ttlMs: 5_000 }])).toEqual([false]);
    expect(await backend.forceRelease({ key, reason: 'test' })).toMatchObject({ outcome: 'released', previous: { fencingToken: fences[0] } });
    expect(await raw.exists(lockKeys(key).lease)).toBe(0);
    expect(await backend.inspect(key)).toEqual([]);
    expect(fenceOf(await backend.tryAcquire(request(key)))).toBeGreaterThan(fences[2]);
  });

  it('waiters that give up: a permit pushed to one goes to the next; readers a departed writer kept out get in at once', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('leave')}export`;
    const holder = request(key, { limit: 2 });
    const other = request(key, { limit: 2 });
    fenceOf(await backend.tryAcquire(holder));
    fenceOf(await backend.tryAcquire(other));
    await backend.tryAcquire(request(key, { limit: 2, waiter: 'gives-up' }));
    await backend.tryAcquire(request(key, { limit: 2, waiter: 'stays' }));
    await backend.release(holder);
    expect((await backend.inspect(key)).length).toBe(2);
    await backend.leaveQueue(key, 'gives-up');
    expect(await backend.tryAcquire(request(key, { limit: 2, waiter: 'stays' }))).toMatchObject({ acquired: true });
    await backend.release(other);
    await backend.release({ key, token: 'stays', mode: 'exclusive', limit: 2 });

    const scan = `${uniquePrefix('leave-writer')}scan`;
    const reader = request(scan, { mode: 'shared' });
    fenceOf(await backend.tryAcquire(reader));
    await backend.tryAcquire(request(scan, { waiter: 'writer' }));
    await backend.tryAcquire(request(scan, { mode: 'shared', waiter: 'behind' }));
    await backend.leaveQueue(scan, 'writer');
    expect(await raw.lrange(lockKeys(scan).queue, 0, -1)).toEqual([]);
    expect(await backend.tryAcquire(request(scan, { mode: 'shared', waiter: 'behind' }))).toMatchObject({ acquired: true });
    expect((await backend.inspect(scan)).length).toBe(2);
  });

  it('the CLI lists and inspects every reader and permit', async () => {
    const { backend, server } = fixture;
    const prefix = uniquePrefix('cli');
    const grants = [request(`${prefix}scan`, { mode: 'shared' }), request(`${prefix}scan`, { mode: 'shared' }), request(`${prefix}export`, { limit: 2 })];
    for (const grant of grants) fenceOf(await backend.tryAcquire(grant));
    const io = recordingIo();
    expect(await runCli(['list', '--json', '--redis', server.url, '--key-prefix', prefix], io)).toBe(0);
    const views = (JSON.parse(io.stdout) as HolderView[]).map(({ key, mode }) => ({ key, mode })).sort((a, b) => a.key.localeCompare(b.key));
    expect(views).toEqual([{ key: 'export', mode: 'exclusive' }, { key: 'scan', mode: 'shared' }, { key: 'scan', mode: 'shared' }]);
    const table = recordingIo();
    expect(await runCli(['inspect', 'export', '--redis', server.url, '--key-prefix', prefix], table)).toBe(0);
    expect(table.stdout).toMatch(/^export\s+limit 2\s/m);
  });

  it('a lock set mixes modes and limits, all or none', async () => {
    const { backend } = fixture;
    const prefix = uniquePrefix('set');
    const set = [request(`${prefix}a`), request(`${prefix}b`, { mode: 'shared' }), request(`${prefix}c`, { limit: 2 })];
    const outcome = await backend.tryAcquireAll(set);
    expect(outcome.acquired).toBe(true);
    const writer = request(`${prefix}b`);
    const blocked = await backend.tryAcquireAll([request(`${prefix}c`, { limit: 2 }), writer]);
    expect(blocked).toMatchObject({ acquired: false, held: [{ key: `${prefix}b` }] });
    // Rolled back: the permit taken before the miss was given back.
    expect((await backend.inspect(`${prefix}c`)).length).toBe(1);
    // Another limit, or a plain lock on permits, in a set: limitInUse, for the caller to throw.
    expect(await backend.tryAcquireAll([request(`${prefix}c`, { limit: 5 }), request(`${prefix}d`)])).toEqual({
      acquired: false,
      held: [{ key: `${prefix}c`, retryAfterMs: null, limitInUse: 2 }],
    });
    expect(await backend.tryAcquireAll([request(`${prefix}c`), request(`${prefix}d`)])).toEqual({
      acquired: false,
      held: [{ key: `${prefix}c`, retryAfterMs: null, limitInUse: 2 }],
    });
  });
});

/** The Lua of the previous version (commit 397f977), as in redis-fencing-tokens.spec.ts. */
const previousScripts = JSON.parse(readFileSync(join(__dirname, 'fixtures/redis-scripts-397f977.json'), 'utf8')) as Record<
  'ACQUIRE' | 'ACQUIRE_OR_QUEUE' | 'HAND_OVER' | 'RELEASE',
  string
>;

describe('rolling upgrade: the previous version keeps out of locks this one holds shared or as permits', () => {
  const fixture = redisBackendFixture({ queueReservationMs: 150 });

  async function previousAcquire(key: string, token: string): Promise<boolean> {
    const keys = lockKeys(key);
    const reply = (await fixture.raw.eval(previousScripts.ACQUIRE, 3, keys.lease, keys.fence, keys.holder, token, 5_000, recordTail(Date.now(), '{}'))) as number;
    return reply >= 1;
  }

  it.each([
    ['readers', { mode: 'shared' } as Ask],
    ['permits', { limit: 3 } as Ask],
  ])('%s: excluded while any holds, through heartbeats, until the last lease ends', async (_name, ask) => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('upgrade')}job`;
    const short = request(key, { ...ask, ttlMs: 300 });
    const long = request(key, { ...ask, ttlMs: 1_500 });
    fenceOf(await backend.tryAcquire(short));
    fenceOf(await backend.tryAcquire(long));
    expect(await previousAcquire(key, 'old-1')).toBe(false);
    // The previous version's release of a token it does not hold changes nothing.
    const keys = lockKeys(key);
    await raw.eval(previousScripts.RELEASE, 5, keys.lease, keys.holder, keys.queue, keys.waiting, keys.fence, 'old-1');
    // The short one is gone (not released: crashed); the long one's heartbeat keeps the marker alive.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await backend.extend([{ ...long, ttlMs: 1_500 }])).toEqual([true]);
    expect(await previousAcquire(key, 'old-2')).toBe(false);
    expect(await raw.pttl(keys.lease)).toBeGreaterThan(1_000);
    // Nobody extends any more: the previous version gets the lock when the last lease ends, not before.
    const sawHeldAt = Date.now();
    await until(() => previousAcquire(key, 'old-3'), 5_000, 'free for the previous version');
    expect(Date.now() - sawHeldAt).toBeGreaterThanOrEqual(1_000);
  });

  it('readers queued behind a writer of the previous version get in together when it releases', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('upgrade-readers')}job`;
    const keys = lockKeys(key);
    expect(await previousAcquire(key, 'old-holder')).toBe(true);
    for (const waiter of ['r1', 'r2']) expect(await backend.tryAcquire(request(key, { mode: 'shared', waiter }))).toMatchObject({ acquired: false });
    await raw.eval(previousScripts.RELEASE, 5, keys.lease, keys.holder, keys.queue, keys.waiting, keys.fence, 'old-holder');
    // The previous version cannot grant a reader: it keeps the turn for the first one, which asks again.
    expect(await raw.get(keys.lease)).toBe('queued:r1');
    const first = fenceOf(await backend.tryAcquire(request(key, { mode: 'shared', waiter: 'r1' })));
    const second = fenceOf(await backend.tryAcquire(request(key, { mode: 'shared', waiter: 'r2' })));
    expect(second).toBeGreaterThan(first);
    expect(await previousAcquire(key, 'old-again')).toBe(false);
  });

  it('a writer of the previous version queued behind readers gets the lock pushed by the last reader', async () => {
    const { backend, raw } = fixture;
    const key = `${uniquePrefix('upgrade-queue')}job`;
    const keys = lockKeys(key);
    const reader = request(key, { mode: 'shared' });
    const readerFence = fenceOf(await backend.tryAcquire(reader));
    const [granted] = (await raw.eval(
      previousScripts.ACQUIRE_OR_QUEUE, 5, keys.lease, keys.fence, keys.holder, keys.queue, keys.waiting,
      'old-writer', 5_000, recordTail(Date.now(), '{}'), 10_000,
    )) as [number, number];
    expect(granted).toBe(0);
    expect(await backend.release(reader)).toBe('released');
    expect(await raw.get(keys.lease)).toBe('old-writer');
    expect(Number((await raw.get(keys.fence)) ?? 0)).toBeGreaterThan(readerFence);
  });
});
