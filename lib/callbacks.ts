/**
 * Users' callbacks (progress, warnings) are called through here: what they throw is reported as
 * a warning and goes no further, so it can never break a run in progress, a queue's event
 * handlers or a native call's completion.
 */

/** process.emitWarning under the package's code. */
export const emitWarning = (message: string): void => process.emitWarning(message, { code: 'INP_FORMER' });

/** Call `f(value)`; an exception becomes a warning ("<what> threw (ignored): ..."). */
export function callSafely<T>(f: ((value: T) => void) | undefined, value: T, what: string, warn: (m: string) => void = emitWarning): void {
  if (!f) return;
  try {
    f(value);
  } catch (err) {
    warn(`${what} threw (ignored): ${(err as Error)?.message ?? err}`);
  }
}
