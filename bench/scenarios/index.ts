import type { Scenario } from '../harness/context';
import { uncontendedRedisScenario } from './s1-uncontended-redis';
import { handoffRedisScenario } from './s2-handoff-redis';
import { localContentionScenario } from './s3-local-contention';
import { fileScenario } from './s4-file';
import { memoryScenario } from './s5-memory';
import { manyLeasesScenario } from './s6-many-leases';
import { httpScenario } from './s7-http';
import { heapScenario } from './s8-heap';
import { scaleScenario } from './s9-scale';
import { leaderTakeoverScenario } from './s10-leader-takeover';
import { replicasRedisScenario } from './s11-replicas-redis';
import { handoffClusterScenario } from './s12-handoff-cluster';
import { holdersRedisScenario } from './s13-holders-redis';

/** In the order the issue lists them. */
export const SCENARIOS: readonly Scenario[] = [
  uncontendedRedisScenario,
  handoffRedisScenario,
  localContentionScenario,
  fileScenario,
  memoryScenario,
  manyLeasesScenario,
  httpScenario,
  heapScenario,
  scaleScenario,
  leaderTakeoverScenario,
  replicasRedisScenario,
  handoffClusterScenario,
  holdersRedisScenario,
].sort((a, b) => a.id - b.id);
