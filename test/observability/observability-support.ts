import { Redis } from 'ioredis';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import { until } from '../support/redis-server';

/**
 * Resolves once some client listens for releases of `storeKey` on the Redis at `url`: a
 * waiter's subscription is up, so a release now passes the lease to it (a store hand-off).
 */
export async function releaseSubscribed(url: string, storeKey: string): Promise<void> {
  const raw = new Redis(url);
  try {
    await until(async () => Number((await raw.pubsub('NUMSUB', lockKeys(storeKey).channel))[1]) >= 1, 5_000, `a subscriber of ${storeKey}`);
  } finally {
    raw.disconnect();
  }
}
