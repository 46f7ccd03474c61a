import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { num, table } from '../harness/format';
import type { Scenario } from '../harness/context';
import { createService } from '../harness/locks';
import { sleep } from '../harness/measure';

/** `global.gc` without restarting Node with --expose-gc. */
function gcFunction(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

async function settledHeap(gc: () => void): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(20);
  }
  return process.memoryUsage().heapUsed;
}

/** 8. 100,000 acquire/release cycles over distinct keys on the memory backend: nothing left behind. */
export const heapScenario: Scenario = {
  id: 8,
  title: 'Memory: 100,000 cycles over distinct keys, heap after GC',
  async run(context) {
    const gc = gcFunction();
    const cycles = 100_000;
    const service = await createService({ backend: 'memory' });
    // Warm the code paths first so compiled code and inline caches are in the baseline.
    for (let i = 0; i < 2_000; i++) await service.withSpaceLock(`warm:${i}`, () => 1);
    const before = await settledHeap(gc);
    let peak = 0;
    for (let i = 0; i < cycles; i++) {
      await service.withSpaceLock(`key:${i}`, () => 1);
      if (i % 10_000 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed);
    }
    const beforeGc = process.memoryUsage().heapUsed;
    const after = await settledHeap(gc);
    const localKeys = (service as unknown as { table: { size: number } }).table.size;
    await service.beforeApplicationShutdown();
    const deltaMb = (after - before) / 2 ** 20;
    context.log(`  heap ${num(before / 2 ** 20)} -> ${num(after / 2 ** 20)} MB`);
    return {
      body: table(
        ['cycles', 'heap before (MB)', 'heap before GC (MB)', 'heap after GC (MB)', 'delta after GC (MB)', 'per-key entries left in the service'],
        [[cycles.toLocaleString('en-US'), num(before / 2 ** 20), num(beforeGc / 2 ** 20), num(after / 2 ** 20), num(deltaMb, 2), String(localKeys)]],
      ),
      verdicts: [
        { scenario: '8', target: 'heap after GC within 5 MB of the start', measured: `${num(deltaMb, 2)} MB, ${localKeys} keys left`, met: Math.abs(deltaMb) <= 5 && localKeys === 0 },
      ],
    };
  },
};
