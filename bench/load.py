#!/usr/bin/env python3
"""bench/load.py: exactly N keep-alive GETs over C connections, for bench/instructions.

    bench/load.py URL REQUESTS CONNECTIONS API_KEY ID1,ID2,...

Sends the same request bytes as bench/proxy.lua (`Authorization: Bearer API_KEY`, a
`Connection-Id` rotating over the ids) and stops after exactly REQUESTS answers: wrk runs for a
time, and a count of instructions per call needs a count of calls. Every answer must be a 200 with
the body of the first answer; otherwise it says so and exits 1. Prints `requests N seconds S`.
Standard library only; fast enough for a server under valgrind (a few thousand answers a second).
"""

import asyncio
import sys
import time
from urllib.parse import urlsplit


async def main() -> int:
    url, total, conns, key, ids = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    parts = urlsplit(url)
    host, port, path = parts.hostname, parts.port or 80, parts.path or "/"
    requests = []
    for cid in [i for i in ids.split(",") if i] or [""]:
        head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        if key and key != "-":
            head += f"Authorization: Bearer {key}\r\n"
        if cid:
            head += f"Connection-Id: {cid}\r\n"
        requests.append((head + "\r\n").encode())
    sent = 0
    answered = 0
    problems = []
    expected = None

    async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            return status, await reader.readexactly(int(fields["content-length"]))
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return status, body
                body += await reader.readexactly(size)
                await reader.readexactly(2)
        raise RuntimeError("an answer with neither Content-Length nor chunked encoding")

    async def connection(index: int) -> None:
        nonlocal sent, answered, expected
        reader, writer = await asyncio.open_connection(host, port)
        i = index
        try:
            while sent < total and len(problems) < 10:
                sent += 1
                i += 1
                writer.write(requests[i % len(requests)])
                status, body = await read_answer(reader)
                answered += 1
                if expected is None and status == 200:
                    expected = body
                if status != 200 or body != expected:
                    problems.append(f"status {status}, body {body[:120]!r}")
        finally:
            writer.close()

    start = time.monotonic()
    await asyncio.gather(*(connection(i) for i in range(min(conns, total))))
    elapsed = time.monotonic() - start
    if problems or answered != total:
        print(f"answered {answered} of {total}; problems: {problems[:3]}", file=sys.stderr)
        return 1
    print(f"requests {answered} seconds {elapsed:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
