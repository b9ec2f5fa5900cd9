import { BASELINES, type ScenarioReport, type TargetResult } from './results.js';
import { max, min } from './stats.js';

/** Left-aligns the named columns (text) and right-aligns the rest (numbers). */
export function renderTable(header: string[], body: string[][], leftColumns: readonly number[] = [0, 1]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (leftColumns.includes(i) ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

/** Three significant digits, enough for figures that vary by several percent between rounds. */
export function fmt(value: number): string {
  if (!Number.isFinite(value)) return '—';
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

export function renderScenario(report: ScenarioReport): string {
  // A column per baseline that this scenario ran (e.g. no relay or chain on the long path).
  const baselines = BASELINES.filter((b) => report.rows.some((row) => row.ratios[b] !== undefined));
  const header = ['path', 'metric', 'median', 'unit', ...baselines.map((b) => `x ${b}`), 'rounds min..max'];
  const body = report.rows.map((row) => [
    row.path,
    row.metric,
    fmt(row.median),
    row.unit,
    ...baselines.map((b) => {
      const ratio = row.ratios[b];
      return ratio === undefined ? '—' : `${ratio.toFixed(2)}x`;
    }),
    `${fmt(min(row.samples))}..${fmt(max(row.samples))}`,
  ]);
  const parts = [`== ${report.title} ==`];
  if (body.length > 0) parts.push(renderTable(header, body));
  for (const skip of report.skipped) parts.push(`  SKIPPED ${skip.path}: ${skip.reason}`);
  for (const note of report.notes) parts.push(`  note: ${note}`);
  if (report.loadAvg) parts.push(`  load average (1, 5, 15 min): ${report.loadAvg.start.join(' ')} at start, ${report.loadAvg.end.join(' ')} at end`);
  return parts.join('\n');
}

export function renderTargets(targets: TargetResult[]): string {
  const body = targets.map((t) => [
    t.pass === null ? 'N/A' : t.pass ? 'PASS' : 'MISS',
    t.description,
    t.value === null ? '—' : fmt(t.value),
    `${t.comparison} ${fmt(t.threshold)}`,
    t.unit,
    t.detail,
  ]);
  return ['== targets ==', renderTable(['result', 'target', 'measured', 'needed', 'unit', 'detail'], body, [0, 1, 4, 5])].join('\n');
}
