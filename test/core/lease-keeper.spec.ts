import { performance } from 'node:perf_hooks';
import { LeaseKeeper, type KeptLease } from '../../lib/lease-keeper';

type NamedLease = KeptLease & { name: string };

/**
 * A lease whose heartbeat is already due, and whose time has either already run out or lasts
 * a minute. Both are decided before the keeper's first tick, however early or late its timer
 * fires (Node may fire a timer up to a millisecond before the monotonic clock reaches it).
 */
const lease = (name: string, timedOut: boolean): NamedLease => {
  const now = performance.now();
  return { name, ttlMs: 60_000, heartbeatMs: 40, nextBeatAt: now, deadline: timedOut ? now - 1 : now + 60_000, keeperSlot: -1 };
};

async function until(done: () => boolean): Promise<void> {
  // The keeper's one timer fires at once; allow a slow machine 2 s.
  for (const giveUpAt = performance.now() + 2_000; !done() && performance.now() < giveUpAt; ) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('LeaseKeeper', () => {
  it('in one tick: gives up exactly the leases whose time ran out, beats each live one once, even when a lost hook removes others', async () => {
    const lost: string[] = [];
    const beaten: string[][] = [];
    let onLost = (_name: string): void => undefined;
    const keeper = new LeaseKeeper({
      extend: async (batch) => {
        beaten.push((batch as NamedLease[]).map((kept) => kept.name).sort());
        return batch.map(() => true);
      },
      lost: (kept, reason) => {
        const { name } = kept as NamedLease;
        lost.push(`${name}:${reason}`);
        onLost(name);
      },
      extendFailed: () => undefined,
    });
    // Slots 0..5; the time of a, c and e has run out.
    const leases = ['a', 'b', 'c', 'd', 'e', 'f'].map((name, slot) => lease(name, slot % 2 === 0));
    leases.forEach((kept) => keeper.add(kept));
    keeper.add(leases[0]); // twice: still kept once
    keeper.delete(leases[2]); // released before its time ran out: never reported
    keeper.delete(leases[2]);
    // The tick walks the slots from the top: while "e" is reported lost, its owner releases
    // "b", a slot the tick has not reached yet, and "d" moves within the list.
    onLost = (name) => {
      if (name === 'e') keeper.delete(leases[1]);
    };
    await until(() => lost.length >= 2 && beaten.length >= 1);
    expect(lost.sort()).toEqual(['a:lease-timed-out', 'e:lease-timed-out']);
    expect(beaten).toEqual([['d', 'f']]);
    expect(leases.map((kept) => kept.keeperSlot >= 0)).toEqual([false, false, false, true, false, true]);
    keeper.stop();
  });

  it('beats a live lease once when a lost hook releases a lease the tick has not reached', async () => {
    const lost: string[] = [];
    const beaten: string[][] = [];
    // Slots 0..3; only "x2" has run out. Its owner then releases "x0": "x3", already visited, moves there.
    const leases = ['x0', 'x1', 'x2', 'x3'].map((name) => lease(name, name === 'x2'));
    const keeper = new LeaseKeeper({
      extend: async (batch) => {
        beaten.push((batch as NamedLease[]).map((kept) => kept.name).sort());
        return batch.map(() => true);
      },
      lost: (kept) => {
        lost.push((kept as NamedLease).name);
        keeper.delete(leases[0]);
      },
      extendFailed: () => undefined,
    });
    leases.forEach((kept) => keeper.add(kept));
    await until(() => lost.length >= 1 && beaten.length >= 1);
    expect(lost).toEqual(['x2']);
    expect(beaten).toEqual([['x1', 'x3']]);
    keeper.stop();
  });
});
