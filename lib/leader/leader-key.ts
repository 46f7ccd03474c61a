import { assertValidKey } from '../lock-options.validation';

/** Leaders hold a lock under this key prefix (after the module's `keyPrefix`); `list` shows them. */
export const LEADER_KEY_PREFIX = 'leader:';

export function leaderKey(name: string): string {
  assertValidKey(name);
  return LEADER_KEY_PREFIX + name;
}

/** The election name of a lock key, or `undefined` for other keys. */
export function leaderNameOf(key: string): string | undefined {
  return key.startsWith(LEADER_KEY_PREFIX) ? key.slice(LEADER_KEY_PREFIX.length) : undefined;
}
