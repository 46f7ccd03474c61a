// Types only: this file is exported from the package root, which must load without ioredis.
import type { Redis } from 'ioredis';

export type ScriptReply = string | number | null | ScriptReply[];

type EvalShaCommand = (this: Redis, ...args: (string | number)[]) => Promise<ScriptReply>;

/**
 * Commands of this connection still waiting for their answer from which Redis counts as busy:
 * a command sent at the end of the tick instead of at once then waits no longer for its turn.
 * Below it, commands go out one by one: Redis would otherwise sit idle while Node finishes
 * the tick, and at 16 in flight holding back every command halved throughput (measured).
 */
const BUSY_BACKLOG = 32;

/**
 * Sends EVALSHA calls, and while Redis is busy with a backlog of this connection's commands,
 * gathers the calls of one tick into one socket write (the socket is corked until the tick
 * ends). Under load, Redis answers many calls in one read and each caller sends its next
 * call in the same tick; sent one by one, every call is its own `write(2)`, which on loopback
 * also runs the receiving side of TCP. With 256 cycles in flight that was a quarter of the
 * Node CPU per acquire+release (bench/RESULTS.md, section 9). Every call stays its own
 * command with its own reply, in order.
 *
 * Standalone and Sentinel connections only: a Cluster client spreads commands over nodes.
 */
export class SameTickBatch {
  private corked: Redis['stream'] | undefined;

  constructor(private readonly client: Redis) {}

  evalsha(args: (string | number)[]): Promise<ScriptReply> {
    const client = this.client;
    // Optional chaining: test doubles of the client often have neither a queue nor a socket.
    if (this.corked === undefined && (client.commandQueue?.length ?? 0) >= BUSY_BACKLOG && client.stream) {
      this.corked = client.stream;
      this.corked.cork();
      process.nextTick(() => this.uncork());
    }
    return (client.evalsha as EvalShaCommand).apply(client, args);
  }

  private uncork(): void {
    const stream = this.corked;
    this.corked = undefined;
    stream?.uncork();
  }
}
