// timers.js: 100,000 timers of 0..10 ms (node scripts/bench/timers.js [callback|sleep] [N])
const fs = require('fs');
const variant = process.argv[2] || 'callback';
const N = parseInt(process.argv[3] || '100000', 10);
const peakKb = () => parseInt(/VmHWM:\s*(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1], 10);
const t0 = process.hrtime.bigint();
let fired = 0;
const finish = () => {
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${variant} ${s.toFixed(4)} ${peakKb()}`);
};
if (variant === 'callback') {
  const cb = () => { if (++fired === N) finish(); };
  for (let i = 1; i <= N; i++) setTimeout(cb, i % 11);
} else {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const body = async (ms) => { await sleep(ms); fired++; };
  const all = [];
  for (let i = 1; i <= N; i++) all.push(body(i % 11));
  Promise.all(all).then(finish);
}
