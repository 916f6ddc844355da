/** A chaos run's counts, the failures they mean, and the report printed for them. */
import type { WorkflowOutcome } from '../coordinator/types.js';
import type { Classification } from './classify.js';
import type { PlannedEvent } from './events.js';
import type { Leak } from './pilot-logs.js';
import type { Orphan } from './processes.js';
import type { ChaosReport } from './run.js';
import type { ChaosTarget } from './targets.js';

export interface ReportInput {
  target: ChaosTarget;
  seed: number;
  plan: PlannedEvent[];
  published: number;
  refusedAtPublish: number;
  outcomes: Map<string, { times: number; outcome: WorkflowOutcome }>;
  /** One per queued event, in plan order (oversize events excluded). */
  verdicts: Classification[];
  extraWrong: ChaosReport['wrongOutcomes'];
  duplicatesAbsorbed: number;
  orphans: Orphan[];
  leaks: Leak[] | undefined;
  kills: Array<{ signal: NodeJS.Signals; duringSleep: boolean }>;
  pilotsStarted: number;
  disruptions: string[];
  durationMs: number;
}

export function buildReport(input: ReportInput): ChaosReport {
  const queued = input.plan.filter((e) => e.kind !== 'oversize');
  const lost: string[] = [];
  const duplicatesToUser: string[] = [];
  const wrong: ChaosReport['wrongOutcomes'] = [...input.extraWrong];
  let limitAfterKills = 0;
  queued.forEach((event, i) => {
    const v = input.verdicts[i]!;
    if (v.verdict === 'lost') lost.push(event.id);
    else if (v.verdict === 'duplicate') duplicatesToUser.push(event.id);
    else if (v.verdict === 'limit-after-kills') limitAfterKills += 1;
    else if (v.verdict === 'wrong') wrong.push({ id: event.id, kind: event.kind, problem: v.problem });
  });
  let results = 0;
  const byReason: Record<string, number> = {};
  for (const { outcome } of input.outcomes.values()) {
    if (outcome.kind === 'result') {
      results += 1;
      continue;
    }
    const key = reasonKey(outcome.reason);
    byReason[key] = (byReason[key] ?? 0) + 1;
  }
  const deadLetters = Object.values(byReason).reduce((a, b) => a + b, 0);

  const failures: string[] = [];
  if (lost.length > 0) failures.push(`${lost.length} event(s) lost (no outcome), e.g. ${lost.slice(0, 5).join(', ')}`);
  if (duplicatesToUser.length > 0) failures.push(`${duplicatesToUser.length} event(s) reached the user more than once, e.g. ${duplicatesToUser.slice(0, 5).join(', ')}`);
  if (input.orphans.length > 0) {
    const sample = input.orphans.slice(0, 3).map((o) => `pid ${o.pid} '${o.command.slice(0, 60)}' of ${o.pilotDir.slice(o.pilotDir.lastIndexOf('/') + 1)}`);
    failures.push(`${input.orphans.length} task process(es) outlived their pilot by more than the grace, e.g. ${sample.join('; ')}`);
  }
  if (input.leaks && input.leaks.length > 0) failures.push(`the broker password appears in ${input.leaks.map((l) => `${l.file} (${l.occurrences}x)`).join(', ')}`);
  if (wrong.length > 0) failures.push(`${wrong.length} wrong outcome(s), e.g. ${wrong.slice(0, 5).map((w) => `${w.id}: ${w.problem}`).join('; ')}`);

  return {
    target: input.target.label,
    seed: input.seed,
    planned: input.plan.length,
    published: input.published,
    refusedAtPublish: input.refusedAtPublish,
    results,
    deadLetters,
    deadLettersByReason: byReason,
    lost,
    duplicatesAbsorbed: input.duplicatesAbsorbed,
    duplicatesToUser,
    orphans: input.orphans,
    leaks: input.leaks,
    wrongOutcomes: wrong,
    deliveryLimitAfterKills: limitAfterKills,
    sigkills: input.kills.filter((k) => k.signal === 'SIGKILL').length,
    sigkillsDuringSleep: input.kills.filter((k) => k.signal === 'SIGKILL' && k.duringSleep).length,
    sigterms: input.kills.filter((k) => k.signal === 'SIGTERM').length,
    pilotsStarted: input.pilotsStarted,
    brokerDisruptions: input.disruptions,
    durationMs: input.durationMs,
    failures,
    keptDir: undefined,
  };
}

/** A dead-letter reason with its numbers and event-specific tail folded away, to group by. */
function reasonKey(reason: string): string {
  return reason
    .replace(/^(malformed event):.*/, '$1')
    .replace(/\d+(\.\d+)?/g, 'N')
    .slice(0, 90);
}

/** The report as printed by `npm run chaos`. */
export function formatReport(r: ChaosReport): string {
  const lines = [
    `== ${r.target} — seed ${r.seed}, ${(r.durationMs / 1000).toFixed(0)} s: ${r.failures.length === 0 ? 'PASS' : 'FAIL'}`,
    `  published ${r.published} of ${r.planned} planned (${r.refusedAtPublish} oversize refused by the broker, as they must be)`,
    `  pilots: ${r.sigkills} SIGKILLed (${r.sigkillsDuringSleep} while a task of theirs slept), ${r.sigterms} SIGTERMed, ${r.pilotsStarted} started in all`,
    `  broker: ${r.brokerDisruptions.length === 0 ? 'not disrupted' : r.brokerDisruptions.join('; ')}`,
    `  results ${r.results}, dead letters ${r.deadLetters}:`,
    ...Object.entries(r.deadLettersByReason)
      .sort((a, b) => b[1] - a[1])
      .map(([reason, n]) => `    ${String(n).padStart(6)}  ${reason}`),
    `  lost ${r.lost.length}`,
    `  duplicates absorbed by the coordinator ${r.duplicatesAbsorbed}, delivered to the user ${r.duplicatesToUser.length}`,
    `  orphaned task processes ${r.orphans.length}`,
    `  secret leaks ${r.leaks === undefined ? 'not checked (this broker runs without a password)' : r.leaks.length}`,
    `  wrong outcomes ${r.wrongOutcomes.length}`,
    `  good events dead-lettered after SIGKILLed pilots held every attempt (expected) ${r.deliveryLimitAfterKills}`,
    ...r.failures.map((f) => `  FAILED: ${f}`),
    ...(r.keptDir ? [`  run directory kept: ${r.keptDir}`] : []),
  ];
  return lines.join('\n');
}
