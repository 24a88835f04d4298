"""The web console, seen through a real browser (Debian's chromium driven by Playwright).

A producer writes records with a JSON value and a header, a classic and a KIP-848 consumer
group each read and commit part of them, then the browser loads the console's pages and
checks what a user would read there: the broker's version and listener, the topic's
partitions and configs, a record's key, header and pretty-printed JSON value, and each
group's state, member assignment and lag. A screenshot of every page goes to the test's tmp
dir.

A broker with an archive (a local directory, small segments, short local retention) shows
what each partition has archived, and the message browser reads records that are only in the
archive any more.
"""

from __future__ import annotations

import datetime
import json
import shutil
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from playwright import sync_api as playwright_api

from clients import create_topic, group_consumer, unique_topic, wait_until
from s3 import tier_config

# The system's browser (run.sh installs Debian's chromium); Playwright never downloads one.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
RECORDS = 5
COMMITTED = 3


def open_page(javascript: bool):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=javascript)
            yield context.new_page()
        finally:
            browser.close()


@pytest.fixture
def page():
    yield from open_page(javascript=True)


@pytest.fixture
def page_without_js():
    yield from open_page(javascript=False)


def consume_and_commit(bootstrap: str, group: str, topic: str, protocol: str):
    """A member that has read and committed the first COMMITTED records; left open."""
    consumer = group_consumer(bootstrap, group, protocol)
    consumer.subscribe([topic])
    seen = []

    def read_enough():
        for msg in consumer.consume(num_messages=COMMITTED - len(seen), timeout=0.2):
            if not msg.error():
                seen.append(msg)
        return len(seen) >= COMMITTED

    wait_until(read_enough, 30, f"{group} reads {COMMITTED} records")
    consumer.commit(offsets=[TopicPartition(topic, 0, COMMITTED)], asynchronous=False)
    return consumer


def test_the_console_shows_topic_message_and_group_lag(strata, page, tmp_path):
    topic = unique_topic("console")
    create_topic(strata.bootstrap, topic, 1)
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=2)
    # Compressed batches: the browser decompresses them to show the records.
    producer = Producer({"bootstrap.servers": strata.bootstrap, "enable.idempotence": True,
                         "compression.type": "zstd", "linger.ms": 50})
    for i in range(RECORDS):
        value = json.dumps({"order": 1000 + i, "items": ["tea", "cake"], "paid": True}, separators=(",", ":"))
        producer.produce(topic, key=f"customer-{i}", value=value, partition=0,
                         headers=[("source", b"console-test")])
    assert producer.flush(15) == 0
    del producer
    classic = f"console-classic-{uuid.uuid4().hex[:6]}"
    modern = f"console-848-{uuid.uuid4().hex[:6]}"
    consumers = [consume_and_commit(strata.bootstrap, classic, topic, "classic"),
                 consume_and_commit(strata.bootstrap, modern, topic, "consumer")]
    try:
        url = strata.http_url

        page.goto(url + "/")
        assert page.locator("h1").inner_text().startswith("Broker")
        facts = page.locator("table.facts").first.inner_text()
        assert "strata 0." in facts and "Data directory" in facts
        assert strata.bootstrap in page.locator("table").nth(1).inner_text()
        # the default archive: a local directory under the data directory
        archive = page.locator("table.facts").nth(1).inner_text()
        assert "local" in archive and str(strata.data_dir / "tier") in archive
        page.screenshot(path=tmp_path / "console-broker.png", full_page=True)

        page.goto(url + "/topics")
        page.fill("input[name=q]", topic)
        page.click("form.filter button")
        rows = page.locator("#topics tbody tr")
        assert rows.count() == 1
        cells = rows.first.locator("td").all_inner_texts()
        assert cells[0] == topic and cells[1] == "1" and cells[2] == str(RECORDS)
        page.screenshot(path=tmp_path / "console-topics.png", full_page=True)

        rows.first.locator("a").click()
        partition = page.locator("#partitions tbody tr").first.locator("td").all_inner_texts()
        assert partition[0] == "0" and partition[3] == str(RECORDS)  # the high watermark
        # The idempotent producer: its epoch and the last sequence it wrote, no transaction.
        producer_row = page.locator("#producers tbody tr").all()
        assert len(producer_row) == 1
        cells = producer_row[0].locator("td").all_inner_texts()
        assert cells[0] == "0" and cells[2] == "0" and cells[3] == str(RECORDS - 1) and cells[5] == "—"
        configs = page.locator("#configs").inner_text()
        assert "cleanup.policy\tdelete\tDEFAULT_CONFIG" in configs
        page.screenshot(path=tmp_path / "console-topic.png", full_page=True)

        page.locator("#partitions a", has_text="messages").first.click()
        page.select_option("select[name=from]", "offset")
        page.fill("input[name=offset]", "1")
        page.click("form.filter button")
        first = page.locator(".record").first
        assert first.locator(".offset").inner_text() == "1"
        assert page.locator(".record").count() == RECORDS - 1
        assert first.locator("tr", has_text="Key").locator("pre").inner_text() == "customer-1"
        value = first.locator("td.value pre")
        assert value.get_attribute("data-format") == "JSON"
        # Pretty-printed: one field a line, indented.
        assert '{\n  "order": 1001,\n  "items": [\n    "tea",\n    "cake"\n  ],\n  "paid": true\n}' \
            == value.inner_text()
        headers = first.locator("table.headers").inner_text()
        assert "source" in headers and "console-test" in headers
        page.screenshot(path=tmp_path / "console-messages.png", full_page=True)
        page.click(".pager a[rel=prev]")
        assert page.locator(".record .offset").all_inner_texts() == [str(i) for i in range(RECORDS)]

        # From a time: a moment before the first record was written finds all of them.
        page.select_option("select[name=from]", "time")
        page.fill("input[name=time]", before.strftime("%Y-%m-%dT%H:%M:%S"))
        page.select_option("select[name=format]", "hex")
        page.click("form.filter button")
        assert page.locator(".record .offset").all_inner_texts() == [str(i) for i in range(RECORDS)]
        hex_value = page.locator(".record td.value pre").first
        assert hex_value.get_attribute("data-format") == "hex"
        assert hex_value.inner_text().startswith("00000000  7b 22 6f 72 64 65 72 22")  # {"order"

        page.goto(url + "/groups")
        listed = page.locator("#groups").inner_text()
        assert classic in listed and modern in listed
        page.fill("input[name=q]", "console-848")
        page.click("form.filter button")
        assert page.locator("#groups tbody tr td:first-child").all_inner_texts() == [modern]
        page.screenshot(path=tmp_path / "console-groups.png", full_page=True)

        for group, kind in [(classic, "classic"), (modern, "consumer")]:
            page.goto(f"{url}/groups/{group}")
            assert page.locator("table.facts").inner_text().startswith(f"Type\t{kind}")
            assert page.locator("#state").inner_text() == "Stable"
            assert page.locator("#total-lag").inner_text() == str(RECORDS - COMMITTED)
            offsets = page.locator("#offsets tbody tr").first.locator("td").all_inner_texts()
            assert offsets[:5] == [topic, "0", str(COMMITTED), str(RECORDS), str(RECORDS - COMMITTED)]
            assert f"{topic}: 0" in page.locator("#members").inner_text()
            page.screenshot(path=tmp_path / f"console-group-{kind}.png", full_page=True)
        # The committed offset links to the records the group has not read yet.
        page.locator("#offsets tbody tr").first.locator("a[title='the records from here']").click()
        assert page.locator(".record .offset").all_inner_texts() == [str(i) for i in range(COMMITTED, RECORDS)]

        page.goto(url + "/archive")
        assert "Archive" in page.locator("h1").inner_text()
    finally:
        for c in consumers:
            c.close()


def assert_partition_pages(page, table: str, column: int) -> None:
    """A table of 250 partitions' rows: 100 on the first page, partitions 200-249 on the
    third, reached through the pager's links. `column`: the partition number's (from 1)."""
    assert page.locator(f"{table} tbody tr").count() == 100
    assert "Page 1 of 3 (250 rows)" in page.locator(".pager").inner_text()
    page.click(".pager a[rel=next]")
    page.click(".pager a[rel=next]")
    partitions = page.locator(f"{table} tbody tr td:nth-child({column})").all_inner_texts()
    assert partitions == [str(i) for i in range(200, 250)]


def test_a_topic_with_many_partitions_is_shown_a_page_at_a_time(strata, page_without_js, tmp_path):
    """With JavaScript turned off: forms and links are all the console needs."""
    page = page_without_js
    topic = unique_topic("console-wide")
    create_topic(strata.bootstrap, topic, 250)
    page.goto(f"{strata.http_url}/topics")
    page.fill("input[name=q]", "console-wide")
    page.click("form.filter button")
    page.locator("#topics a", has_text=topic).click()
    assert_partition_pages(page, "#partitions", 1)
    page.screenshot(path=tmp_path / "console-topic-page-3.png", full_page=True)

    # A group with an offset committed on every partition: its offsets a page at a time too.
    group = f"console-wide-{uuid.uuid4().hex[:8]}"
    committer = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": group})
    try:
        committer.commit(offsets=[TopicPartition(topic, i, 0) for i in range(250)], asynchronous=False)
    finally:
        committer.close()
    page.goto(f"{strata.http_url}/groups/{group}")
    assert_partition_pages(page, "#offsets", 2)


def test_the_archive_page_and_reading_archived_records(strata_factory, page, tmp_path):
    config = tier_config(tmp_path, "local", **{"log.segment.bytes": 16384, "log.local.retention.ms": 200,
                                                "log.retention.check.interval.ms": 100})
    broker = strata_factory("--config", str(config))
    topic = unique_topic("console-tier")
    create_topic(broker.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "batch.size": 4096})
    count = 1000
    for i in range(count):
        producer.produce(topic, value=f"archived-{i:05d}-" + "x" * 90, partition=0)
    assert producer.flush(15) == 0
    del producer

    def archived_and_gone_locally():
        page.goto(f"{broker.http_url}/archive?q={topic}")
        cells = page.locator("#archive tbody tr").first.locator("td").all_inner_texts()
        # topic, partition, local from, log end, local size, archived from, archived below, segments
        return int(cells[2]) > 0 and cells[5] == "0" and int(cells[7]) >= 3

    wait_until(archived_and_gone_locally, 30, "segments archived and deleted locally")
    assert page.locator("#archive tbody tr").first.locator("td").all_inner_texts()[3] == str(count)
    page.screenshot(path=tmp_path / "console-archive.png", full_page=True)

    def reads_offset_zero():
        page.goto(f"{broker.http_url}/topics/{topic}/0?from=offset&offset=0&n=3")
        return page.locator(".record").count() == 3

    # The first archive read of a segment may answer before its chunks are fetched.
    wait_until(reads_offset_zero, 15, "the browser reads offset 0 from the archive")
    assert page.locator(".record .offset").all_inner_texts() == ["0", "1", "2"]
    assert page.locator(".record td.value pre").first.inner_text().startswith("archived-00000-")
    page.click(".pager a[rel=next]")

    def next_page_read():
        if page.locator(".record").count() == 3:
            return True
        page.reload()
        return False

    wait_until(next_page_read, 15, "the next page of the archive")
    assert page.locator(".record .offset").all_inner_texts() == ["3", "4", "5"]


def test_the_browser_shows_transaction_markers(strata, page_without_js):
    """The browser reads as read_uncommitted does: an aborted record is there, and each
    transaction's end is shown as its marker."""
    topic = unique_topic("console-txn")
    create_topic(strata.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": strata.bootstrap, "transactional.id": f"console-{uuid.uuid4().hex[:6]}"})
    producer.init_transactions(15)
    producer.begin_transaction()
    producer.produce(topic, value=b"kept-1", partition=0)
    producer.produce(topic, value=b"kept-2", partition=0)
    producer.commit_transaction(15)
    producer.begin_transaction()
    producer.produce(topic, value=b"dropped", partition=0)
    producer.flush(15)
    producer.abort_transaction(15)
    del producer

    page = page_without_js
    page.goto(f"{strata.http_url}/topics/{topic}/0?from=offset&offset=0")
    entries = page.locator(".record")
    assert entries.locator(".offset").all_inner_texts() == ["0", "1", "2", "3", "4"]
    assert [entries.nth(i).locator("td.value pre").inner_text() for i in (0, 1, 3)] == ["kept-1", "kept-2", "dropped"]
    assert "Transaction marker: COMMIT" in entries.nth(2).inner_text()
    assert "Transaction marker: ABORT" in entries.nth(4).inner_text()
