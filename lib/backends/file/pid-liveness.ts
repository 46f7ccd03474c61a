import { hostname } from 'node:os';

export const HOSTNAME = hostname();

/** `true` unless the pid provably does not exist on this host (EPERM means alive, not ours). */
export function isPidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why a holder looks dead from the outside (without holding its lock), or `null`: its pid is gone on this host. */
export function deadHolderReason(holder: { hostname: string; pid: number }): string | null {
  if (holder.hostname !== HOSTNAME || isPidAlive(holder.pid)) return null;
  return `holder pid ${holder.pid} on ${holder.hostname} is no longer running`;
}
