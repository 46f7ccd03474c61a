import { Controller, INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxyFactory, MessagePattern, Payload, Transport, type ClientProxy } from '@nestjs/microservices';
import { WsAdapter } from '@nestjs/platform-ws';
import { MessageBody, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { firstValueFrom } from 'rxjs';
import WebSocket from 'ws';
import { CurrentLock, LockModule, SpaceLockService, WithLock, type HeldLock } from '../../lib';
import { freePort, until } from '../support/redis-server';
import { Gate } from '../support/gate';

/**
 * Handlers of other transports lock from their arguments, like provider methods, over a real
 * WebSocket connection and a real TCP microservice: exactly one lock per call (a second lock
 * around the same call would find the key `in-progress` and skip the handler), "held" as the
 * transport's error, `@CurrentLock()` filled in.
 */


const gates = new Map<string, Gate>();
const entered: string[] = [];

@WebSocketGateway()
class RoomsGateway {
  @SubscribeMessage('sync')
  @WithLock('xport-room:{0.room}', { onLocked: 'throw' })
  async sync(@MessageBody() body: { room: string }, @CurrentLock() lock: HeldLock): Promise<object> {
    entered.push(`ws:${body.room}`);
    await gates.get(`ws:${body.room}`)?.open;
    return { event: 'synced', data: { key: lock.key, fencingToken: lock.fencingToken } };
  }
}

@Controller()
class JobsController {
  @MessagePattern({ cmd: 'run' })
  @WithLock('xport-job:{0.id}')
  async run(@Payload() payload: { id: string }, @CurrentLock() lock: HeldLock): Promise<object> {
    entered.push(`rpc:${payload.id}`);
    await gates.get(`rpc:${payload.id}`)?.open;
    return { key: lock.key };
  }
}

@Module({ imports: [LockModule.forRoot()], controllers: [JobsController], providers: [RoomsGateway] })
class TransportsModule {}

/** A WebSocket client that hands out the next message as a promise. */
class WsClient {
  private readonly queued: unknown[] = [];
  private readonly waiting: ((message: unknown) => void)[] = [];

  constructor(readonly socket: WebSocket) {
    socket.on('message', (raw) => {
      const message = JSON.parse(String(raw)) as unknown;
      const waiter = this.waiting.shift();
      if (waiter) waiter(message);
      else this.queued.push(message);
    });
  }

  static async connect(url: string): Promise<WsClient> {
    const socket = new WebSocket(url);
    const client = new WsClient(socket);
    await once(socket, 'open');
    return client;
  }

  send(event: string, data: unknown): void {
    this.socket.send(JSON.stringify({ event, data }));
  }

  next(): Promise<unknown> {
    const message = this.queued.shift();
    if (message !== undefined) return Promise.resolve(message);
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}

describe('@WithLock on WebSocket gateways and microservice handlers', () => {
  let app: INestApplication;
  let locks: SpaceLockService;
  let ws: WsClient;
  let rpc: ClientProxy;

  beforeAll(async () => {
    app = await NestFactory.create(TransportsModule, { logger: false });
    app.useWebSocketAdapter(new WsAdapter(app));
    const rpcPort = await freePort();
    app.connectMicroservice({ transport: Transport.TCP, options: { host: '127.0.0.1', port: rpcPort } });
    await app.startAllMicroservices();
    await app.listen(0, '127.0.0.1');
    locks = app.get(SpaceLockService);
    const { port } = app.getHttpServer().address() as AddressInfo;
    ws = await WsClient.connect(`ws://127.0.0.1:${port}`);
    rpc = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: rpcPort } });
    await rpc.connect();
  });

  afterAll(async () => {
    ws?.socket.close();
    rpc?.close();
    await app?.close();
  });

  beforeEach(() => {
    gates.clear();
    entered.length = 0;
  });

  it('a gateway handler runs once under one lock; a second message while it holds gets the exception', async () => {
    const gate = new Gate();
    gates.set('ws:r1', gate);
    ws.send('sync', { room: 'r1' });
    await until(() => entered.length === 1);
    expect(locks.held().map((lock) => lock.key)).toEqual(['xport-room:r1']);

    ws.send('sync', { room: 'r1' });
    expect(await ws.next()).toMatchObject({ event: 'exception', data: { status: 'error' } });
    expect(entered).toEqual(['ws:r1']);

    gate.release();
    expect(await ws.next()).toEqual({ event: 'synced', data: { key: 'xport-room:r1', fencingToken: expect.any(Number) } });
    await until(() => locks.held().length === 0);

    ws.send('sync', { room: 'r1' });
    expect(await ws.next()).toMatchObject({ event: 'synced', data: { key: 'xport-room:r1' } });
    expect(entered).toEqual(['ws:r1', 'ws:r1']);
  });

  it('a microservice handler runs under one lock; a call while it holds is refused (controller default: throw)', async () => {
    const gate = new Gate();
    gates.set('rpc:j1', gate);
    const first = firstValueFrom(rpc.send({ cmd: 'run' }, { id: 'j1' }));
    await until(() => entered.length === 1);
    expect(locks.held().map((lock) => lock.key)).toEqual(['xport-job:j1']);

    await expect(firstValueFrom(rpc.send({ cmd: 'run' }, { id: 'j1' }))).rejects.toMatchObject({ status: 'error' });
    expect(entered).toEqual(['rpc:j1']);
    // Another id is another key.
    await expect(firstValueFrom(rpc.send({ cmd: 'run' }, { id: 'j2' }))).resolves.toEqual({ key: 'xport-job:j2' });

    gate.release();
    await expect(first).resolves.toEqual({ key: 'xport-job:j1' });
    await until(() => locks.held().length === 0);
  });
});
