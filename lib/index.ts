export { LockModule, InjectLockOptions, InjectLockBackend } from './lock.module';
export { SpaceLockService } from './space-lock.service';
export { LockHealthIndicator, type LockHealthIndicatorResult } from './health/lock-health.indicator';
export type { LockHealthOptions, LockHealthReport } from './health/lock-health';
export { LOCK_EVENT_TYPES, DEFAULT_LOCK_NAME } from './events/lock-event.interface';
export type {
  LockEvent,
  LockEventType,
  LockAttemptEventBase,
  LockAttemptOutcome,
  LockAcquiredEvent,
  LockContendedEvent,
  LockWaitedEvent,
  LockHandedOverEvent,
  LockMissedEvent,
  LockFailedEvent,
  LockReleasedEvent,
  LeaseLostEvent,
  LockHeartbeatFailedEvent,
  LockReapedEvent,
} from './events/lock-event.interface';
export { WithLock, type WithLockOptions } from './with-lock.decorator';
export { CurrentLock } from './current-lock.decorator';
export { LeaderOnly } from './leader/leader-only.decorator';
export type { CampaignOptions, LeaderHandle, LeaderRecord, LeaderTerm } from './leader/leader.interfaces';
export { LockInterceptor } from './lock.interceptor';
export type { LockMiss, LockRunHandlers } from './lock-runner';
export type { LockKeyTemplate, HttpLockKeyFunction, ArgumentsLockKeyFunction } from './lock-key.template';
export { MissingLockKeyValueError } from './lock-key.template';
export { isSkipped } from './held-lock.interface';
export type {
  AcquireManyResult,
  ForceReleaseOptions,
  HeldLock,
  HeldLockSummary,
  ListLocksOptions,
  LockCallOptions,
  LockInfo,
  LockLostEvent,
  LockWaiters,
  LockSetKey,
  Skipped,
  SkipReason,
} from './held-lock.interface';
export {
  LockError,
  LockHeldError,
  LockTimeoutError,
  LockBackendError,
  InvalidLockKeyError,
  LockOptionsError,
  LockNotSupportedError,
  LockLimitMismatchError,
  LockLostError,
  LockShuttingDownError,
  type LockLostReason,
} from './lock.errors';
export { LockBackend } from './lock-backend.interface';
export type {
  AcquireAllOutcome,
  AcquireOutcome,
  ExtendRequest,
  ForceReleaseOutcome,
  ForceReleaseRequest,
  LeaseRef,
  ListOptions,
  LockBackendCapabilities,
  LockMode,
  LockOwner,
  LockRecord,
  LockRequest,
  PassedLease,
  ReleaseOutcome,
} from './lock-backend.interface';
export type {
  BuiltInBackendName,
  LockModuleAsyncOptions,
  LockModuleOptions,
  LockOptionsFactory,
  ResolvedLockModuleOptions,
} from './lock-module-options.interface';
export { LOCK_OPTIONS, LOCK_MODULE_OPTIONS } from './lock.constants';
export { MemoryLockBackend } from './backends/memory/memory-lock.backend';
export { MemoryLockStore } from './backends/memory/memory-lock.store';
export type { MemoryBackendOptions } from './backends/memory/memory-backend-options.interface';
export type { FileBackendOptions } from './backends/file/file-backend-options.interface';
export type { RedisBackendOptions } from './backends/redis/redis-backend-options.interface';
export type { ReplicaConfirmationOptions } from './backends/redis/replica-confirmation';
export { FileLockBackend } from './backends/file/file-lock.backend';
export type { FileLockMechanism, FileStaleRecord } from './backends/file/file-backend-options.interface';
export { LockAdminModule } from './admin/lock-admin.module';
export type { LockAdminModuleOptions, LockAdminPageOptions, ReapRequestBody } from './admin/lock-admin-options.interface';
export { RedisLockBackend, type RedisClient, type RedisLockBackendOptions } from './backends/redis/redis-lock.backend';
