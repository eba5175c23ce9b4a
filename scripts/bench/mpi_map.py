# mpi_map.py -- mpi4py's MPIPoolExecutor.map of N busy items of MS ms, the
# peer of `mpi_bench.lua map` in scripts/bench/mpi.sh.
#
#   mpiexec -n R python3 -m mpi4py.futures mpi_map.py N MS [CHUNKSIZE]
#
# (rank 0 is the master, ranks 1..R-1 the workers).  Prints
# "mpi4py map N MS chunkC seconds".
import sys
import time
from mpi4py.futures import MPIPoolExecutor


def busy(x, secs):
    t = time.perf_counter()
    while time.perf_counter() - t < secs:
        pass
    return x


def item(x):
    return busy(x, SECS)


SECS = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.001

if __name__ == "__main__":
    n = int(sys.argv[1])
    chunk = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    with MPIPoolExecutor() as ex:
        list(ex.map(item, range(10)))  # warm-up: the workers are up
        t0 = time.perf_counter()
        res = list(ex.map(item, range(n), chunksize=chunk))
        t = time.perf_counter() - t0
        assert len(res) == n
        print("mpi4py map %d %s chunk%d %.6f" % (n, sys.argv[2], chunk, t))
