/**
 * The follower of scenario 10 (leader takeover), in its own process: on `{ follow: name }` it
 * campaigns for `name`, and reports when it is elected (a wall-clock time with sub-millisecond
 * resolution, comparable with the leader's on one host); then it resigns.
 * Argv: the module options as JSON.
 */
import 'reflect-metadata';
import { performance } from 'node:perf_hooks';
import type { LockModuleOptions } from '../lib';
import { createService } from './harness/locks';

export type ToFollower = { follow: string } | { stop: true };
export type FromFollower = { ready: true } | { queued: string } | { elected: string; at: number };

async function main(): Promise<void> {
  const service = await createService(JSON.parse(process.argv[2]) as LockModuleOptions);
  const send = (message: FromFollower): void => void process.send?.(message);
  process.on('message', (message: ToFollower) => {
    if ('stop' in message) {
      void service.beforeApplicationShutdown().then(() => process.exit(0));
      return;
    }
    const handle = service.campaign(message.follow, {
      onElected: () => {
        send({ elected: message.follow, at: performance.timeOrigin + performance.now() });
        void handle.resign();
      },
    });
    send({ queued: message.follow });
  });
  send({ ready: true });
}

void main();
