import { formatReport, runChaos } from './chaos-run';
import { mustHold } from './chaos-verdict';

/**
 * The short seeded run of the fault-injection suite; `npm run chaos -- --seconds N --seed S`
 * runs longer ones. Counts are printed per fault kind; the ones that must be zero are checked.
 */
describe('chaos: workers writing to a fenced resource under a seeded nemesis', () => {
  it('a one-minute run (seed 16): every fault kind injected, no property broken', async () => {
    const report = await runChaos({ seconds: 60, seed: 16 });
    // eslint-disable-next-line no-console
    console.log(formatReport(report));
    expect(Object.values(report.injected).every((count) => count > 0)).toBe(true);
    expect(report.grants).toBeGreaterThan(0);
    expect(mustHold(report, true)).toEqual([]);
  }, 300_000);
});
