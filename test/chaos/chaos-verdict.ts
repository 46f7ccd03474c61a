import { FAULT_KINDS, type ChaosReport } from './chaos-run';

/** The properties that must hold whatever the faults; each broken one, described. */
export function mustHold(report: ChaosReport, usesEnsureHeld: boolean): string[] {
  const broken: string[] = [];
  const kinds = [...FAULT_KINDS, 'none' as const];
  const total = (field: 'doubleGrants' | 'tokensNotAbove' | 'lapsedWrites'): number => kinds.reduce((sum, kind) => sum + report.perKind[kind][field], 0);
  if (total('doubleGrants') > 0) broken.push(`${total('doubleGrants')} (key, token) granted to two holders`);
  if (report.perKind.none.overlaps > 0) broken.push(`${report.perKind.none.overlaps} overlaps outside fault windows`);
  if (total('tokensNotAbove') > 0) broken.push(`${total('tokensNotAbove')} grants not above a token accepted before`);
  if (report.stalledWorkers > 0) broken.push(`${report.stalledWorkers} workers without progress after the faults`);
  if (report.unhandledRejections > 0) broken.push(`${report.unhandledRejections} unhandled rejections`);
  if (report.crashes > 0) broken.push(`${report.crashes} crashed workers`);
  if (usesEnsureHeld && total('lapsedWrites') > 0) broken.push(`${total('lapsedWrites')} writes after the lease lapsed`);
  return broken;
}
