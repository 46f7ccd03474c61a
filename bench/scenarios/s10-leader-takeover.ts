import { fork } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { LockModuleOptions } from '../../lib';
import type { BenchContext, Scenario } from '../harness/context';
import { num, table, x } from '../harness/format';
import { createService } from '../harness/locks';
import { pingRoundTripMs } from '../harness/redis-server';
import type { FromFollower, ToFollower } from '../leader-follower';

const ROOT = join(__dirname, '..', '..');

/** Follower waits this long after campaigning, so it is queued before the leader resigns. */
const SETTLE_MS = 100;

/**
 * 10. Leader takeover after a graceful resign: the leader (this process) resigns, a follower in
 * another process is elected. Redis passes the lease to the queued follower in the release
 * script and publishes it; the file backend wakes the follower from its release watcher.
 */
export const leaderTakeoverScenario: Scenario = {
  id: 10,
  title: 'Leader takeover after a graceful resign (Redis and file), vs a PING round trip',
  async run(context) {
    const rounds = context.quick ? 10 : 40;
    const ping = await pingRoundTripMs(context.admin);
    const backends: [string, LockModuleOptions][] = [
      ['redis', { backend: 'redis', redis: { url: context.locks.redisUrl }, keyPrefix: 'bench-leader:' }],
      ['file', { backend: 'file', file: { dir: context.locks.fileDir }, keyPrefix: 'bench-leader-' }],
    ];
    const rows: string[][] = [];
    const results: Record<string, number> = {};
    for (const [name, options] of backends) {
      const samples = await takeovers(context, options, rounds);
      samples.sort((a, b) => a - b);
      const p50 = samples[samples.length >> 1];
      results[name] = p50;
      rows.push([name, String(samples.length), num(p50, 3), num(samples[Math.floor(samples.length * 0.9)], 3), x(p50 / ping)]);
    }
    const body =
      table(['backend', 'takeovers', 'p50 ms', 'p90 ms', 'p50 / PING'], rows) +
      `\nPING round trip (p50): ${num(ping, 3)} ms. Takeover = from the leader's \`resign()\` call to the follower's \`onElected\`, measured across two processes on one host.\n`;
    return {
      body,
      verdicts: [
        {
          scenario: '10',
          target: 'leader takeover after a graceful resign (Redis), as PING round trips',
          measured: `${x(results.redis / ping)} (${num(results.redis, 3)} ms; file ${num(results.file, 3)} ms)`,
          met: null,
        },
      ],
    };
  },
};

async function takeovers(context: BenchContext, options: LockModuleOptions, rounds: number): Promise<number[]> {
  const leader = await createService(options);
  const follower = fork(join(ROOT, 'bench', 'leader-follower.ts'), [JSON.stringify(options)], {
    cwd: ROOT,
    execArgv: ['-r', 'ts-node/register/transpile-only'],
    env: { ...process.env, TS_NODE_PROJECT: join(ROOT, 'tsconfig.json') },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = (): Promise<FromFollower> => new Promise((resolve) => follower.once('message', resolve));
  const send = (message: ToFollower): void => void follower.send(message);
  const samples: number[] = [];
  try {
    await next(); // ready
    for (let round = 0; round < rounds; round++) {
      const name = `takeover-${process.pid}-${round}`;
      const handle = leader.campaign(name);
      while (!handle.isLeader) await new Promise((resolve) => setTimeout(resolve, 1));
      send({ follow: name });
      await next(); // queued
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const elected = next();
      const resignedAt = performance.timeOrigin + performance.now();
      await handle.resign();
      const answer = await elected;
      if ('elected' in answer) samples.push(answer.at - resignedAt);
    }
    context.log(`  leader takeover: ${samples.length} rounds on ${String(options.backend)}`);
  } finally {
    send({ stop: true });
    await new Promise((resolve) => follower.once('exit', resolve));
    await leader.beforeApplicationShutdown();
  }
  return samples;
}
