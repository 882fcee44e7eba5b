// Markdown tables of the results, printed by `npm run bench` and pasted into BENCHMARKS.md.
import { cpus, totalmem } from 'node:os';
import type { BurnDownResult, LimitResult, OpenLoopResult } from './modes.ts';

const fixed = (value: number, digits = 0) => (Number.isFinite(value) ? value.toFixed(digits) : '–');
const times = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–');
const ratio = (a: number, b: number) => (b !== 0 ? times(a / b) : '–');

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function machine(): string {
  const list = cpus();
  return `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC · ${list.length} cores (${list[0]?.model.trim() ?? 'unknown'}) · ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory · Node ${process.version}`;
}

export const BPD = 'bpd-webhooks';
export const PEER = 'graphile-worker';

// issue #15's burn-down targets: deliveries/s at least this many times the peer's
// (reaching for 2×), Postgres CPU per delivery at most the peer's
const BURN_DOWN_RATE_TARGET = 1.5;
const BURN_DOWN_PG_CPU_TARGET = 1;
const verdict = (met: boolean | null) => (met === null ? '–' : met ? 'met' : '**not met**');

// the mean, and each round's figure when there were several
const perSecond = (r: { perSecond: number; rounds: number[] }) =>
  r.rounds.length > 1 ? `${fixed(r.perSecond)} (${r.rounds.map((x) => fixed(x)).join(', ')})` : fixed(r.perSecond);

export function burnDownTable(results: BurnDownResult[], limits: LimitResult[]): string {
  const rows = results.map((r) => [
    r.name,
    `${r.delivered}/${r.count}`,
    perSecond(r),
    fixed(r.drainSeconds, 2),
    fixed(r.settledSeconds, 2),
    fixed(r.firstArrivalMs),
    fixed(r.cpuPer1k, 3),
    fixed(r.pgCpuPer1k, 3),
    fixed(r.peakRssMb),
    r.complete ? String(r.missing) : `${r.missing} (time bound hit: still queued)`,
    String(r.duplicates),
  ]);
  for (const l of limits) {
    rows.push([l.name, `${l.count}`, perSecond(l), '', '', '', fixed(l.cpuPer1k, 3), fixed(l.pgCpuPer1k, 3), fixed(l.peakRssMb), String(l.missing), '']);
  }
  const header = ['contender', 'delivered', 'deliveries/s', 'last arrival s', 'all settled s', 'first ms', 'CPU s/1k', 'Postgres CPU s/1k', 'peak RSS MB', 'missing', 'dupes'];
  const bpd = results.find((r) => r.name === BPD);
  const peer = results.find((r) => r.name === PEER);
  const lower = limits.length ? Math.min(...limits.map((l) => l.perSecond)) : Number.NaN;
  const lowerName = limits.find((l) => l.perSecond === lower)?.name ?? '';
  const rate = bpd && peer ? bpd.perSecond / peer.perSecond : Number.NaN;
  const pgCpu = bpd && peer ? bpd.pgCpuPer1k / peer.pgCpuPer1k : Number.NaN;
  const ratios = [
    `- ${BPD} / ${PEER}: **${times(rate)}** deliveries/s ` +
      `(target ≥ ${BURN_DOWN_RATE_TARGET}×, reaching for 2×: ${verdict(Number.isFinite(rate) ? rate >= BURN_DOWN_RATE_TARGET : null)}), ` +
      `${ratio(bpd?.cpuPer1k ?? NaN, peer?.cpuPer1k ?? NaN)} process CPU per delivery, ` +
      `${times(pgCpu)} Postgres CPU per delivery ` +
      `(target ≤ ${BURN_DOWN_PG_CPU_TARGET}×: ${verdict(Number.isFinite(pgCpu) ? pgCpu <= BURN_DOWN_PG_CPU_TARGET : null)})`,
    `- ${BPD} / lower limit (${lowerName}): **${fixed((100 * (bpd?.perSecond ?? NaN)) / lower)}%** (target ≥ 50%)`,
    ...limits.map((l) => `- ${BPD} / ${l.name}: ${fixed((100 * (bpd?.perSecond ?? NaN)) / l.perSecond)}%`),
  ];
  // both halves on the same cores: each limit uses the machine whole, so a relay that
  // does both can at best reach one over the sum of their times a delivery
  if (limits.length > 1) {
    const together = 1 / limits.reduce((sum, l) => sum + 1 / l.perSecond, 0);
    ratios.push(`- ${BPD} / the limits together (1 / Σ 1/limit: ${fixed(together)}/s): ${fixed((100 * (bpd?.perSecond ?? NaN)) / together)}%`);
  }
  if (bpd?.extra.claims) ratios.push(`- ${BPD}: ${claimLine(bpd.extra)}`);
  return `${table(header, rows)}\n\n${ratios.join('\n')}`;
}

function claimLine(extra: Record<string, number>): string {
  const settles = extra.settles ? `; ${extra.settles} settles, ${fixed(extra.settled / extra.settles, 1)} results per settle` : '';
  return `${extra.claims} claims, ${fixed(extra.claimed / extra.claims, 1)} rows per claim, ${extra.emptyClaims} empty, ${fixed(extra.claimMs / extra.claims, 2)} ms per claim round trip${settles}`;
}

export function openLoopTable(results: OpenLoopResult[]): string {
  const rows = results.map((r) => [
    r.name,
    String(r.rate),
    fixed(r.writtenPerSecond),
    `${r.delivered}/${r.committed}`,
    fixed(r.latency.p50, 1),
    fixed(r.latency.p95, 1),
    fixed(r.latency.p99, 1),
    fixed(r.latency.max, 1),
    `${r.backlogGrew ? '**grew**' : 'no'} (${r.backlogAtEnd} at end, max ${r.backlogMax})`,
    fixed(r.cpuPer1k, 3),
    fixed(r.pgCpuPer1k, 3),
    fixed(r.peakRssMb),
    r.complete ? String(r.missing) : `${r.missing} (drain bound hit)`,
    String(r.duplicates),
    fixed(r.writerLateP99Ms, 1),
  ]);
  const header = ['contender', 'rate/s', 'written/s', 'delivered', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'backlog grew', 'CPU s/1k', 'Postgres CPU s/1k', 'peak RSS MB', 'missing', 'dupes', 'writer late p99 ms'];
  const rates = [...new Set(results.map((r) => r.rate))];
  const ratios = rates.map((rate) => {
    const bpd = results.find((r) => r.name === BPD && r.rate === rate);
    const peer = results.find((r) => r.name === PEER && r.rate === rate);
    const target = rate <= 1000 ? ` (target p99 ≤ 30 ms: ${verdict(bpd ? bpd.latency.p99 <= 30 : null)})` : '';
    const claims = bpd?.extra.claims ? `; ${BPD} ${claimLine(bpd.extra)}` : '';
    const split = bpd?.split
      ? `; commit to first send p50 ${fixed(bpd.split.toSend.p50, 1)} / p99 ${fixed(bpd.split.toSend.p99, 1)} ms, ` +
        `that send to arrival p50 ${fixed(bpd.split.toArrival.p50, 1)} / p99 ${fixed(bpd.split.toArrival.p99, 1)} ms`
      : '';
    return `- ${rate}/s: ${BPD} / ${PEER} p99 ${ratio(bpd?.latency.p99 ?? NaN, peer?.latency.p99 ?? NaN)}, process CPU per delivery ${ratio(bpd?.cpuPer1k ?? NaN, peer?.cpuPer1k ?? NaN)}${target}${claims}${split}`;
  });
  return `${table(header, rows)}\n\n${ratios.join('\n')}`;
}
