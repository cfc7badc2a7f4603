// Rate cap for redraws: the first call runs at once, later calls within `intervalMs()` collapse
// into one trailing call with the newest arguments. A one-shot timer, never a polling loop.
export function throttle(fn, intervalMs) {
  let last = 0;
  let timer = null;
  let pending = null;
  const run = () => {
    timer = null;
    last = Date.now();
    const args = pending;
    pending = null;
    fn(...args);
  };
  const throttled = (...args) => {
    pending = args;
    if (timer) return;
    const wait = Math.max(0, Number(intervalMs()) || 0) - (Date.now() - last);
    if (wait <= 0) run();
    else timer = setTimeout(run, wait);
  };
  throttled.cancel = () => {
    clearTimeout(timer);
    timer = null;
    pending = null;
  };
  return throttled;
}
