// Types only: this file is loaded from the package root, which must load without ioredis.
import type { Redis } from 'ioredis';
import { LockBackendError, LockOptionsError } from '../../lock.errors';
import { lockScript } from './redis-lock.scripts';

/** `redis.replicas`: how many replicas must have a grant, hand-off or release before it counts. */
export interface ReplicaConfirmationOptions {
  /** Replicas that must acknowledge (`WAIT numreplicas`). At least 1. */
  min: number;
  /** How long to wait for them (`WAIT timeout`), ms. At least 1 (0 would mean "forever" to Redis). */
  timeoutMs: number;
}

/** Checks `redis.replicas`; `undefined` when not given. */
export function replicaOptions(value: unknown): ReplicaConfirmationOptions | undefined {
  if (value === undefined) return undefined;
  const given = value as Partial<Record<keyof ReplicaConfirmationOptions, unknown>> | null;
  const whole = (field: keyof ReplicaConfirmationOptions): number => {
    const number = given?.[field];
    if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < 1) {
      throw new LockOptionsError(`redis.replicas.${field} must be a positive integer, got ${String(number)}`);
    }
    return number;
  };
  if (typeof given !== 'object' || given === null) {
    throw new LockOptionsError(`redis.replicas must be { min, timeoutMs }, got ${String(value)}`);
  }
  const unknown = Object.keys(given).filter((field) => field !== 'min' && field !== 'timeoutMs');
  if (unknown.length > 0) throw new LockOptionsError(`redis.replicas takes min and timeoutMs, not ${unknown.join(', ')}`);
  return { min: whole('min'), timeoutMs: whole('timeoutMs') };
}

/**
 * A lease passed to a waiter by another process's release: the waiter wrote nothing itself,
 * so `WAIT` on its connection would confirm nothing. This compare-and-`PEXPIRE` (to the TTL
 * the lease already has) is a write of the waiter's own, ordered after the grant in the
 * replication stream: once replicas have it, they have the grant. KEYS: lease. ARGV: token.
 * Returns 1 while the lease is the token's, else 0.
 */
export const CONFIRM_HELD = lockScript(
  `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], redis.call('PTTL', KEYS[1]))
return 1
`,
  1,
);

/**
 * Confirms writes with `WAIT`, which waits for every write the connection sent before it. It
 * blocks that connection meanwhile, so the backend runs heartbeats on another one.
 */
export class ReplicaConfirmation {
  constructor(readonly options: ReplicaConfirmationOptions) {}

  /** Resolves once `min` replicas have every write `connection` sent so far; else `LockBackendError`. */
  async confirm(connection: Redis, what: string): Promise<void> {
    const { min, timeoutMs } = this.options;
    const acknowledged = await connection.wait(min, timeoutMs);
    if (acknowledged < min) {
      throw new LockBackendError('redis', `${what} reached ${acknowledged} of ${min} replica(s) within ${timeoutMs} ms (redis.replicas)`);
    }
  }
}
