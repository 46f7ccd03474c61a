// Filled in by the Redis backend (issue 3).
export interface RedisBackendOptions {
  /** @nestjs-labs/nestjs-ioredis namespace to take the connection from. */
  namespace?: string;
  /** Redis URL for a connection the module owns and closes on shutdown. */
  url?: string;
}
