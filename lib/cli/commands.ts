import type { ForceReleaseOutcome, LockRecord } from '../lock-backend.interface';
import { recordTime } from '../backends/holder-record';
import { assertValidKey } from '../lock-options.validation';
import type { SpaceLockService } from '../space-lock.service';
import { integerOption, type CommonArgs, type OptionName, type ParsedCommandLine } from './args';
import { CliError, ExitCode } from './exit-codes';
import { formatTable, printable, toView, type HolderView } from './format';

/** What the CLI talks to the outside world through; tests pass their own. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** A person can answer a question (stdin is a terminal). */
  interactive: boolean;
  confirm(question: string): Promise<boolean>;
  env: NodeJS.ProcessEnv;
}

export interface CommandContext {
  locks: SpaceLockService;
  io: CliIo;
  common: CommonArgs;
  /** Dead holders whose records the store removed as it was opened (file backend); listed as stale. */
  swept: readonly HolderView[];
}

export type Execute = (context: CommandContext) => Promise<ExitCode>;

export interface Command {
  /** Arguments and options after the command name, for `--help`. */
  usage: string;
  summary: string;
  /** Options beyond the common ones. */
  options: readonly OptionName[];
  positionals: { min: number; max: number };
  /** Checks the command line before any store is contacted, so typos fail fast and offline. */
  prepare(line: ParsedCommandLine, io: CliIo): Execute;
}

const list: Command = {
  usage: '[--prefix P] [--limit N]',
  summary: 'every holder the store knows, stale ones marked',
  options: ['prefix', 'limit'],
  positionals: { min: 0, max: 0 },
  prepare(line) {
    const prefix = line.values.prefix ?? '';
    const limit = integerOption('limit', line.values.limit, 1) ?? 1_000;
    return async ({ locks, io, common, swept }) => {
      const live = (await locks.list({ prefix, limit })).map(toView);
      const views = [...live, ...swept.filter((view) => view.key.startsWith(prefix))].sort(byKey);
      if (views.length >= limit) io.err(`Showing the first ${limit} holders; raise --limit to see more.\n`);
      if (common.json) io.out(asJson(views));
      else io.out(views.length > 0 ? formatTable(views) : `No locks held under "${common.keyPrefix}${prefix}".\n`);
      return ExitCode.Ok;
    };
  },
};

const inspect: Command = {
  usage: 'KEY...',
  summary: 'the holder(s) of each key',
  options: [],
  positionals: { min: 1, max: Infinity },
  prepare(line) {
    const keys = line.positionals.map(validKey);
    return async ({ locks, io, common, swept }) => {
      const entries = await Promise.all(
        keys.map(async (key) => ({
          key,
          holders: [...(await locks.inspectAll(key)).map(toView), ...swept.filter((view) => view.key === key)],
        })),
      );
      if (common.json) {
        io.out(asJson(entries));
        return ExitCode.Ok;
      }
      const held = entries.flatMap((entry) => entry.holders);
      if (held.length > 0) io.out(formatTable(held));
      for (const entry of entries) if (entry.holders.length === 0) io.out(`"${entry.key}" is free.\n`);
      return ExitCode.Ok;
    };
  },
};

const reap: Command = {
  usage: 'KEY --reason TEXT [--expect-token N] [--yes] [--caller ID]',
  summary: 'force-release KEY (asks first on a terminal)',
  options: ['reason', 'expect-token', 'yes', 'caller'],
  positionals: { min: 1, max: 1 },
  prepare(line, io) {
    const key = validKey(line.positionals[0]);
    const reason = line.values.reason?.trim();
    if (!reason) throw new CliError(ExitCode.Usage, 'reap needs --reason "...": it is logged with every reap');
    const expected = integerOption('expect-token', line.values['expect-token'], 0);
    const confirmed = line.values.yes ?? false;
    if (!confirmed && !io.interactive) {
      throw new CliError(
        ExitCode.NotReaped,
        `Not reaping "${key}": stdin is not a terminal, so nobody can confirm. Add --yes to reap from a script.`,
      );
    }
    return async ({ locks, io: { out, err, confirm }, common, swept }) => {
      // Opening the directory already removed a dead holder's record: that is the reap it asked for.
      const leftover = swept.find((view) => view.key === key && (expected === undefined || view.fencingToken === expected));
      const notHeld: ForceReleaseOutcome = leftover ? { outcome: 'released', previous: leftover } : { outcome: 'not-held' };
      let expectFencingToken = expected;
      if (!confirmed) {
        const holders = (await locks.inspectAll(key)).map(toView);
        if (holders.length === 0) return report(notHeld);
        err(formatTable(holders));
        if (!(await confirm(`Reap "${key}"? Its holder loses the lock at its next heartbeat. [y/N] `))) {
          err('Not reaped.\n');
          return ExitCode.NotReaped;
        }
        // Reap what the operator saw: if the lock changed hands while they read, leave the new holder alone.
        if (expectFencingToken === undefined && holders.length === 1) expectFencingToken = holders[0].fencingToken;
      }
      const outcome = await locks.forceRelease(key, { reason, expectFencingToken });
      return report(outcome.outcome === 'not-held' ? notHeld : outcome);

      function report(outcome: ForceReleaseOutcome): ExitCode {
        out(common.json ? asJson({ key, ...outcome }) : describeReap(key, outcome));
        return outcome.outcome === 'released' ? ExitCode.Ok : ExitCode.NotReaped;
      }
    };
  },
};

/** Who leads each election (`campaign` / `@LeaderOnly`); `list` shows the same holders as keys `leader:NAME`. */
const leader: Command = {
  usage: 'NAME...',
  summary: 'the leader (owner, since, term) of each election name',
  options: [],
  positionals: { min: 1, max: Infinity },
  prepare(line) {
    const names = line.positionals.map(validKey);
    return async ({ locks, io, common }) => {
      const records = await Promise.all(names.map(async (name) => ({ name, leader: await locks.leader(name) })));
      if (common.json) {
        io.out(asJson(records));
        return ExitCode.Ok;
      }
      for (const { name, leader: record } of records) {
        io.out(
          record
            ? `"${name}" is led by ${printable(record.owner)} (pid ${record.pid} on ${printable(record.hostname)}) since ${recordTime(record.since)}, term ${record.term}.\n`
            : `"${name}" has no leader.\n`,
        );
      }
      return ExitCode.Ok;
    };
  },
};

export const COMMANDS: ReadonlyMap<string, Command> = new Map([
  ['list', list],
  ['inspect', inspect],
  ['reap', reap],
  ['leader', leader],
]);

function describeReap(key: string, outcome: ForceReleaseOutcome): string {
  switch (outcome.outcome) {
    case 'released':
      return outcome.previous
        ? `Reaped "${key}": it was held by ${holderText(outcome.previous)}.\n`
        : `Reaped "${key}".\n`;
    case 'not-held':
      return `"${key}" is not held; nothing reaped.\n`;
    case 'changed-hands':
      return outcome.current
        ? `"${key}" changed hands and is now held by ${holderText(outcome.current)}; not reaped. ` +
            `Re-run with --expect-token ${outcome.current.fencingToken} to reap the new holder.\n`
        : `"${key}" changed hands and is free now; not reaped.\n`;
    case 'held-by-live-process':
      return (
        `"${key}" is held by live process ${outcome.pid} on ${printable(outcome.hostname)}; not reaped. ` +
        'A kernel file lock cannot be taken from a running process: stop that process and the lock goes with it.\n'
      );
  }
}

function holderText(holder: Pick<LockRecord, 'ownerId' | 'pid' | 'hostname' | 'fencingToken'>): string {
  return printable(`${holder.ownerId} (pid ${holder.pid} on ${holder.hostname}, fencing token ${holder.fencingToken})`);
}

function byKey(a: HolderView, b: HolderView): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : a.acquiredAt - b.acquiredAt;
}

function validKey(key: string): string {
  assertValidKey(key);
  return key;
}

function asJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
