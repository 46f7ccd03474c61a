import { appendFileSync, readFileSync } from 'node:fs';

/**
 * Mutual-exclusion evidence across processes. Every holder appends `enter` when it starts
 * its critical section and `exit` when it ends it, to one file opened O_APPEND, so the line
 * order in the file is the real order of those writes. Two `enter`s without an `exit` between
 * them is an overlap, whatever the clocks say.
 */
export function recordEnter(logPath: string, holder: string, fencingToken: number, kind = 'exclusive'): void {
  appendFileSync(logPath, `enter ${holder} ${fencingToken} ${kind}\n`);
}

export function recordExit(logPath: string, holder: string, fencingToken: number, kind = 'exclusive'): void {
  appendFileSync(logPath, `exit ${holder} ${fencingToken} ${kind}\n`);
}

export interface OverlapReport {
  entries: number;
  overlaps: number;
  /** Entries whose fencing token was not above every earlier one. */
  fencingViolations: number;
  /** Entries per holder. */
  perHolder: Record<string, number>;
  /**
   * Entries whose holder is not the previous entry's holder. Holders that merely ran one after
   * another (one never met the others' contention) make this `holders - 1`; more means turns
   * really alternated between them.
   */
  handovers: number;
}

/**
 * Whether the holders really took turns: one holder got the lock back after another had it,
 * which holders that merely ran one after another never show (see `OverlapReport.handovers`).
 * How often they alternate is up to the scheduler (a saturated machine favours whoever just
 * released), so only that is required.
 */
export function alternated(report: OverlapReport): boolean {
  return report.handovers >= Object.keys(report.perHolder).length;
}

/** Exclusive mode: at most one holder inside at any line of the log. */
export function checkOverlaps(logPath: string): OverlapReport {
  const lines = readFileSync(logPath, 'utf8').split('\n').filter(Boolean);
  const report: OverlapReport = { entries: 0, overlaps: 0, fencingViolations: 0, perHolder: {}, handovers: 0 };
  const inside = new Set<string>();
  let highestToken = -Infinity;
  let previousHolder: string | undefined;
  for (const line of lines) {
    const [event, holder, token] = line.split(' ');
    const fencingToken = Number(token);
    if (event === 'enter') {
      report.entries += 1;
      report.perHolder[holder] = (report.perHolder[holder] ?? 0) + 1;
      if (previousHolder !== undefined && holder !== previousHolder) report.handovers += 1;
      previousHolder = holder;
      if (inside.size > 0) report.overlaps += 1;
      if (!(fencingToken > highestToken)) report.fencingViolations += 1;
      highestToken = Math.max(highestToken, fencingToken);
      inside.add(`${holder}:${token}`);
    } else {
      inside.delete(`${holder}:${token}`);
    }
  }
  return report;
}

export interface HoldersReport {
  entries: number;
  /** Entries per kind (`shared`, `exclusive`, `permit`). */
  perKind: Record<string, number>;
  /** Most holders inside at once (permits: must not exceed the limit). */
  maxInside: number;
  /** Most `shared` holders inside at once (readers really overlapped when >= 2). */
  maxReaders: number;
  /** An `exclusive` entry while anyone was inside, or any entry while an `exclusive` holder was. */
  writerOverlaps: number;
  /**
   * Entries whose fencing token broke the order grants give: a writer's not above every token
   * entered before; anyone's not above the last writer's entered before it; any token twice.
   * (Holders granted together may log their entries in any order among themselves.)
   */
  fencingViolations: number;
}

/** Shared locks and permits: what the log says about who was inside together (see `recordEnter`'s kind). */
export function checkHolders(logPath: string): HoldersReport {
  const lines = readFileSync(logPath, 'utf8').split('\n').filter(Boolean);
  const report: HoldersReport = { entries: 0, perKind: {}, maxInside: 0, maxReaders: 0, writerOverlaps: 0, fencingViolations: 0 };
  const inside = new Map<string, string>();
  const seen = new Set<number>();
  let highest = -Infinity;
  let lastWriter = -Infinity;
  for (const line of lines) {
    const [event, holder, token, kind] = line.split(' ');
    const fencingToken = Number(token);
    const id = `${holder}:${token}`;
    if (event !== 'enter') {
      inside.delete(id);
      continue;
    }
    report.entries += 1;
    report.perKind[kind] = (report.perKind[kind] ?? 0) + 1;
    const writerInside = [...inside.values()].includes('exclusive');
    if (writerInside || (kind === 'exclusive' && inside.size > 0)) report.writerOverlaps += 1;
    if (seen.has(fencingToken) || !(fencingToken > lastWriter) || (kind === 'exclusive' && !(fencingToken > highest))) report.fencingViolations += 1;
    seen.add(fencingToken);
    highest = Math.max(highest, fencingToken);
    if (kind === 'exclusive') lastWriter = fencingToken;
    inside.set(id, kind);
    report.maxInside = Math.max(report.maxInside, inside.size);
    report.maxReaders = Math.max(report.maxReaders, [...inside.values()].filter((inKind) => inKind === 'shared').length);
  }
  return report;
}
