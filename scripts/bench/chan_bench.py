"""chan_bench.py -- Python's queues, the peers of chan_bench.lua:
queue.Queue between two threads and multiprocessing.Queue between two
processes (the seeds' producer/consumer), printed as "name value unit".
Usage: python3 chan_bench.py [messages]"""
import multiprocessing as mp
import queue
import sys
import threading
import time


def thread_queue(n):
    q = queue.Queue(1024)
    total = [0]

    def consumer():
        s = 0
        while True:
            v = q.get()
            if v is None:
                break
            s += v
        total[0] = s

    t = threading.Thread(target=consumer)
    t0 = time.perf_counter()
    t.start()
    for i in range(1, n + 1):
        q.put(i)
    q.put(None)
    t.join()
    assert total[0] == n * (n + 1) // 2
    return n / (time.perf_counter() - t0)


def mp_consumer(q, out):
    s = 0
    while True:
        v = q.get()
        if v is None:
            break
        s += v
    out.put(s)


def process_queue(n):
    q, out = mp.Queue(1024), mp.Queue()
    p = mp.Process(target=mp_consumer, args=(q, out))
    t0 = time.perf_counter()
    p.start()
    for i in range(1, n + 1):
        q.put(i)
    q.put(None)
    s = out.get()
    p.join()
    assert s == n * (n + 1) // 2
    return n / (time.perf_counter() - t0)


def pp_echo(a, b):
    while True:
        v = a.get()
        if v is None:
            return
        b.put(v)


def thread_pingpong(rounds):
    a, b = queue.Queue(1), queue.Queue(1)
    t = threading.Thread(target=pp_echo, args=(a, b))
    t.start()
    lat = []
    for i in range(rounds):
        t0 = time.perf_counter()
        a.put(i)
        b.get()
        lat.append(time.perf_counter() - t0)
    a.put(None)
    t.join()
    lat.sort()
    return lat[rounds // 2]


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    print("queue_Queue %.0f msg/s" % thread_queue(n // 5))
    print("mp_Queue %.0f msg/s" % process_queue(n // 5))
    print("queue_Queue_pingpong_median %.2f us" % (thread_pingpong(5000) * 1e6))
