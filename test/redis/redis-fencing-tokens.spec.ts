import { Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RedisLockBackend, type LockOwner, type LockRequest } from '../../lib';
import { FENCE_MARGIN_MS, fenceClockAt } from '../../lib/backends/redis/fencing-clock';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import { parseHolderRecord, recordTail } from '../../lib/backends/redis/redis-holder-record';
import { RedisServer, until } from '../support/redis-server';
import { uniquePrefix } from './redis-test-app';

/** The Lua of the previous version, as it sent it (`source` in the file says where it comes from). */
const previousScripts = JSON.parse(readFileSync(join(__dirname, 'fixtures/redis-scripts-397f977.json'), 'utf8')) as Record<
  'ACQUIRE' | 'ACQUIRE_OR_QUEUE' | 'HAND_OVER' | 'RELEASE',
  string
>;

const owner: LockOwner = { ownerId: 'fencing-test', instanceId: 'i-1', hostname: 'host', pid: 1 };
let tokens = 0;

function request(key: string, ttlMs = 5_000, queue?: LockRequest['queue']): LockRequest {
  tokens += 1;
  return { key, token: `fencing-${tokens}`, ttlMs, mode: 'exclusive', owner, queue };
}

/** Grant and release `count` times; the fencing tokens, in order. */
async function cycles(backend: RedisLockBackend, key: string, count: number): Promise<number[]> {
  const granted: number[] = [];
  for (let index = 0; index < count; index += 1) {
    const lease = request(key);
    const outcome = await backend.tryAcquire(lease);
    if (!outcome.acquired) throw new Error(`${key} is held`);
    granted.push(outcome.fencingToken);
    expect(await backend.release(lease)).toBe('released');
  }
  return granted;
}

function expectRising(sequence: number[]): void {
  for (let index = 1; index < sequence.length; index += 1) expect(sequence[index]).toBeGreaterThan(sequence[index - 1]);
}

async function connected(url: string): Promise<{ client: Redis; backend: RedisLockBackend }> {
  const client = new Redis(url);
  const backend = new RedisLockBackend(client);
  await backend.init();
  return { client, backend };
}

describe('Redis fencing tokens never go backwards, not even when Redis loses its data', () => {
  const servers: RedisServer[] = [];
  const clients: Redis[] = [];
  afterEach(async () => {
    clients.splice(0).forEach((client) => client.disconnect());
    await Promise.all(servers.splice(0).map((server) => server.destroy()));
  });
  async function server(args: string[] = []): Promise<RedisServer> {
    const started = await RedisServer.start(args);
    servers.push(started);
    return started;
  }
  async function backendOn(target: RedisServer): Promise<RedisLockBackend> {
    const { client, backend } = await connected(target.url);
    clients.push(client);
    return backend;
  }

  it('a restart with empty data: every later token is above every token issued before', async () => {
    const redis = await server();
    const backend = await backendOn(redis);
    const key = `${uniquePrefix('restart')}job`;
    const before = await cycles(backend, key, 5);
    const held = request(`${key}-held`);
    const heldOutcome = await backend.tryAcquire(held);
    expectRising(before);

    await redis.restart();
    expect(await redis.cli('dbsize')).toBe('0');
    await until(async () => (await backend.client.ping().catch(() => '')) === 'PONG', 5_000, 'client reconnected');

    const after = await cycles(backend, key, 5);
    expectRising(after);
    expect(after[0]).toBeGreaterThan(Math.max(...before));
    // The lost lease's key too: its next holder's token is above the one the lost holder still uses.
    const next = await backend.tryAcquire(request(`${key}-held`));
    expect(heldOutcome.acquired && next.acquired && next.fencingToken > heldOutcome.fencingToken).toBe(true);
  });

  it('a replica promoted before it received the last grants: its tokens are above the lost ones', async () => {
    const primary = await server();
    const replica = await server(['--replicaof', '127.0.0.1', String(primary.port)]);
    await until(async () => (await replica.cli('info', 'replication')).includes('master_link_status:up'), 10_000, 'replica in sync');
    const onPrimary = await backendOn(primary);
    const key = `${uniquePrefix('promote')}job`;
    const replicated = await cycles(onPrimary, key, 3);
    await until(async () => (await replica.cli('get', lockKeys(key).fence)) === String(replicated[2]), 5_000, 'fence replicated');

    // Promote the replica, cut off from the primary: the grants below never reach it.
    expect(await replica.cli('replicaof', 'no', 'one')).toBe('OK');
    const lost = await cycles(onPrimary, key, 3);
    expect(await replica.cli('get', lockKeys(key).fence)).toBe(String(replicated[2]));

    const onPromoted = await backendOn(replica);
    const after = await cycles(onPromoted, key, 3);
    expect(after[0]).toBeGreaterThan(Math.max(...replicated, ...lost));
    expectRising(after);
  });

  it('fence keys expire with the lease plus a margin, so key count follows the locks in use', async () => {
    const redis = await server();
    const backend = await backendOn(redis);
    const prefix = uniquePrefix('expiry');
    for (let index = 0; index < 20; index += 1) await cycles(backend, `${prefix}${index}`, 1);
    const raw = new Redis(redis.url);
    clients.push(raw);
    const keys = await raw.keys('*');
    expect(keys.every((key) => key.endsWith(':fence'))).toBe(true);
    for (const key of keys) {
      const pttl = await raw.pttl(key);
      expect(pttl).toBeGreaterThan(0);
      expect(pttl).toBeLessThanOrEqual(5_000 + FENCE_MARGIN_MS);
    }
    // A fence key of an earlier version (no expiry, a small counter) gets one at its next grant.
    const legacy = `${prefix}legacy`;
    await raw.set(lockKeys(legacy).fence, '71');
    const [token] = await cycles(backend, legacy, 1);
    expect(token).toBeGreaterThan(71);
    expect(await raw.pttl(lockKeys(legacy).fence)).toBeGreaterThan(0);
  });

  it('a fence key that expired: the clock alone is above its last token', async () => {
    const redis = await server();
    const backend = await backendOn(redis);
    const key = `${uniquePrefix('expired')}job`;
    const [first] = await cycles(backend, key, 1);
    await redis.cli('del', lockKeys(key).fence); // as if the margin had passed
    const [second] = await cycles(backend, key, 1);
    expect(second).toBeGreaterThan(first);
    // Tokens are Redis' clock in 10 µs ticks since 2025: exact JS numbers far below 2^53.
    expect(Math.abs(second - fenceClockAt(Date.now()))).toBeLessThan(fenceClockAt(60_000) - fenceClockAt(0));
    expect(Number.isSafeInteger(second)).toBe(true);
  });
});

/**
 * A rolling upgrade: the previous version (the Lua of commit 397f977, which INCRs the fence
 * key and prints it into the holder record and the hand-off message) and this one on one Redis.
 */
describe('rolling upgrade: tokens of the previous and this version on one Redis keep rising', () => {
  let redis: RedisServer;
  let raw: Redis;
  let subscriber: Redis;
  let client: Redis;
  let backend: RedisLockBackend;
  const published: string[] = [];

  beforeAll(async () => {
    redis = await RedisServer.start();
    raw = new Redis(redis.url);
    subscriber = new Redis(redis.url);
    ({ client, backend } = await connected(redis.url));
    subscriber.on('pmessage', (_pattern: string, _channel: string, message: string) => published.push(message));
    await subscriber.psubscribe('*:released');
  });
  afterAll(async () => {
    subscriber.disconnect();
    raw.disconnect();
    client.disconnect();
    await redis.destroy();
  });

  const previous = {
    acquire: async (lease: LockRequest): Promise<number | null> => {
      const keys = lockKeys(lease.key);
      const reply = (await raw.eval(previousScripts.ACQUIRE, 3, keys.lease, keys.fence, keys.holder, lease.token, lease.ttlMs, tail())) as number;
      return reply >= 1 ? reply : null;
    },
    queue: async (lease: LockRequest): Promise<number | null> => {
      const keys = lockKeys(lease.key);
      const [granted, value] = (await raw.eval(
        previousScripts.ACQUIRE_OR_QUEUE, 5, keys.lease, keys.fence, keys.holder, keys.queue, keys.waiting,
        lease.token, lease.ttlMs, tail(), 10_000,
      )) as [number, number];
      return granted === 1 ? value : null;
    },
    release: async (lease: LockRequest): Promise<void> => {
      const keys = lockKeys(lease.key);
      await raw.eval(previousScripts.RELEASE, 5, keys.lease, keys.holder, keys.queue, keys.waiting, keys.fence, lease.token);
    },
    handOver: async (from: LockRequest, to: LockRequest): Promise<number | null> => {
      const keys = lockKeys(to.key);
      return (await raw.eval(previousScripts.HAND_OVER, 3, keys.lease, keys.fence, keys.holder, to.token, to.ttlMs, tail(), from.token)) as number | null;
    },
  };
  const current = {
    acquire: async (lease: LockRequest): Promise<number | null> => {
      const outcome = await backend.tryAcquire(lease);
      return outcome.acquired ? outcome.fencingToken : null;
    },
    queue: async (lease: LockRequest): Promise<number | null> => current.acquire(lease),
    release: async (lease: LockRequest): Promise<void> => void (await backend.release(lease)),
    handOver: async (from: LockRequest, to: LockRequest): Promise<number | null> => (await backend.handOver(from, to))?.fencingToken ?? null,
  };
  type Version = typeof current;

  function tail(): string {
    return recordTail(Date.now(), JSON.stringify(owner));
  }

  /** The token as the store has it: the fence key and the holder record, both exact. */
  async function expectStored(key: string, fencingToken: number): Promise<void> {
    expect(await raw.get(lockKeys(key).fence)).toBe(String(fencingToken));
    expect(parseHolderRecord(await raw.get(lockKeys(key).holder))?.fencingToken).toBe(fencingToken);
  }

  it('grants, hand-overs and queue hand-offs alternate between versions in a seeded order', async () => {
    let seed = 16;
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const pick = (): Version => (random() < 0.5 ? previous : current);
    const key = `${uniquePrefix('upgrade')}job`;
    const issued: number[] = [];
    // The previous version creates the fence key (a small counter without expiry), as before the upgrade.
    const start = request(key);
    issued.push((await previous.acquire(start)) as number);
    await previous.release(start);
    expect(issued[0]).toBeLessThan(1_000);

    for (let step = 0; step < 60; step += 1) {
      const holder = request(key);
      const granted = await pick().acquire(holder);
      if (granted === null) throw new Error('the lock should be free');
      issued.push(granted);
      await expectStored(key, granted);
      let last = holder;
      const move = random();
      if (move < 0.33) {
        const next = request(key);
        const handed = await pick().handOver(holder, next);
        if (handed === null) throw new Error('hand-over refused');
        issued.push(handed);
        await expectStored(key, handed);
        last = next;
      } else if (move < 0.66) {
        // A queued waiter of one version gets the lease passed by the release of either.
        const waiter = request(key, 5_000, { waitMs: 10_000 });
        expect(await pick().queue(waiter)).toBeNull();
        published.length = 0;
        await pick().release(holder);
        await until(() => published.some((message) => message.startsWith(`granted\n${waiter.token}\n`)), 2_000, 'hand-off published');
        const passed = Number(published.find((message) => message.startsWith('granted'))?.split('\n')[2]);
        issued.push(passed);
        await expectStored(key, passed);
        last = waiter;
      }
      await pick().release(last);
    }
    expectRising(issued);
    expect(new Set(issued).size).toBe(issued.length);
  });
});
