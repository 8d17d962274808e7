// Polling with gentle backoff, for states the API settles in the background (processing steps,
// selfie face status). There is no push channel: GET is the contract.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Call `check` until it returns something other than undefined/null; return that. Stops
 * (throws) once `active()` is false: the person signed in as someone else meanwhile. */
export async function pollUntil(check, {
  interval = 500, maxInterval = 3000, timeout = 180_000, active = () => true,
} = {}) {
  const deadline = Date.now() + timeout;
  let wait = interval;
  for (;;) {
    if (!active()) throw new Error('signed in as someone else: stopped following');
    const result = await check();
    if (result != null) return result;
    if (Date.now() + wait > deadline) throw new Error('still not settled: try Refresh later');
    await sleep(wait);
    wait = Math.min(Math.round(wait * 1.4), maxInterval);
  }
}
