// The worker-thread machinery of the wasm backend's kernel pool (kernel-pool.ts): workers started from an
// eval'd source that instantiate modules over the shared memory, a control block of Int32 words, and
// synchronous dispatch. The caller bumps the generation and
// runs its own share; every thread claims work items from the NEXT counter; the caller then waits until
// every worker has reported. No postMessage per job. Both sides spin a little before they block in
// Atomics.wait: waking a blocked thread took 40-55 us per job here, against 1-2 us for a spinning one, and a
// training step posts a few hundred jobs.

import { envVar, nodeBuiltin } from "../env.js";

/** Int32 words of the control block every pool starts with; a pool puts its job words after them. */
export const GEN = 0;
export const DONE = 1;
export const READY = 2;
export const FAILED = 3;
export const QUIT = 4;
/** The next work item to claim. */
export const NEXT = 5;
/** The first word a pool may use for its own job. */
export const FIRST_FREE = 6;

/**
 * A worker's whole program: `setup` (with `workerData` and `ctrl` in scope) runs once, then `job` runs
 * for every generation until QUIT; an exception in `job` is reported through FAILED. Runs as a script or
 * as a module (the worker inherits --input-type).
 */
export function workerSource(setup: string, job: string): string {
  return `
const { workerData } = process.getBuiltinModule("node:worker_threads");
const ctrl = new Int32Array(workerData.control);
const spinMs = workerData.spinMs;
${setup}
// read the generation before reporting ready: the first job may be posted right after
let gen = Atomics.load(ctrl, ${GEN});
Atomics.add(ctrl, ${READY}, 1);
Atomics.notify(ctrl, ${READY});
for (;;) {
  // spin for the next job for up to spinMs, then block
  const until = performance.now() + spinMs;
  for (let i = 1; Atomics.load(ctrl, ${GEN}) === gen; i++)
    if ((i & 1023) === 0 && performance.now() > until) {
      Atomics.wait(ctrl, ${GEN}, gen);
      break;
    }
  gen = Atomics.load(ctrl, ${GEN});
  if (Atomics.load(ctrl, ${QUIT}) !== 0) break;
  try {
${job}
  } catch (e) {
    Atomics.store(ctrl, ${FAILED}, 1);
  }
  Atomics.add(ctrl, ${DONE}, 1);
  Atomics.notify(ctrl, ${DONE});
}
`;
}

/**
 * How long an idle worker spins for the next job before it blocks: TSGRAD_SPIN_US microseconds, default 300
 * (0 on a machine whose cores other processes need more than this one's kernels do).
 */
export const DEFAULT_SPIN_US = 300;
function spinMicros(): number {
  const raw = envVar("TSGRAD_SPIN_US");
  if (raw === undefined || raw === "") return DEFAULT_SPIN_US;
  const us = Number(raw);
  if (!Number.isFinite(us) || us < 0)
    throw new Error(`TSGRAD_SPIN_US: expected a number of microseconds >= 0, got "${raw}"`);
  return us;
}

interface WorkerLike {
  on(event: "error", listener: (e: unknown) => void): void;
  unref(): void;
  terminate(): Promise<number>;
}
export type WorkerCtor = new (src: string, options: { eval: true; workerData: unknown }) => WorkerLike;

/** node:worker_threads' Worker, or null where there are no worker threads. */
export function workerCtor(): WorkerCtor | null {
  return nodeBuiltin<{ Worker?: WorkerCtor }>("node:worker_threads")?.Worker ?? null;
}

export class WorkerGroup {
  readonly ctrl: Int32Array;
  private readonly workers: WorkerLike[] = [];
  private broken = false;

  /**
   * Starts `size` workers running `source` without waiting for them (a blocked caller could keep them
   * from starting: ESM module evaluation does); `data(i)` is worker i's workerData, to which the control
   * block is added. `ctrlWords` is the control block's length.
   */
  constructor(
    readonly size: number,
    ctrlWords: number,
    Worker: WorkerCtor,
    source: string,
    data: (i: number) => object,
    init?: (ctrl: Int32Array) => void,
  ) {
    this.ctrl = new Int32Array(new SharedArrayBuffer(4 * ctrlWords));
    init?.(this.ctrl);
    for (let i = 0; i < size; i++) {
      const w = new Worker(source, {
        eval: true,
        workerData: { ...data(i), control: this.ctrl.buffer, spinMs: spinMicros() / 1000 },
      });
      w.on("error", () => {
        this.broken = true;
      });
      w.unref();
      this.workers.push(w);
    }
  }

  /** Every worker has instantiated its module and waits for jobs. */
  get ready(): boolean {
    return !this.broken && Atomics.load(this.ctrl, READY) === this.size;
  }

  /** Resolves once `ready` (false if a worker failed or 30 s passed). */
  async whenReady(): Promise<boolean> {
    const deadline = Date.now() + 30_000;
    while (!this.ready && !this.broken && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    return this.ready;
  }

  /**
   * Posts the job already written into the control block, runs `mine` here (it claims items from NEXT
   * like the workers), and returns when every worker has reported. If `mine` throws, `abandon` runs (it
   * must let the workers stop claiming and stop waiting), and the error is rethrown after they finish; a
   * worker's failure throws `failure`.
   */
  dispatch(mine: () => void, abandon: () => void, failure: string): void {
    const c = this.ctrl;
    Atomics.store(c, NEXT, 0);
    Atomics.store(c, DONE, 0);
    Atomics.add(c, GEN, 1);
    Atomics.notify(c, GEN);
    let error: unknown = null;
    try {
      mine();
    } catch (e) {
      error = e;
      abandon();
    }
    // the workers' shares end about when this one does: spin for them up to a millisecond, then block
    const until = performance.now() + 1;
    for (let i = 1; Atomics.load(c, DONE) < this.size; i++)
      if ((i & 1023) === 0 && performance.now() > until) break;
    for (let d = Atomics.load(c, DONE); d < this.size; d = Atomics.load(c, DONE)) Atomics.wait(c, DONE, d);
    if (error !== null) throw error;
    if (Atomics.exchange(c, FAILED, 0) !== 0) throw new Error(failure);
  }

  stop(): void {
    Atomics.store(this.ctrl, QUIT, 1);
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
    for (const w of this.workers) void w.terminate();
  }
}
