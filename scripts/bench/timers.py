# timers.py: 100,000 timers of 0..10 ms (python3 scripts/bench/timers.py [callback|sleep] [N])
import asyncio, re, sys, time

variant = sys.argv[1] if len(sys.argv) > 1 else "callback"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100000

def peak_kb():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s*(\d+)", f.read()).group(1))

async def main():
    t0 = time.monotonic()
    if variant == "callback":
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        fired = 0
        def cb():
            nonlocal fired
            fired += 1
            if fired == N:
                done.set_result(None)
        for i in range(1, N + 1):
            loop.call_later((i % 11) / 1000, cb)
        await done
    else:
        async def body(d):
            await asyncio.sleep(d)
        await asyncio.gather(*(body((i % 11) / 1000) for i in range(1, N + 1)))
    print(f"{variant} {time.monotonic() - t0:.4f} {peak_kb()}")

asyncio.run(main())
