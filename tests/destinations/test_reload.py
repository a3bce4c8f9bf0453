"""SIGHUP: the destinations process reads its files again; a mistake keeps the ones in force."""

from __future__ import annotations

import asyncio
import signal

from helpers import eventually

from .conftest import ev, write_destination
from .test_durability import start


async def test_sighup_reads_the_files_again_and_a_mistake_keeps_the_old_ones(setup, receivers):
    config, log = setup
    first, second = await receivers(), await receivers()
    write_destination(config.engage_dir, "crm", url=first.url)
    process = await start(config)
    try:
        log.write([ev()])
        await eventually(lambda: len(first.got) == 1, 30, what="the first webhook")
        write_destination(config.engage_dir, "crm", url=second.url)  # moved
        write_destination(config.engage_dir, "ads", url=second.url, filter={"field": "event", "value": "Signed Up"})
        process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)  # not a wait for a result: the reload is asked for, then events come
        log.write([ev(), ev(event="Signed Up")])
        await eventually(lambda: len(second.got) == 3, 30, what="the new url and the new destination")
        assert len(first.got) == 1
        (config.engage_dir / "destinations" / "crm.yaml").write_text("url: [not, a, url]\nsecret: x\n")
        process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        log.write([ev()])
        await eventually(lambda: len(second.got) == 4, 30, what="the definitions in force kept")
        assert process.returncode is None
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    stderr = (await process.stderr.read()).decode()
    assert "the ones in force are kept" in stderr and "'url' is an http:// or https://" in stderr
