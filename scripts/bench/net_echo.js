// net_echo.js -- TCP echo round trips in one Node.js process (net): an
// echo server and CONNS clients on 127.0.0.1, SIZE-byte messages, SECONDS.
// Prints "<round trips per second> <connections>".
const net = require('net');
const CONNS = +(process.argv[2] || 50), SECONDS = +(process.argv[3] || 5), SIZE = +(process.argv[4] || 64);
const msg = Buffer.alloc(SIZE, 'x');
const server = net.createServer({noDelay: true}, (s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); });
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  let running = false, total = 0, connected = 0, t0 = 0;
  const clients = [];
  for (let i = 0; i < CONNS; i++) {
    const c = net.connect({port, host: '127.0.0.1', noDelay: true});
    let got = 0;
    c.on('data', (d) => {
      got += d.length;
      while (got >= SIZE) {
        got -= SIZE;
        total++;
        if (running) c.write(msg);
      }
    });
    c.on('error', () => {});
    c.on('connect', () => {
      if (++connected === CONNS) {
        running = true;
        t0 = process.hrtime.bigint();
        for (const k of clients) k.write(msg);
        setTimeout(() => {
          running = false;
          const secs = Number(process.hrtime.bigint() - t0) / 1e9;
          console.log(`${Math.round(total / secs)} ${CONNS}`);
          for (const k of clients) k.destroy();
          server.close();
        }, SECONDS * 1000);
      }
    });
    clients.push(c);
  }
});
