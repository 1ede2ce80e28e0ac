#!/usr/bin/env python3
"""Loopback TCP relay for the integration tests.

    tcpproxy.py TARGET_PORT [DELAY_MS]

Listens on 127.0.0.1 on an ephemeral port, which it prints on stdout, and
relays every connection to 127.0.0.1:TARGET_PORT. SIGUSR1 cuts every
connection at once (what a device sees when its network drops); new
connections are relayed again right away. SIGUSR2 makes it a slow relay
from then on: every chunk waits DELAY_MS before it is passed on, both ways
(what a relay attack adds to a round trip).
"""
import asyncio
import signal
import sys


async def main(target_port: int, delay_ms: int) -> None:
    conns = set()
    slow = {"on": False}

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                if slow["on"]:
                    await asyncio.sleep(delay_ms / 1000)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(c_reader, c_writer):
        try:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            c_writer.close()
            return
        pair = (c_writer, s_writer)
        conns.add(pair)
        await asyncio.gather(pipe(c_reader, s_writer), pipe(s_reader, c_writer))
        conns.discard(pair)

    def cut():
        for a, b in list(conns):
            for w in (a, b):
                w.transport.abort()
        conns.clear()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, cut)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, lambda: slow.update(on=True))
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0))
