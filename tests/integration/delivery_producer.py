"""A gateway stand-in for the SIGKILL test: numbered samples through Delivery to real sinks.

    python -m tests.integration.delivery_producer OUTBOX MQTT_PORT INFLUX_URL BASE_NS START COUNT

Appends samples START .. START+COUNT-1 (25 every 50 ms) and prints
``committed <n>`` once every sample below n is durable in the outbox; then
``drained`` when every sink caught up, and keeps running until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.integration.delivery_support import make_delivery, make_sample, running, wait_until


async def main(argv: list[str]) -> None:
    outbox, mqtt_port, influx_url, base_ns, start, count = argv
    d = make_delivery(
        Path(outbox),
        mqtt={"host": "127.0.0.1", "port": int(mqtt_port)},
        influx={"mode": "v1", "url": influx_url, "database": "fsg"},
    )
    async with running(d):
        i, end = int(start), int(start) + int(count)
        while i < end:
            for _ in range(min(25, end - i)):
                d.append_sample(make_sample(i, int(base_ns)))
                i += 1
            await d.flush()
            print(f"committed {i}", flush=True)
            await asyncio.sleep(0.05)
        await wait_until(lambda: d.stats().backlog == 0, 60, "every sink to catch up")
        print("drained", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
