/** LOCK_BACKEND=file LOCK_DIR=./.locks npm start — or redis, or the default in-memory backend. */
export const LOCK_BACKEND = process.env.LOCK_BACKEND === 'file' ? 'file' : process.env.LOCK_BACKEND === 'redis' ? 'redis' : 'memory';

/** At most this many exports per tenant at once; the file backend has no semaphores, so one there. */
export const EXPORTS_PER_TENANT = LOCK_BACKEND === 'file' ? 1 : 3;
