import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Environment that runs a child process with its clock `skew` off (libfaketime, e.g. `+0.15`,
 * `-0.15`: seconds), preloaded into the child itself rather than through the `faketime` wrapper,
 * which forks (signals sent to the wrapper's pid would not reach the child).
 */
export function skewedClockEnv(skew: string): NodeJS.ProcessEnv {
  return { LD_PRELOAD: libfaketime(), FAKETIME: skew };
}

/** libfaketime's preload library, where Debian's `faketime` package puts it (.ci/run installs it). */
function libfaketime(): string {
  for (const dir of ['/usr/lib', '/usr/local/lib', ...readdirSync('/usr/lib').map((arch) => join('/usr/lib', arch))]) {
    const candidate = join(dir, 'faketime', 'libfaketime.so.1');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('libfaketime not found: install Debian\'s "faketime" package (.ci/run does)');
}
