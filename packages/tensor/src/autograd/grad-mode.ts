// Whether ops record a graph. noGrad(fn) turns recording off inside fn, like torch.no_grad().

let enabled = true;

export function isGradEnabled(): boolean {
  return enabled;
}

/** Runs fn without recording the autograd graph (inference, optimizer updates, frozen bases). */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs fn with recording on or off, restoring the previous mode afterwards. */
export function withGradMode<T>(on: boolean, fn: () => T): T {
  const prev = enabled;
  enabled = on;
  try {
    return fn();
  } finally {
    enabled = prev;
  }
}
