import type { Scenario } from '../harness/context';
import { uncontendedRedisScenario } from './s1-uncontended-redis';
import { handoffRedisScenario } from './s2-handoff-redis';
import { localContentionScenario } from './s3-local-contention';
import { memoryScenario } from './s5-memory';

/** In the order the issue lists them. */
export const SCENARIOS: readonly Scenario[] = [uncontendedRedisScenario, handoffRedisScenario, localContentionScenario, memoryScenario].sort((a, b) => a.id - b.id);
