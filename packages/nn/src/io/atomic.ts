// Atomic file writes: write to a temporary name in the destination's directory, flush, then rename over
// the destination, so a reader never sees a half-written file.

import { randomBytes } from "node:crypto";
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** A temporary path next to `path` (same directory, so the final rename stays on one filesystem). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

/**
 * Runs `write` on a fresh temporary file and returns its path once flushed and closed; the caller
 * renames it into place (see commitTemp). The temporary file is removed if `write` throws.
 */
export async function writeTemp(path: string, write: (fh: FileHandle) => Promise<void>): Promise<string> {
  const tmp = tempPathFor(path);
  const fh = await open(tmp, "wx");
  try {
    await write(fh);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  return tmp;
}

export async function commitTemp(tmp: string, path: string): Promise<void> {
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Writes `data` to `path` atomically. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = await writeTemp(path, async (fh) => {
    await fh.writeFile(data);
  });
  await commitTemp(tmp, path);
}

/** Writes all of `bytes` at the file handle's current position. */
export async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  // FileHandle.write may write less than asked for; large buffers also exceed one write call's limit.
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < bytes.length) {
    const n = Math.min(CHUNK, bytes.length - done);
    const { bytesWritten } = await fh.write(bytes, done, n);
    done += bytesWritten;
  }
}
