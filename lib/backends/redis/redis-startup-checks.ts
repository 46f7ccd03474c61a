import type { Logger } from '@nestjs/common';
import { errorMessage } from '../../lock.errors';
import { settleWithin } from '../../settle-within';
import { noAnswerWithin, type RedisConnection } from './redis-connection';
import type { LockScript } from './redis-lock.scripts';

/**
 * What the backend asks Redis once at `init()`, each bounded by `timeoutMs` so a slow Redis
 * never blocks start-up, and none of them fatal.
 */

/** So the first calls are EVALSHA hits; `run()` still falls back to EVAL (restart, fail-over). */
export async function preloadScripts(connection: RedisConnection, scripts: readonly LockScript[], timeoutMs: number, logger: Logger): Promise<void> {
  try {
    const loads = connection.scanNodes().flatMap((node) => scripts.map((script) => node.script('LOAD', script.lua)));
    await settleWithin(Promise.all(loads), timeoutMs, noAnswerWithin(timeoutMs));
  } catch (error) {
    logger.debug(`Could not preload the lock scripts: ${errorMessage(error)}`);
  }
}

/** A warning when Redis may evict lock data under memory pressure. */
export async function warnOnEviction(connection: RedisConnection, timeoutMs: number, logger: Logger): Promise<void> {
  let policies: string[];
  try {
    policies = await settleWithin(evictionPolicies(connection), timeoutMs, noAnswerWithin(timeoutMs));
  } catch (error) {
    // CONFIG is often disabled or renamed on managed Redis: nothing to learn, nothing to fail.
    logger.debug(`Could not read maxmemory-policy: ${errorMessage(error)}`);
    return;
  }
  const risky = [...new Set(policies.filter((policy) => policy !== 'noeviction'))];
  if (risky.length > 0) {
    logger.warn(
      `Redis maxmemory-policy is ${risky.join(', ')}: under memory pressure Redis may evict a held lock ` +
        `(two holders at once) or its fencing counter. Use maxmemory-policy noeviction for lock data.`,
    );
  }
}

async function evictionPolicies(connection: RedisConnection): Promise<string[]> {
  const answers = await Promise.all(connection.scanNodes().map((node) => node.config('GET', 'maxmemory-policy') as Promise<unknown>));
  return answers.map((answer) => (Array.isArray(answer) ? String(answer[1] ?? '') : '')).filter(Boolean);
}
