// Preloaded into a relay process (node --import) to set its wall clock apart from
// the database's by TEST_CLOCK_SHIFT_MS: a host whose clock is not kept in step, or
// jumped. Only the wall clock moves (Date.now, new Date()); timers and
// performance.now() keep their pace.
const shift = Number(process.env.TEST_CLOCK_SHIFT_MS ?? 0);
const RealDate = Date;

class ShiftedDate extends RealDate {
  constructor(...args: unknown[]) {
    if (args.length === 0) super(RealDate.now() + shift);
    else super(...(args as [string]));
  }

  static override now(): number {
    return RealDate.now() + shift;
  }
}

globalThis.Date = ShiftedDate as DateConstructor;
