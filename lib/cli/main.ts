#!/usr/bin/env node
import 'reflect-metadata';
import { Logger, type LoggerService } from '@nestjs/common';
import { createInterface } from 'node:readline/promises';
import { runCli } from './run';

function toStderr(level: string): (message: unknown) => void {
  return (message) => process.stderr.write(`[nestjs-lock] ${level}: ${String(message)}\n`);
}

const stderrLogger: LoggerService = {
  log: toStderr('log'),
  warn: toStderr('warn'),
  error: toStderr('error'),
};
// The library logs every reap at warn; on stderr that record stays out of `--json` output.
Logger.overrideLogger(stderrLogger);

async function confirm(question: string): Promise<boolean> {
  // Ask on stderr so a redirected stdout gets only the result.
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await prompt.question(question)).trim());
  } catch {
    // Ctrl+C or Ctrl+D at the prompt: a "no", not a failure.
    process.stderr.write('\n');
    return false;
  } finally {
    prompt.close();
  }
}

void runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  interactive: process.stdin.isTTY === true,
  confirm,
  env: process.env,
}).then((code) => {
  // Exit explicitly: a Redis client still retrying a dead server would keep the process alive.
  process.stdout.write('', () => process.exit(code));
});
