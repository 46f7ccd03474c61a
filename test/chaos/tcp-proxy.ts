import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * A TCP proxy between the chaos workers and Redis: passes traffic, delays it, or blackholes it
 * (connections stay open, nothing gets through, as with a dead network path). `target` can be
 * switched to another server (a promoted replica) for new connections.
 */
export class TcpProxy {
  mode: 'pass' | 'delay' | 'blackhole' = 'pass';
  delayMs = 0;
  private readonly sockets = new Set<Socket>();
  private constructor(
    private readonly server: Server,
    public targetPort: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => proxy!.connect(client));
    proxy = new TcpProxy(server, targetPort);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Drops every connection (clients reconnect, to the current target). */
  resetConnections(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  close(): Promise<void> {
    this.resetConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private connect(client: Socket): void {
    const upstream = createConnection({ host: '127.0.0.1', port: this.targetPort });
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    this.forward(client, upstream);
    this.forward(upstream, client);
  }

  /**
   * In order, always: a delayed chunk goes out no earlier than the one before it, and a
   * blackholed path holds its chunks until it heals, as TCP retransmission would deliver them.
   */
  private forward(from: Socket, to: Socket): void {
    const held: Buffer[] = [];
    let lastAt = 0;
    const flush = (): void => {
      if (this.mode === 'blackhole') {
        setTimeout(flush, 20);
        return;
      }
      for (const chunk of held.splice(0)) this.send(to, chunk, (lastAt = Math.max(performance.now() + this.currentDelay(), lastAt)));
    };
    from.on('data', (chunk: Buffer) => {
      if (this.mode === 'blackhole' || held.length > 0) {
        if (held.push(chunk) === 1) setTimeout(flush, 20);
        return;
      }
      lastAt = Math.max(performance.now() + this.currentDelay(), lastAt);
      this.send(to, chunk, lastAt);
    });
  }

  private currentDelay(): number {
    return this.mode === 'delay' ? this.delayMs : 0;
  }

  private send(to: Socket, chunk: Buffer, at: number): void {
    const wait = at - performance.now();
    if (wait <= 0) to.write(chunk);
    else setTimeout(() => to.write(chunk), wait);
  }
}
