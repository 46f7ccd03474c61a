/** Markdown output: tables, numbers and target verdicts. */

export type Cell = string | number;

export function num(value: number, digits?: number): string {
  if (!Number.isFinite(value)) return '–';
  const abs = Math.abs(value);
  const d = digits ?? (abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 10 ? 2 : abs >= 1 ? 2 : 3);
  return value.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

export function x(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : '–';
}

export function table(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = rows.map((row) => row.map((cell) => (typeof cell === 'number' ? num(cell) : cell)));
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  // Numbers right, words left.
  const numeric = /^(?:[-+]?[\d,.]+(?:x|%| ms| s)?|–|∞.*)$/;
  const align = headers.map((_, index) => (index > 0 && text.every((row) => numeric.test(row[index] ?? '')) ? '---:' : '---'));
  return [line(headers), line(align), ...text.map(line)].join('\n');
}

export interface Verdict {
  scenario: string;
  target: string;
  measured: string;
  met: boolean | null;
  note?: string;
}

export function verdictLine(verdict: Verdict): string {
  const mark = verdict.met === null ? 'REPORT' : verdict.met ? 'MET' : 'MISSED';
  return `- **${mark}** ${verdict.target}: ${verdict.measured}${verdict.note ? ` — ${verdict.note}` : ''}`;
}
