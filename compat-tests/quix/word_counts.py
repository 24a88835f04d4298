"""A quixstreams application as its users write one: JSON in, a stateful count per key
(RocksDB state backed by a compacted changelog topic), JSON out. Runs until it has seen
`--expect` messages in this run, or `--timeout` seconds pass, then stops.

    python word_counts.py BOOTSTRAP STATE_DIR --expect N [--produce N] [--timeout S]
                          [--guarantee at-least-once|exactly-once]
                          [--until-count C] [--crash-after N] [--delay S]

--until-count stops once every key's count reached C instead of after N messages;
--crash-after kills the process (SIGKILL, mid-transaction) after N messages of this run;
--delay sleeps that long per message, so that checkpoints happen in between.

With exactly-once, each checkpoint is one Kafka transaction: the output records, the
changelog records and the input offsets (TxnOffsetCommit) commit or abort together.
"""

import argparse
import json
import os
import signal
import threading
import time

from quixstreams import Application

parser = argparse.ArgumentParser()
parser.add_argument("bootstrap")
parser.add_argument("state_dir")
parser.add_argument("--expect", type=int, default=0)
parser.add_argument("--until-count", type=int, default=0)
parser.add_argument("--crash-after", type=int, default=0)
parser.add_argument("--delay", type=float, default=0)
parser.add_argument("--produce", type=int, default=0)
parser.add_argument("--timeout", type=float, default=60)
parser.add_argument("--guarantee", default="at-least-once", choices=["at-least-once", "exactly-once"])
args = parser.parse_args()

app = Application(broker_address=args.bootstrap, consumer_group="quix-counts", auto_offset_reset="earliest",
                  state_dir=args.state_dir, commit_interval=0.5, loglevel="WARNING",
                  processing_guarantee=args.guarantee,
                  # a killed run's member leaves the group, and its open transaction is
                  # aborted by the broker, within seconds
                  consumer_extra_config={"session.timeout.ms": 6000},
                  producer_extra_config=({"transaction.timeout.ms": 5000}
                                         if args.guarantee == "exactly-once" else {}))
words = app.topic("quix-words", value_deserializer="json")
counts = app.topic("quix-counts", value_serializer="json")

with app.get_producer() as producer:
    for i in range(args.produce):
        producer.produce(topic=words.name, key=f"w{i % 5}", value=json.dumps({"n": i}).encode())

seen = 0


def stop_soon(seconds):
    timer = threading.Timer(seconds, app.stop)
    timer.daemon = True
    timer.start()


latest = {}


def count(value, state):
    global seen
    total = state.get("count", 0) + 1
    state.set("count", total)
    seen += 1
    latest[value["n"] % 5] = total
    if args.delay:
        time.sleep(args.delay)
    if args.crash_after and seen >= args.crash_after:
        os.kill(os.getpid(), signal.SIGKILL)
    done = (args.expect and seen >= args.expect) or (
        args.until_count and len(latest) == 5 and min(latest.values()) >= args.until_count)
    if done:
        # Let the commit of this last message happen, then stop.
        stop_soon(2.0)
    return {"n": value["n"], "count": total}


app.dataframe(words).apply(count, stateful=True).to_topic(counts)
stop_soon(args.timeout)
app.run()
print(f"processed {seen}", flush=True)
