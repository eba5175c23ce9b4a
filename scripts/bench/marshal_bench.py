# marshal_bench.py -- the peer of marshal_bench.lua: pickle.dumps / loads
# (what multiprocessing uses to send arguments and results), best of 5.
import pickle, sys, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000

def row(name, value, count, reps):
    best_m = best_u = float("inf")
    data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    batch = max(1, reps // 5)
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(batch):
            data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        t1 = time.perf_counter()
        for _ in range(batch):
            pickle.loads(data)
        t2 = time.perf_counter()
        best_m = min(best_m, (t1 - t0) / batch)
        best_u = min(best_u, (t2 - t1) / batch)
    print("%s marshal %.2f ns/elem" % (name, best_m / count * 1e9))
    print("%s unmarshal %.2f ns/elem" % (name, best_u / count * 1e9))
    print("%s bytes %.2f B/elem" % (name, len(data) / count))

row("ints_%d" % N, list(range(1, N + 1)), N, 10)
row("doubles_%d" % N, [i * 0.37 for i in range(1, N + 1)], N, 10)
row("ints_chunk10000", list(range(1, 10001)), 10000, 500)
row("strings_10000", ["item%d" % i for i in range(1, 10001)], 10000, 100)
row("records_10000", [{"id": i, "name": "n%d" % i, "score": i * 1.5} for i in range(1, 10001)], 10000, 50)
row("number", 42, 1, 200000)
