import { createHash } from 'node:crypto';
import {
  ACQUIRE,
  ACQUIRE_ALL,
  ACQUIRE_OR_QUEUE,
  EXTEND,
  FORCE_RELEASE,
  HAND_OVER,
  LOCK_SCRIPTS,
  turnScripts,
  type LockScript,
} from '../../lib/backends/redis/redis-lock.scripts';
import { HOLDER_EXTEND, HOLDER_TRY_ACQUIRE, INSPECT, holderScripts } from '../../lib/backends/redis/holder-set.scripts';

/**
 * Every Lua script exactly as Redis receives it, fragments expanded: read them whole in
 * __snapshots__/redis-lock-scripts.spec.ts.snap. A change to any script, or to a fragment
 * several share, shows there as a diff to review (`npx jest -u` after reviewing it).
 */
describe('Redis lock scripts, fully expanded', () => {
  // The default queueReservationMs (redis-backend-options.interface.ts) written in.
  const turn = turnScripts(250);
  const holders = holderScripts(250);
  const scripts: [string, LockScript][] = [
    ['ACQUIRE', ACQUIRE],
    ['ACQUIRE_OR_QUEUE', ACQUIRE_OR_QUEUE],
    ['ACQUIRE_ALL', ACQUIRE_ALL],
    ['HAND_OVER', HAND_OVER],
    ['RELEASE (turnScripts(250).release)', turn.release],
    ['LEAVE_QUEUE (turnScripts(250).leaveQueue)', turn.leaveQueue],
    ['EXTEND', EXTEND],
    ['INSPECT', INSPECT],
    ['FORCE_RELEASE', FORCE_RELEASE],
    ['HOLDER_TRY_ACQUIRE', HOLDER_TRY_ACQUIRE],
    ['HOLDER_ACQUIRE (holderScripts(250).acquire)', holders.acquire],
    ['HOLDER_RELEASE (holderScripts(250).release)', holders.release],
    ['HOLDER_LEAVE_QUEUE (holderScripts(250).leaveQueue)', holders.leaveQueue],
    ['HOLDER_FORCE_RELEASE (holderScripts(250).forceRelease)', holders.forceRelease],
    ['HOLDER_EXTEND', HOLDER_EXTEND],
  ];

  it.each(scripts)('%s', (_name, script) => {
    expect({ numberOfKeys: script.numberOfKeys, lua: script.lua.split('\n') }).toMatchSnapshot();
    expect(script.sha).toBe(createHash('sha1').update(script.lua).digest('hex'));
  });

  it('every script loaded at bootstrap is pinned above', () => {
    const pinned = new Set(scripts.map(([, script]) => script));
    expect(LOCK_SCRIPTS.filter((script) => !pinned.has(script))).toEqual([]);
  });
});
