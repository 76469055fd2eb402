// Learning-rate schedules as transformers' get_scheduler (optimization.py): each is a multiplier of the
// base rate as a function of the optimizer step, applied the way torch's LambdaLR does.

export type SchedulerType =
  | "linear"
  | "cosine"
  | "cosine_with_restarts"
  | "polynomial"
  | "constant"
  | "constant_with_warmup"
  | "inverse_sqrt";

export const SCHEDULER_TYPES: readonly SchedulerType[] = [
  "linear",
  "cosine",
  "cosine_with_restarts",
  "polynomial",
  "constant",
  "constant_with_warmup",
  "inverse_sqrt",
];

export interface SchedulerOptions {
  num_warmup_steps?: number;
  num_training_steps?: number;
  /** cosine: 0.5 (half a wave), cosine_with_restarts: 1. */
  num_cycles?: number;
  /** polynomial: final rate (default 1e-7) and power (default 1). */
  lr_end?: number;
  power?: number;
  /** inverse_sqrt: default num_warmup_steps, or 10,000 without warmup. */
  timescale?: number;
}

/** The warmup length the Trainer uses: warmup_steps when > 0 (a value below 1 is a ratio), else ceil(total * ratio). */
export function getWarmupSteps(totalSteps: number, warmupSteps: number, warmupRatio: number): number {
  if (warmupSteps >= 1) return Math.floor(warmupSteps);
  if (warmupSteps > 0) return Math.ceil(totalSteps * warmupSteps);
  return Math.ceil(totalSteps * warmupRatio);
}

/** The multiplier lambda(step) of transformers' get_<name>_schedule_with_warmup. */
export function scheduleLambda(
  name: SchedulerType,
  baseLr: number,
  o: SchedulerOptions = {},
): (step: number) => number {
  const w = o.num_warmup_steps ?? 0;
  const T = o.num_training_steps ?? 0;
  const warm = (step: number) => step / Math.max(1, w);
  const needsTotal = ["linear", "cosine", "cosine_with_restarts", "polynomial"].includes(name);
  if (needsTotal && !(T > 0)) throw new RangeError(`${name} schedule: num_training_steps must be > 0`);
  switch (name) {
    case "constant":
      return () => 1;
    case "constant_with_warmup":
      return (s) => (s < w ? warm(s) : 1);
    case "linear":
      return (s) => (s < w ? warm(s) : Math.max(0, (T - s) / Math.max(1, T - w)));
    case "cosine": {
      const cycles = o.num_cycles ?? 0.5;
      return (s) => {
        if (s < w) return warm(s);
        const progress = (s - w) / Math.max(1, T - w);
        return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
      };
    }
    case "cosine_with_restarts": {
      const cycles = o.num_cycles ?? 1;
      return (s) => {
        if (s < w) return warm(s);
        const progress = (s - w) / Math.max(1, T - w);
        if (progress >= 1) return 0;
        return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((cycles * progress) % 1))));
      };
    }
    case "polynomial": {
      const lrEnd = o.lr_end ?? 1e-7;
      const power = o.power ?? 1;
      if (!(baseLr > lrEnd))
        throw new RangeError(
          `polynomial schedule: lr_end (${lrEnd}) must be smaller than the rate (${baseLr})`,
        );
      return (s) => {
        if (s < w) return warm(s);
        if (s > T) return lrEnd / baseLr;
        const remaining = 1 - (s - w) / (T - w);
        return ((baseLr - lrEnd) * remaining ** power + lrEnd) / baseLr;
      };
    }
    case "inverse_sqrt": {
      const timescale = o.timescale ?? (w || 10_000);
      return (s) => (s < w ? warm(s) : 1 / Math.sqrt((s + timescale - w) / timescale));
    }
    default:
      throw new RangeError(
        `unknown lr_scheduler_type ${JSON.stringify(name)}; expected one of ${SCHEDULER_TYPES.join(", ")}`,
      );
  }
}

/**
 * torch's LambdaLR over an optimizer with an `lr` field: construction sets lr = base * lambda(0), and each
 * step() (called after optimizer.step()) advances to lambda(step).
 * @example const sched = getScheduler("linear", opt, { num_warmup_steps: 10, num_training_steps: 100 });
 */
export class LRScheduler {
  readonly baseLr: number;
  lastStep = 0;
  constructor(
    private readonly optimizer: { lr: number },
    private readonly lambda: (step: number) => number,
  ) {
    this.baseLr = optimizer.lr;
    optimizer.lr = this.baseLr * lambda(0);
  }
  step(): void {
    this.lastStep++;
    this.optimizer.lr = this.baseLr * this.lambda(this.lastStep);
  }
  getLastLr(): number {
    return this.optimizer.lr;
  }
  stateDict(): { last_step: number; base_lr: number } {
    return { last_step: this.lastStep, base_lr: this.baseLr };
  }
  loadStateDict(sd: { last_step: number; base_lr: number }): void {
    if (!Number.isInteger(sd?.last_step) || sd.last_step < 0)
      throw new Error(`LRScheduler.loadStateDict: bad last_step ${JSON.stringify(sd?.last_step)}`);
    if (sd.base_lr !== this.baseLr)
      throw new Error(
        `LRScheduler.loadStateDict: the saved base rate ${sd.base_lr} differs from this run's ${this.baseLr}`,
      );
    this.lastStep = sd.last_step;
    this.optimizer.lr = this.baseLr * this.lambda(this.lastStep);
  }
}

export function getScheduler(
  name: SchedulerType,
  optimizer: { lr: number },
  options: SchedulerOptions = {},
): LRScheduler {
  return new LRScheduler(optimizer, scheduleLambda(name, optimizer.lr, options));
}
