import { parseArgs } from 'node:util';
import { DEFAULT_KEY_PREFIX, MAX_TIMER_MS } from '../lock.constants';
import { errorMessage } from '../lock.errors';
import { CliError, ExitCode } from './exit-codes';

/** Every option the CLI knows; each command says which of them it accepts. */
const OPTIONS = {
  redis: { type: 'string' },
  dir: { type: 'string' },
  'key-prefix': { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  prefix: { type: 'string' },
  limit: { type: 'string' },
  reason: { type: 'string' },
  'expect-token': { type: 'string' },
  caller: { type: 'string' },
  yes: { type: 'boolean', short: 'y' },
  help: { type: 'boolean', short: 'h' },
} as const;

export type OptionName = keyof typeof OPTIONS;

/** Options every command takes: where the locks are and how to print them. */
export const COMMON_OPTIONS: readonly OptionName[] = ['redis', 'dir', 'key-prefix', 'timeout', 'json', 'help'];

/** Environment variable read when `--redis` is not given, so a password need not show in `ps`. */
export const REDIS_URL_ENV = 'NESTJS_LOCK_REDIS_URL';
export const DEFAULT_TIMEOUT_MS = 3_000;

export type StoreLocation = { backend: 'redis'; url: string } | { backend: 'file'; dir: string };

export interface CommonArgs {
  store: StoreLocation;
  keyPrefix: string;
  timeoutMs: number;
  json: boolean;
}

export interface ParsedCommandLine {
  command: string | undefined;
  positionals: string[];
  values: { [Name in OptionName]?: (typeof OPTIONS)[Name]['type'] extends 'string' ? string : boolean };
}

export function parseCommandLine(argv: readonly string[]): ParsedCommandLine {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
    const [command, ...rest] = positionals;
    return { command, positionals: rest, values };
  } catch (error) {
    // parseArgs explains unknown options and missing values well; keep its words.
    throw new CliError(ExitCode.Usage, errorMessage(error));
  }
}

/** Rejects options the command would silently ignore: a stray `--yes` on `list` is a typo worth knowing about. */
export function assertOptionsAllowed(line: ParsedCommandLine, allowed: readonly OptionName[]): void {
  for (const name of Object.keys(line.values) as OptionName[]) {
    if (!COMMON_OPTIONS.includes(name) && !allowed.includes(name)) {
      throw new CliError(ExitCode.Usage, `Option --${name} does not apply to "${line.command}"`);
    }
  }
}

export function commonArgs(line: ParsedCommandLine, env: NodeJS.ProcessEnv): CommonArgs {
  const { values } = line;
  const redisUrl = values.redis ?? (values.dir === undefined ? env[REDIS_URL_ENV] : undefined);
  if (redisUrl !== undefined && values.dir !== undefined) {
    throw new CliError(ExitCode.Usage, 'Give either --redis or --dir, not both');
  }
  let store: StoreLocation;
  if (values.dir !== undefined) {
    if (values.dir === '') throw new CliError(ExitCode.Usage, '--dir needs a path');
    store = { backend: 'file', dir: values.dir };
  } else if (redisUrl !== undefined && redisUrl !== '') {
    store = { backend: 'redis', url: redisUrl };
  } else {
    throw new CliError(ExitCode.Usage, `Say where the locks are: --redis URL (or ${REDIS_URL_ENV}) or --dir PATH`);
  }
  return {
    store,
    keyPrefix: values['key-prefix'] ?? DEFAULT_KEY_PREFIX,
    timeoutMs: integerOption('timeout', values.timeout, 1, MAX_TIMER_MS) ?? DEFAULT_TIMEOUT_MS,
    json: values.json ?? false,
  };
}

/** A whole number option at least `min`, or `undefined` when absent. */
export function integerOption(name: OptionName, raw: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`;
    throw new CliError(ExitCode.Usage, `--${name} must be a whole number ${range}, got "${raw}"`);
  }
  return value;
}

/** The store as it may be printed: a Redis URL without its password. */
export function describeStore(store: StoreLocation): string {
  if (store.backend === 'file') return `lock directory ${store.dir}`;
  try {
    const url = new URL(store.url);
    if (url.password) url.password = '***';
    return `Redis at ${url.toString()}`;
  } catch {
    return 'Redis (unparseable URL)';
  }
}
