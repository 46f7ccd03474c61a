import { hostname, userInfo } from 'node:os';
import { InvalidLockKeyError, LockOptionsError } from '../lock.errors';
import { DEFAULT_TIMEOUT_MS, REDIS_URL_ENV, assertOptionsAllowed, commonArgs, parseCommandLine, type ParsedCommandLine } from './args';
import { COMMANDS, type CliIo } from './commands';
import { openStore } from './connect';
import { errorMessage } from '../lock.errors';
import { CliError, ExitCode } from './exit-codes';
import { sweptView } from './format';

/** Runs one command line and answers its exit code; never throws, never exits the process. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  try {
    const line = parseCommandLine(argv);
    if (line.values.help || line.command === 'help') {
      io.out(helpText());
      return ExitCode.Ok;
    }
    if (line.command === undefined) {
      io.err(helpText());
      return ExitCode.Usage;
    }
    const command = COMMANDS.get(line.command);
    if (!command) {
      throw new CliError(ExitCode.Usage, `Unknown command "${line.command}"; try: ${[...COMMANDS.keys()].join(', ')}`);
    }
    assertOptionsAllowed(line, command.options);
    const { min, max } = command.positionals;
    if (line.positionals.length < min || line.positionals.length > max) {
      throw new CliError(ExitCode.Usage, `Usage: nestjs-lock ${line.command} ${command.usage}`);
    }
    const common = commonArgs(line, io.env);
    const execute = command.prepare(line, io);
    const store = await openStore(common, callerId(line));
    try {
      const swept = store.swept.flatMap((record) => sweptView(record, common.keyPrefix) ?? []);
      return await execute({ locks: store.locks, io, common, swept });
    } finally {
      await store.close();
    }
  } catch (error) {
    io.err(`nestjs-lock: ${errorMessage(error)}\n`);
    return exitCodeOf(error);
  }
}

function exitCodeOf(error: unknown): ExitCode {
  if (error instanceof CliError) return error.exitCode;
  if (error instanceof InvalidLockKeyError || error instanceof LockOptionsError) return ExitCode.Usage;
  // Everything else came from the store (LockBackendError and whatever a client threw).
  return ExitCode.Backend;
}

/** Who the reap log names: the person at the terminal, not the app whose lock it was. */
function callerId(line: ParsedCommandLine): string {
  if (line.values.caller !== undefined) return line.values.caller;
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (some containers).
    user = `uid ${process.getuid?.() ?? '?'}`;
  }
  return `nestjs-lock-cli:${user}@${hostname()}:${process.pid}`;
}

function helpText(): string {
  const commands = [...COMMANDS].map(([name, command]) => `  ${name} ${command.usage}\n      ${command.summary}\n`).join('');
  return `Usage: nestjs-lock <command> [options]

See who holds which lock, since when, whether that process is alive; reap stuck locks.
Uses the library itself: no Nest app needed.

Commands:
${commands}
Where the locks are (one of):
  --redis URL        Redis backend (default: $${REDIS_URL_ENV}, which keeps a password out of ps)
  --dir PATH         file backend's lock directory (must exist; never created)

Options:
  --key-prefix P     the app's keyPrefix (default "lock:"); keys are shown without it
  --timeout MS       give up on a store that does not answer within MS (default ${DEFAULT_TIMEOUT_MS})
  --json             machine-readable output on stdout
  -y, --yes          reap without asking
  -h, --help         this help

Exit codes:
  0  done (inspect of a free key included)
  1  usage error
  2  store unusable: Redis unreachable or timing out, lock directory missing
  3  reap not done: not confirmed, not held, changed hands, or held by a live process
`;
}
