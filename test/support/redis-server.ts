import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const PDEATHSIG = ['/usr/bin/setpriv', '/bin/setpriv'].find((path) => existsSync(path));
const started = new Set<ChildProcess>();

// A crashed or interrupted test run must not leave its private servers behind.
process.once('exit', () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** A free loopback port, as the kernel hands it out right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** True when something on `port` answers PING with PONG. */
export function pings(port: number, timeoutMs = 200): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => finish(data.toString().startsWith('+PONG')));
  });
}

/** Poll `condition` until it holds; rejects after `timeoutMs`. */
export async function until(condition: () => Promise<boolean> | boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > giveUpAt) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * A private `redis-server` for one suite: its own loopback port, no persistence, run as our
 * child so stop/pause/resume act on exactly that pid and never on anybody else's Redis.
 */
export class RedisServer {
  private child?: ChildProcess;
  private paused = false;
  private readonly dir: string;

  private constructor(
    readonly port: number,
    private readonly extraArgs: string[],
    /** A config file written into `dir` and given first (Sentinel needs a writable one). */
    private readonly configFile?: string,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `nestjs-lock-redis-${port}-`));
    if (configFile !== undefined) writeFileSync(join(this.dir, 'redis.conf'), configFile);
  }

  static async start(extraArgs: string[] = []): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), extraArgs);
    await server.startProcess();
    return server;
  }

  /** A Sentinel (quorum 1) watching `master` under the name `masterName`. */
  static async startSentinel(master: RedisServer, masterName = 'locks-master'): Promise<RedisServer> {
    const config = `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 1\n`;
    const server = new RedisServer(await freePort(), ['--sentinel'], config);
    await server.startProcess();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Run `redis-cli` against this server; resolves its trimmed stdout. */
  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(this.port), ...args]);
    return stdout.trim();
  }

  /** SIGSTOP: the server keeps its socket but answers nothing, like a long GC pause or a frozen VM. */
  pause(): void {
    this.signal('SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.signal('SIGCONT');
    this.paused = false;
  }

  /** Stop the process; the port stays ours to `restart()` on (it was free a moment ago). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.resume();
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
    started.delete(child);
    await until(async () => !(await pings(this.port)), 3_000, `redis on ${this.port} gone`);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.startProcess();
  }

  /** Stop and remove the working directory. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private signal(signal: NodeJS.Signals): void {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) throw new Error('redis-server is not running');
    child.kill(signal);
  }

  private async startProcess(): Promise<void> {
    const args = [
      ...(this.configFile === undefined ? [] : [join(this.dir, 'redis.conf')]),
      '--port', String(this.port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--daemonize', 'no',
      '--dir', this.dir,
      ...this.extraArgs,
    ];
    // setpriv --pdeathsig: the kernel kills the server when this process dies, however it
    // dies (SIGKILL, a runner's timeout), so no test run leaves a server behind. It execs
    // redis-server in place, so `child.pid` is still the server's own pid.
    const child = PDEATHSIG
      ? spawn(PDEATHSIG, ['--pdeathsig', 'SIGKILL', 'redis-server', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000)));
    child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000)));
    this.child = child;
    this.paused = false;
    started.add(child);
    try {
      await until(
        async () => {
          if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}): ${output}`);
          return pings(this.port);
        },
        10_000,
        `redis-server on ${this.port} answering PING`,
      );
    } catch (error) {
      child.kill('SIGKILL');
      started.delete(child);
      throw error;
    }
  }
}

/** A Redis Cluster of `masters` private servers (no replicas), ready once every node says `cluster_state:ok`. */
export class RedisCluster {
  private constructor(readonly servers: RedisServer[]) {}

  static async start(masters = 3): Promise<RedisCluster> {
    const servers: RedisServer[] = [];
    try {
      for (let index = 0; index < masters; index += 1) {
        servers.push(
          await RedisServer.start(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000']),
        );
      }
      await run('redis-cli', [
        '--cluster', 'create',
        ...servers.map((server) => `127.0.0.1:${server.port}`),
        '--cluster-replicas', '0',
        '--cluster-yes',
      ]);
      await until(
        async () => (await Promise.all(servers.map((server) => server.cli('cluster', 'info')))).every((info) => info.includes('cluster_state:ok')),
        15_000,
        'cluster_state:ok on every node',
      );
      return new RedisCluster(servers);
    } catch (error) {
      await Promise.all(servers.map((server) => server.destroy()));
      throw error;
    }
  }

  get nodes(): { host: string; port: number }[] {
    return this.servers.map((server) => ({ host: '127.0.0.1', port: server.port }));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.servers.map((server) => server.destroy()));
  }
}
