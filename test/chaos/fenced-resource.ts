import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AcceptedWrite {
  key: string;
  fencingToken: number;
  pid: number;
}

/**
 * The resource the chaos workers write to, fenced as the README tells users to fence theirs:
 * a write is accepted only with a token at least the highest this key has accepted.
 */
export class FencedResource {
  readonly highest = new Map<string, number>();
  accepted = 0;
  refused = 0;
  private constructor(private readonly server: Server) {}

  static async start(): Promise<FencedResource> {
    let resource: FencedResource | undefined;
    const server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        const write = JSON.parse(body) as AcceptedWrite;
        response.writeHead(resource!.offer(write) ? 200 : 409).end();
      });
    });
    resource = new FencedResource(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return resource;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/write`;
  }

  /** The highest token accepted on any key so far. */
  get highestAccepted(): number {
    return Math.max(0, ...this.highest.values());
  }

  offer({ key, fencingToken }: AcceptedWrite): boolean {
    if (fencingToken < (this.highest.get(key) ?? 0)) {
      this.refused += 1;
      return false;
    }
    this.highest.set(key, fencingToken);
    this.accepted += 1;
    return true;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
