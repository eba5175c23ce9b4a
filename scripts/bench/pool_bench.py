"""pool_bench.py -- the Python side of scripts/bench/pool.sh (issue 3).

    python3 pool_bench.py map|map1|spawn [reps]

Prints "python.WHAT <seconds>": medians after a warm-up.  map and map1 use
multiprocessing.Pool(2).map (default chunksize, and chunksize=1); spawn is
threading.Thread start + join of an empty function.
"""
import multiprocessing
import statistics
import sys
import threading
import time


def sq(x):
    return x * x


def empty():
    pass


def timed(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    what = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    if what in ("map", "map1"):
        n = 1000000 if what == "map" else 100000
        xs = list(range(1, n + 1))
        with multiprocessing.Pool(2) as pool:
            if what == "map":
                t = timed(lambda: pool.map(sq, xs), reps)
            else:
                t = timed(lambda: pool.map(sq, xs, chunksize=1), reps)
        print("python.%s %.9g" % (what, t / n))
    elif what == "spawn":
        for _ in range(100):
            th = threading.Thread(target=empty)
            th.start()
            th.join()
        ts = []
        for _ in range(2000):
            t0 = time.perf_counter()
            th = threading.Thread(target=empty)
            th.start()
            th.join()
            ts.append(time.perf_counter() - t0)
        print("python.spawn %.9g" % statistics.median(ts))
    else:
        sys.exit("usage: pool_bench.py map|map1|spawn [reps]")


if __name__ == "__main__":
    main()
