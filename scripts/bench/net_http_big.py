# net_http_big.py -- the Python peer of net_http_big.lua: REPS sequential
# urllib.request.urlopen(URL).read() after one warm-up (a new connection
# each, urllib's way).  Prints "python <median ms> <min ms> <max ms> <bytes>
# <peak RSS growth KiB>", the growth measured from after the warm-up.
import resource, sys, time, urllib.request

URL = sys.argv[1]
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 9

def get():
    with urllib.request.urlopen(URL) as r:
        assert r.status == 200
        return len(r.read())

def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

n = get()
before = rss_kb()
t = []
for _ in range(REPS):
    t0 = time.perf_counter()
    assert get() == n
    t.append((time.perf_counter() - t0) * 1e3)
t.sort()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"python {t[len(t) // 2]:.2f} {t[0]:.2f} {t[-1]:.2f} {n} {peak - before}")
