import type { ListOptions, LockRecord } from '../../lock-backend.interface';
import type { RedisConnection } from './redis-connection';
import { HOLDER_SUFFIX, HOLDERS_SUFFIX, holderPattern } from './redis-lock-keys';

/**
 * Every holder of every lock under `prefix`: `SCAN MATCH` over the holder-record keys (every
 * master of a Cluster), never `KEYS`; each lock found is asked for its holders with `inspect`.
 */
export async function listLocks(
  connection: RedisConnection,
  { prefix, limit }: ListOptions,
  scanCount: number,
  inspect: (key: string) => Promise<LockRecord[]>,
): Promise<LockRecord[]> {
  const records: LockRecord[] = [];
  const seen = new Set<string>();
  const pattern = holderPattern(connection.keyPrefix, prefix);
  for (const node of connection.scanNodes()) {
    let cursor = '0';
    do {
      const [next, holderKeys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', scanCount);
      cursor = next;
      // A lock may have both record keys (a crashed exclusive holder's, then readers'), and SCAN may repeat a key.
      const keys = holderKeys.map((holderKey) => lockKeyOf(holderKey, connection.keyPrefix)).filter((key) => key.startsWith(prefix) && !seen.has(key));
      keys.forEach((key) => seen.add(key));
      const found = await Promise.all(keys.map(inspect));
      for (const record of found.flat()) {
        if (records.length < limit) records.push(record);
      }
    } while (cursor !== '0' && records.length < limit);
    if (records.length >= limit) break;
  }
  return records;
}

/** The lock key stored in a holder key's name (`<clientPrefix>{E}:holder` or `…:holders`), unescaped. */
function lockKeyOf(holderKey: string, clientKeyPrefix: string): string {
  const suffix = holderKey.endsWith(HOLDERS_SUFFIX) ? HOLDERS_SUFFIX : HOLDER_SUFFIX;
  const tagged = holderKey.slice(clientKeyPrefix.length, holderKey.length - suffix.length);
  return tagged.slice(1, -1).replace(/%(25|7D)/g, (escape) => (escape === '%25' ? '%' : '}'));
}
