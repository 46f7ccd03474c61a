/**
 * How the Redis backend mints fencing tokens so that they never go backwards, not even when
 * Redis loses its data (a restart without persistence, a replica promoted before it received
 * the last grant).
 *
 * A grant's token is `max(previous token of the key + 1, Redis' clock)`, the clock being
 * `TIME` counted in ticks of FENCE_TICK_US since FENCE_EPOCH_S. The previous token is kept in
 * the lock's fence key only while it can matter: for the lease plus FENCE_MARGIN_MS. After
 * that (or after data loss) the clock alone is above every token issued before, given:
 *   - the clock of the Redis host that answers does not step back by more than the margin
 *     (NTP slews; a step back larger than that, or a promoted replica whose clock is behind
 *     the old primary's by more than the failover took, can repeat tokens);
 *   - no key is granted more than once per tick for long: the counter then runs ahead of
 *     the clock. One grant every 10 µs on one key is beyond what one Redis serves (each
 *     grant costs several µs of its single thread), so in practice the token is the clock.
 *
 * Why ticks of 10 µs since 2025 and not µs since 1970 (~1.8e15): Redis' Lua prints numbers
 * with 14 significant digits (`1.7649123456789e+15`), and the scripts of earlier versions
 * concatenate the token into the holder record and the hand-off message. Below 1e14 their
 * text is exact, so during a rolling upgrade the previous version, which `INCR`s the same
 * key, goes on reading and publishing exact tokens; 1e14 ticks of 10 µs last until 2056.
 * This version formats tokens with `%.0f` itself and is exact up to 2^53 (JS `number`).
 */

/** 2025-01-01T00:00:00Z, in seconds since the Unix epoch. */
export const FENCE_EPOCH_S = 1_735_689_600;
/** Length of one clock tick, in µs. */
export const FENCE_TICK_US = 10;
/** How long (ms) the fence key outlives the lease of its last grant. */
export const FENCE_MARGIN_MS = 60_000;

/**
 * Lua statements that mint the next fencing token of `fenceKey` into `local fence` (a number)
 * and `local fence_text` (its exact decimal text), and store it with the lease `ttl` (ms) plus
 * the margin as expiry. All arguments are Lua expressions; `clock`, a `TIME` reply the script
 * already read. Writes after `TIME` need effects replication: the default since Redis 5, the
 * only mode since Redis 7.
 */
export function mintFenceLua(fenceKey: string, ttl: string, clock = "redis.call('TIME')"): string {
  return `local fence_clock = ${clock}
local fence = math.max((tonumber(redis.call('GET', ${fenceKey})) or 0) + 1, (fence_clock[1] - ${FENCE_EPOCH_S}) * ${1_000_000 / FENCE_TICK_US} + math.floor(fence_clock[2] / ${FENCE_TICK_US}))
local fence_text = string.format('%.0f', fence)
redis.call('SET', ${fenceKey}, fence_text, 'PX', ${ttl} + ${FENCE_MARGIN_MS})`;
}

/** The token Redis' clock alone would mint at `epochMs` (for tests and diagnostics). */
export function fenceClockAt(epochMs: number): number {
  return Math.floor(((epochMs - FENCE_EPOCH_S * 1_000) * 1_000) / FENCE_TICK_US);
}
