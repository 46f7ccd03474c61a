import type { Scenario } from '../harness/context';
import { memoryScenario } from './s5-memory';

/** In the order the issue lists them. */
export const SCENARIOS: readonly Scenario[] = [memoryScenario].sort((a, b) => a.id - b.id);
