#!/usr/bin/env python3
"""delayline.py LISTEN_PORT TARGET_PORT ONE_WAY_MS [COUNT]

A TCP relay on 127.0.0.1 that holds every chunk ONE_WAY_MS before passing it
on, in each direction: a round trip of about 2 x ONE_WAY_MS through it. This
kernel has no netem; this stands in for a distant server in benchmarks.
Order within a connection is kept; bandwidth is not limited. With COUNT,
ports LISTEN_PORT .. LISTEN_PORT+COUNT-1 all lead to TARGET_PORT (many
"hosts" behind one server).
"""
import asyncio
import sys


async def pump(reader, writer, delay):
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()

    async def sender():
        while True:
            due, data = await q.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except OSError:
            pass

    task = asyncio.create_task(sender())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            q.put_nowait((loop.time() + delay, data))
    except OSError:
        pass
    q.put_nowait((loop.time() + delay, None))
    try:
        await task
    except OSError:
        pass


async def main():
    listen, target, ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    delay = ms / 1000.0

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pump(cr, sw, delay), pump(sr, cw, delay))
        cw.close()
        sw.close()

    count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    servers = [
        await asyncio.start_server(handle, "127.0.0.1", listen + i, backlog=4096)
        for i in range(count)
    ]
    print(f"delay line 127.0.0.1:{listen}+{count} -> 127.0.0.1:{target}, {ms} ms each way", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        import uvloop  # noqa: F401
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
