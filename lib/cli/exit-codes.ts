/**
 * Exit codes of the `nestjs-lock` CLI. Scripts branch on these, so they are part of the
 * public contract: never renumber, only add.
 */
export const ExitCode = {
  /** The command did what was asked (for `inspect`, also when a key is free). */
  Ok: 0,
  /** Bad command line: unknown command or option, missing or malformed value. */
  Usage: 1,
  /** The store could not be used: Redis unreachable or timing out, lock directory missing. */
  Backend: 2,
  /** `reap` did not remove anything: declined, not confirmable, not held, changed hands, live holder. */
  NotReaped: 3,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A failure the CLI reports as one line on stderr with a known exit code (no stack trace). */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
