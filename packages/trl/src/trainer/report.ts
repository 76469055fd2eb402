// What a run shows and leaves behind besides checkpoints: the progress bar (cli-progress), one line per
// log on the console, output_dir/trainer_log.jsonl, and the loss curve as an SVG at the end.

import { existsSync } from "node:fs";
import { appendFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "@tsgrad/nn";
import cliProgress from "cli-progress";

export type LogEntry = Record<string, number>;
export const LOG_FILE = "trainer_log.jsonl";
export const LOSS_CURVE_FILE = "loss_curve.svg";

/** Rounds for display as the Trainer prints its logs ({'loss': 1.2345, 'grad_norm': ...}). */
function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(4) : String(+v.toFixed(4));
}

export function formatLog(entry: LogEntry): string {
  return `{${Object.entries(entry)
    .map(([k, v]) => `'${k}': ${fmt(v)}`)
    .join(", ")}}`;
}

export class RunReport {
  private bar: cliProgress.SingleBar | null = null;
  constructor(
    private readonly outputDir: string,
    private readonly showBar: boolean,
  ) {}

  /** Keeps the entries of an earlier run up to `step` (a resumed run rewrites what came after). */
  async start(totalSteps: number, step: number): Promise<void> {
    const path = join(this.outputDir, LOG_FILE);
    if (existsSync(path)) {
      const kept = (await readFile(path, "utf8"))
        .split("\n")
        .filter((l) => l.trim() !== "")
        .filter((l) => {
          try {
            const e = JSON.parse(l) as LogEntry;
            return e.step! <= step && !("train_runtime" in e);
          } catch {
            return false;
          }
        });
      await writeFileAtomic(path, kept.map((l) => `${l}\n`).join(""));
    }
    if (this.showBar && process.stderr.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          format:
            " {bar} {percentage}% | step {value}/{total} | loss {loss} | {duration_formatted}<{eta_formatted}",
          stream: process.stderr,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(totalSteps, step, { loss: "-" });
    }
  }

  tick(step: number, loss: number): void {
    this.bar?.update(step, { loss: loss.toFixed(4) });
  }

  async log(entry: LogEntry): Promise<void> {
    const line = formatLog(entry);
    if (this.bar) process.stderr.write("\r\x1b[2K");
    console.log(line);
    await appendFile(join(this.outputDir, LOG_FILE), `${JSON.stringify(entry)}\n`);
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }

  /** Writes output_dir/loss_curve.svg from the logged training (and eval) losses; returns its path. */
  async writeLossCurve(history: readonly LogEntry[]): Promise<string> {
    const path = join(this.outputDir, LOSS_CURVE_FILE);
    await writeFileAtomic(path, lossCurveSvg(history));
    return path;
  }
}

/** A self-contained SVG line chart of `loss` (and `eval_loss`) against `step`. */
export function lossCurveSvg(history: readonly LogEntry[]): string {
  const series = [
    {
      key: "loss",
      color: "#1f77b4",
      pts: history.filter((e) => Number.isFinite(e.loss)).map((e) => [e.step!, e.loss!]),
    },
    {
      key: "eval_loss",
      color: "#ff7f0e",
      pts: history.filter((e) => Number.isFinite(e.eval_loss)).map((e) => [e.step!, e.eval_loss!]),
    },
  ].filter((s) => s.pts.length > 0);
  const W = 640;
  const H = 360;
  const m = { l: 60, r: 20, t: 30, b: 40 };
  const all = series.flatMap((s) => s.pts);
  const xs = all.map((p) => p[0]!);
  const ys = all.map((p) => p[1]!);
  const x0 = Math.min(0, ...xs);
  const x1 = Math.max(1, ...xs);
  const y0 = all.length ? Math.min(...ys) : 0;
  const y1 = all.length ? Math.max(...ys) : 1;
  const span = y1 - y0 || 1;
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - y0) / span) * (H - m.t - m.b);
  const lines = series.map(
    (s, i) =>
      `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.pts.map(([x, y]) => `${sx(x!).toFixed(1)},${sy(y!).toFixed(1)}`).join(" ")}"/>` +
      `<text x="${W - m.r - 90}" y="${m.t + 16 * i}" fill="${s.color}" font-size="12">${s.key}</text>`,
  );
  const ticks = [0, 0.5, 1].map((t) => {
    const y = y0 + t * span;
    return `<text x="${m.l - 6}" y="${sy(y) + 4}" text-anchor="end" font-size="11">${fmt(y)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">training loss</text>
<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="#333"/>
<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="#333"/>
<text x="${W / 2}" y="${H - 8}" text-anchor="middle" font-size="12">step (0 – ${x1})</text>
${ticks.join("\n")}
${lines.join("\n")}
</svg>
`;
}
