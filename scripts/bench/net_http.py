# net_http.py -- CONC concurrent HTTP GETs from Python: asyncio tasks that
# hand urllib.request.urlopen to a thread pool of CONC threads (the usual
# way to use a blocking client from asyncio), PER requests each.
# Prints "<requests per second> <seconds> <requests>".
import asyncio, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

URL = sys.argv[1]
CONC = int(sys.argv[2]) if len(sys.argv) > 2 else 200
PER = int(sys.argv[3]) if len(sys.argv) > 3 else 10

def fetch(url):
    with urllib.request.urlopen(url) as r:
        return r.status, len(r.read())

async def worker(loop, pool):
    ok = 0
    for _ in range(PER):
        status, n = await loop.run_in_executor(pool, fetch, URL)
        ok += status == 200 and n == 1024
    return ok

async def main():
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=CONC) as pool:
        t0 = time.perf_counter()
        ok = sum(await asyncio.gather(*(worker(loop, pool) for _ in range(CONC))))
        secs = time.perf_counter() - t0
    assert ok == CONC * PER, "some requests failed"
    print(f"{ok / secs:.0f} {secs:.3f} {ok}")

asyncio.run(main())
