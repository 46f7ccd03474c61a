import { spawnSync } from 'node:child_process';
import autocannon from 'autocannon';
import { num, table, x } from '../harness/format';
import type { BenchContext, Scenario } from '../harness/context';
import { median } from '../harness/stats';
import { Worker } from '../harness/workers';
import { missingRows } from './s1-uncontended-redis';

interface Route {
  name: string;
  port: () => number;
  path: string;
}

interface CannonResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function cannon(port: number, path: string, durationS: number): Promise<CannonResult> {
  let counter = 0;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: 10,
    duration: durationS,
    // Distinct keys: every request its own id.
    requests: [{ method: 'GET', setupRequest: (request) => ({ ...request, path: `${path}/${counter++}` }) }],
  });
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx };
}

async function startApp(backend: 'memory' | 'redis', context: BenchContext): Promise<{ worker: Worker; port: number }> {
  const worker = new Worker();
  const listening = worker.next('listening', 60_000);
  worker.run({ task: 'http', backend, context: context.locks });
  return { worker, port: (await listening).port };
}

function pin(cpus: string): void {
  spawnSync('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' });
}

/** 7. HTTP: `@WithLock` on distinct keys vs the same route undecorated, driven by autocannon. */
export const httpScenario: Scenario = {
  id: 7,
  title: 'HTTP (Express): @WithLock route on distinct keys vs the same route undecorated (autocannon, 10 connections)',
  async run(context) {
    const { ready } = await missingRows(['ours-redis'], context.locks);
    const memory = await startApp('memory', context);
    const redis = ready.length > 0 ? await startApp('redis', context) : null;
    // Servers stay where the runner put Node; autocannon moves next to redis-server.
    if (context.placement.taskset) pin(context.placement.redisCpus);
    const durationS = context.quick ? 1 : 10;
    const routes: Route[] = [
      { name: 'undecorated (memory app)', port: () => memory.port, path: '/plain' },
      { name: 'no-op async interceptor (control)', port: () => memory.port, path: '/noop' },
      { name: '@WithLock, memory backend', port: () => memory.port, path: '/locked' },
      ...(redis ? [{ name: '@WithLock, redis backend', port: () => redis.port, path: '/locked' }] : []),
    ];
    const results = routes.map(() => [] as CannonResult[]);
    try {
      // Warm-up both apps.
      if (!context.quick) for (const route of routes) await cannon(route.port(), route.path, 1);
      const reps = context.quick ? 1 : context.reps;
      for (let rep = 0; rep < reps; rep++) {
        for (let i = 0; i < routes.length; i++) {
          const index = (i + rep) % routes.length;
          context.log(`  rep ${rep + 1}/${reps} ${routes[index].name}`);
          results[index].push(await cannon(routes[index].port(), routes[index].path, durationS));
        }
      }
    } finally {
      if (context.placement.taskset) pin(context.placement.nodeCpus);
      await memory.worker.kill();
      await redis?.worker.kill();
    }
    const rps = results.map((list) => median(list.map((r) => r.rps)));
    const rows = routes.map((route, index) => [
      index === 0 ? `${route.name} (ref)` : route.name,
      num(rps[index]),
      num(median(results[index].map((r) => r.p50)), 2),
      num(median(results[index].map((r) => r.p99)), 2),
      String(results[index].reduce((sum, r) => sum + r.errors, 0)),
      x(rps[index] / rps[0]),
    ]);
    const placement = context.placement.taskset
      ? `Servers (one Node process per app) on CPU ${context.placement.nodeCpus}; autocannon on CPU ${context.placement.redisCpus}, shared with redis-server.`
      : 'Not pinned.';
    const body = [
      table(['route', 'req/s', 'p50 ms', 'p99 ms', 'errors + non-2xx', 'x undecorated'], rows),
      '',
      `${durationS} s per run, median of ${results[0].length} interleaved runs. ${placement}`,
    ].join('\n');
    return {
      body,
      verdicts: [
        {
          scenario: '7',
          target: '@WithLock (memory) ≥ 0.85x undecorated',
          measured: `${x(rps[2] / rps[0])} (a no-op async interceptor alone: ${x(rps[1] / rps[0])})`,
          met: rps[2] >= 0.85 * rps[0],
        },
        ...(redis ? [{ scenario: '7', target: '@WithLock (redis) vs undecorated', measured: x(rps[3] / rps[0]), met: null }] : []),
      ],
    };
  },
};
