# net_echo.py -- TCP echo round trips in one Python asyncio process (streams
# API): an echo server and CONNS clients on 127.0.0.1, SIZE-byte messages,
# SECONDS.  "--uvloop" runs the same code on uvloop.
# Prints "<round trips per second> <connections>".
import asyncio, sys, time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
CONNS = int(args[0]) if len(args) > 0 else 50
SECONDS = float(args[1]) if len(args) > 1 else 5
SIZE = int(args[2]) if len(args) > 2 else 64

async def handle(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    msg = b"x" * SIZE
    state = {"running": True}
    start = asyncio.Event()

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await start.wait()
        n = 0
        while state["running"]:
            writer.write(msg)
            await reader.readexactly(SIZE)
            n += 1
        writer.close()
        return n

    tasks = [asyncio.create_task(client()) for _ in range(CONNS)]
    await asyncio.sleep(0.2)
    start.set()
    t0 = time.perf_counter()
    await asyncio.sleep(SECONDS)
    state["running"] = False
    elapsed = time.perf_counter() - t0
    total = sum(await asyncio.gather(*tasks))
    server.close()
    print(f"{total / elapsed:.0f} {CONNS}")

if "--uvloop" in sys.argv:
    import uvloop
    uvloop.install()
asyncio.run(main())
