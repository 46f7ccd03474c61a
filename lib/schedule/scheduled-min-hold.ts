import { dirname } from 'node:path';
import { LockOptionsError } from '../lock.errors';

/**
 * The default minimum hold of a `@WithLock` method that @nestjs/schedule runs, so each tick runs
 * on exactly one replica although the replicas' clocks (and timers) disagree.
 *
 * - `@Cron`: the lock is held until `gap` before this replica's next scheduled fire, `gap` being
 *   a tenth of the period, at most 1 s. Every replica that fires the same tick later (its clock
 *   behind, its timer late) within that hold finds the lock taken; the next tick is never
 *   blocked, since the hold ends before the winner's own next fire. Exactly once per tick while
 *   the replicas' fire times for one tick spread over less than `period - gap` (1 s cron: 900 ms,
 *   clocks ±450 ms apart).
 * - `@Interval(p)`: held `p - gap`. Replicas' intervals start at their own bootstrap, so their
 *   phases differ: after a run, the first replica to fire once the hold has ended runs next —
 *   one run every `p - gap` to `p` across all replicas, and at least one per `p` (the last
 *   runner fires again `gap` after its hold).
 * - `@Timeout(d)`: one run per deploy among replicas whose timeouts fire within `max(d, 1 min)`
 *   of the first.
 *
 * The hold is counted from the grant (see `LockCallOptions.minHoldMs`). `@WithLock`'s own
 * `minHoldMs` replaces this default (`0`: none).
 */
export type MinHoldRule = () => number;

/** @nestjs/schedule's metadata keys and scheduler types (plain strings: that package is optional). */
const SCHEDULER_TYPE = 'SCHEDULER_TYPE';
const SCHEDULE_CRON_OPTIONS = 'SCHEDULE_CRON_OPTIONS';
const SCHEDULE_INTERVAL_OPTIONS = 'SCHEDULE_INTERVAL_OPTIONS';
const SCHEDULE_TIMEOUT_OPTIONS = 'SCHEDULE_TIMEOUT_OPTIONS';
const enum SchedulerType {
  Cron = 1,
  Timeout = 2,
  Interval = 3,
}

/** A cron timer may fire a little early: a next fire closer than this is the current tick. */
const EARLY_FIRE_MS = 50;
const MAX_GAP_MS = 1_000;
const MIN_ONE_SHOT_HOLD_MS = 60_000;

interface CronOptions {
  cronTime: unknown;
  timeZone?: string;
  utcOffset?: number;
}

interface CronTimeLike {
  sendAt(count: number): { toMillis(): number }[];
}

/** The rule for `method`'s schedule, or `undefined` when @nestjs/schedule does not run it. */
export function scheduledMinHold(method: object): MinHoldRule | undefined {
  switch (Reflect.getMetadata(SCHEDULER_TYPE, method) as SchedulerType | undefined) {
    case SchedulerType.Cron:
      return cronMinHold(Reflect.getMetadata(SCHEDULE_CRON_OPTIONS, method) as CronOptions);
    case SchedulerType.Interval: {
      const periodMs = (Reflect.getMetadata(SCHEDULE_INTERVAL_OPTIONS, method) as { timeout: number }).timeout;
      const holdMs = Math.max(0, periodMs - gapFor(periodMs));
      return () => holdMs;
    }
    case SchedulerType.Timeout: {
      const delayMs = (Reflect.getMetadata(SCHEDULE_TIMEOUT_OPTIONS, method) as { timeout: number }).timeout;
      const holdMs = Math.max(delayMs, MIN_ONE_SHOT_HOLD_MS);
      return () => holdMs;
    }
    default:
      return undefined;
  }
}

function cronMinHold(options: CronOptions): MinHoldRule {
  if (typeof options.cronTime !== 'string') {
    // A Date (or Luxon DateTime): one fire, like a timeout.
    return () => MIN_ONE_SHOT_HOLD_MS;
  }
  const schedule = new (loadCronTime())(options.cronTime, options.timeZone, options.utcOffset);
  return () => {
    const now = Date.now();
    const [first, second, third] = schedule.sendAt(3).map((date) => date.toMillis());
    // Fired a hair early, the "next" fire is this very tick.
    const [next, afterNext] = first - now < EARLY_FIRE_MS ? [second, third] : [first, second];
    return Math.max(0, Math.floor(next - gapFor(afterNext - next) - now));
  };
}

function gapFor(periodMs: number): number {
  return Math.min(MAX_GAP_MS, Math.ceil(periodMs / 10));
}

/** `cron` as @nestjs/schedule resolves it (it is that package's dependency, not ours). */
function loadCronTime(): new (source: string, timeZone?: string, utcOffset?: number) => CronTimeLike {
  try {
    const schedule = require.resolve('@nestjs/schedule');
    return (require(require.resolve('cron', { paths: [dirname(schedule)] })) as { CronTime: never }).CronTime;
  } catch (error) {
    throw new LockOptionsError(`@WithLock on a @Cron method needs the 'cron' package @nestjs/schedule uses: ${String(error)}`);
  }
}
