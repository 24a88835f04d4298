"""Writes the README's console screenshots (docs/console-*.png); not a test.

    STRATA_BIN=target/release/strata compat-tests/.venv/bin/python compat-tests/docs_screenshots.py

Starts a broker with a local archive, produces JSON records for a while with a consumer group
reading behind (so the throughput and lag charts have points: one every 10 s), then loads the
broker page and a message page in Debian's chromium through Playwright.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer
from playwright.sync_api import sync_playwright

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conftest import StrataBroker, free_port, strata_binary  # noqa: E402
from s3 import tier_config  # noqa: E402

SECONDS = int(os.environ.get("SCREENSHOT_TRAFFIC_SECONDS", "45"))


def main() -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix="strata-shots-"))
    config = tier_config(work, "local", local_dir=work / "archive", **{"log.segment.bytes": 1 << 20})
    (work / "data").mkdir()
    broker = StrataBroker(strata_binary(), free_port(), work / "data", work / "strata.log",
                          ("--config", str(config))).start()
    try:
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "orders-service",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe(["orders"])
        started, n = time.monotonic(), 0
        while time.monotonic() - started < SECONDS:
            for _ in range(200):
                order = {"id": n, "customer": f"c-{n % 97}", "items": [{"sku": f"s-{n % 13}", "qty": 1 + n % 3}],
                         "total": round(9.5 + n % 40, 2)}
                producer.produce("orders", key=f"c-{n % 97}", value=json.dumps(order),
                                 headers={"source": "checkout"})
                n += 1
            producer.flush(10)
            consumer.consume(num_messages=60, timeout=0.1)  # reads behind: the group lags
            time.sleep(0.2)
        out = HERE.parent / "docs"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"{broker.http_url}/")
            page.screenshot(path=str(out / "console-broker.png"), full_page=True)
            page.goto(f"{broker.http_url}/topics/orders/0?n=5&format=json")
            page.screenshot(path=str(out / "console-messages.png"), full_page=True)
            browser.close()
        consumer.close()
        print(f"wrote {out / 'console-broker.png'} and {out / 'console-messages.png'} ({n} records)")
    finally:
        broker.shutdown_quietly()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
