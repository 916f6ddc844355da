/**
 * The command line, checked in one pass before anything changes: every problem is collected (not just the
 * first), each names its flag and its fix, and one `UsageError` (exit 2: nothing was changed) reports them.
 * Numbers are read from the text the user typed, so a message quotes `'abc'`, not `NaN`.
 */
import { CoordinatorConfigError } from '../errors.js';
import type { Args } from './shared.js';

/** One problem with the command line. */
export interface InputProblem {
  /** The flag (`--pilots`), or what else it concerns (`events.jsonl:3:14`). */
  readonly where: string;
  readonly problem: string;
  readonly fix: string;
}

/** The command line cannot be used; nothing was changed (exit 2). */
export class UsageError extends CoordinatorConfigError {
  constructor(
    readonly problems: readonly InputProblem[],
    helpCommand: string,
  ) {
    const only = problems.length === 1 ? problems[0] : undefined;
    super(
      only
        ? `${only.where}: ${only.problem}`
        : `${problems.length} problems with the command line:\n${problems.map((p) => `  ${p.where}: ${p.problem}\n    fix: ${p.fix}`).join('\n')}`,
      only ? `${only.fix}; nothing was changed (${helpCommand} --help lists every option)` : `nothing was changed; ${helpCommand} --help lists every option`,
    );
  }
}

/** Problems found so far; `check()` throws them as one `UsageError`. */
export class InputProblems {
  private readonly list: InputProblem[] = [];

  constructor(
    /** The command, for the pointer to its help (`ewms run`). */
    readonly command: string,
  ) {}

  add(where: string, problem: string, fix: string): undefined {
    this.list.push({ where, problem, fix });
    return undefined;
  }

  /** Keep `err`'s problem if it is a usage problem (a `CoordinatorConfigError`); anything else is rethrown. */
  absorb<T>(where: string, read: () => T): T | undefined {
    try {
      return read();
    } catch (err) {
      if (err instanceof UsageError) {
        for (const p of err.problems) this.list.push(p);
        return undefined;
      }
      if (err instanceof CoordinatorConfigError) return this.add(where, err.message, err.hint);
      throw err;
    }
  }

  /** `absorb` for a read that takes time (a file, the broker). */
  async absorbAsync<T>(where: string, read: () => Promise<T>): Promise<T | undefined> {
    try {
      return await read();
    } catch (err) {
      return this.absorb(where, () => {
        throw err;
      });
    }
  }

  get count(): number {
    return this.list.length;
  }

  /** The problems found so far (e.g. to report them under a prefix of one's own). */
  get found(): readonly InputProblem[] {
    return this.list;
  }

  /** Throw every problem found as one `UsageError`. */
  check(): void {
    if (this.list.length > 0) throw new UsageError([...this.list], this.command);
  }
}

/** The text given for `flag` (the last one if it was given twice is refused), or undefined. */
function text(p: InputProblems, args: Args, flag: string): string | undefined {
  const value = args[flag];
  if (value === undefined) return undefined;
  if (Array.isArray(value)) {
    p.add(`--${flag}`, `was given ${value.length} times (${value.map((v) => `'${String(v)}'`).join(', ')})`, `give --${flag} once`);
    return undefined;
  }
  return String(value).trim();
}

/** `--flag N`: a whole number >= `min`. */
export function wholeNumber(p: InputProblems, args: Args, flag: string, options: { min: number; example: string }): number | undefined {
  const value = text(p, args, flag);
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < options.min || !Number.isSafeInteger(Number(value))) {
    return p.add(`--${flag}`, `'${value}' is not a whole number >= ${options.min}`, `give a whole number, e.g. --${flag} ${options.example}`);
  }
  return Number(value);
}

/** `--flag S`: a number of seconds, > 0 (or >= 0 with `zero`). */
export function seconds(p: InputProblems, args: Args, flag: string, options: { zero?: boolean; example: string; zeroMeans?: string } = { example: '60' }): number | undefined {
  const value = text(p, args, flag);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value === '' || !Number.isFinite(n) || n < 0 || (n === 0 && !options.zero)) {
    return p.add(`--${flag}`, `'${value}' is not a number of seconds ${options.zero ? '>= 0' : '> 0'}`, `give seconds, e.g. --${flag} ${options.example}${options.zeroMeans ?? ''}`);
  }
  return n;
}

/** `--flag N`: any finite number. */
export function number(p: InputProblems, args: Args, flag: string, example: string): number | undefined {
  const value = text(p, args, flag);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value === '' || !Number.isFinite(n)) return p.add(`--${flag}`, `'${value}' is not a number`, `e.g. --${flag} ${example}`);
  return n;
}
