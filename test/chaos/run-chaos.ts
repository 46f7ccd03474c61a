/**
 * `npm run chaos -- --seconds N --seed S [--check signal]`: a longer seeded chaos run (see
 * chaos-run.ts); prints the counts per fault kind and exits 1 when a property that must hold
 * was violated.
 */
import { formatReport, runChaos } from './chaos-run';
import { mustHold } from './chaos-verdict';

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && process.argv[index + 1] !== undefined ? process.argv[index + 1] : fallback;
}

async function main(): Promise<void> {
  const seconds = Number(option('seconds', '60'));
  const seed = Number(option('seed', String(Date.now() % 100_000)));
  const check = option('check', 'ensureHeld');
  if (!Number.isInteger(seconds) || seconds < 10 || !Number.isInteger(seed) || (check !== 'ensureHeld' && check !== 'signal')) {
    throw new Error('usage: npm run chaos -- --seconds N (>= 10) --seed S [--check ensureHeld|signal]');
  }
  const report = await runChaos({ seconds, seed, check, log: (line) => process.stderr.write(`${line}\n`) });
  process.stdout.write(`${formatReport(report)}\n`);
  const broken = mustHold(report, check === 'ensureHeld');
  if (broken.length > 0) {
    process.stdout.write(`VIOLATED: ${broken.join('; ')}\n`);
    process.exitCode = 1;
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exit(2);
});
