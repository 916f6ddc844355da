/**
 * Every error this project raises on purpose is an `EwmsError`: a message that says what went wrong and a
 * `hint` that says what to do about it. Messages never contain credentials (see `redact.ts`).
 */
export class EwmsError extends Error {
  /** What the user can do about it. */
  readonly hint: string;

  constructor(message: string, hint: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.hint = hint;
  }

  /** `message` followed by the hint, as printed by the CLIs. */
  override toString(): string {
    return `${this.name}: ${this.message}\n  hint: ${this.hint}`;
  }
}
