// net_http.js -- CONC concurrent HTTP GETs from Node.js fetch (undici,
// keep-alive): CONC async workers, PER sequential requests each.
// Prints "<requests per second> <seconds> <requests>".
const URL = process.argv[2];
const CONC = +(process.argv[3] || 200), PER = +(process.argv[4] || 10);
async function worker() {
  let ok = 0;
  for (let i = 0; i < PER; i++) {
    const r = await fetch(URL);
    const body = await r.arrayBuffer();
    if (r.status === 200 && body.byteLength === 1024) ok++;
  }
  return ok;
}
(async () => {
  const t0 = process.hrtime.bigint();
  const oks = await Promise.all(Array.from({length: CONC}, worker));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const ok = oks.reduce((a, b) => a + b, 0);
  if (ok !== CONC * PER) throw new Error('some requests failed');
  console.log(`${Math.round(ok / secs)} ${secs.toFixed(3)} ${ok}`);
})();
