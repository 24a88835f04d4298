"""KafkaJS group members joining and leaving while messages arrive.

js/group_member.js runs one kafkajs consumer in a group (autoCommit off; eachBatch writes each
message down and resolveOffset()s it, then commits the batch's last offset + 1 before returning,
i.e. before kafkajs can rejoin a rebalance or leave the group) and prints what it processed as
JSON lines; SIGTERM makes it disconnect (stop, LeaveGroup) and exit 0. js/install.sh installs
kafkajs, the only package it needs.

- test_kafkajs_group_churn_processes_every_message_once: three processes over a 6-partition topic
  (two start, a third joins after a quarter of 20,000 messages, the first leaves after half,
  messages keep coming during each change): every message processed once — the commit at the end of each batch leaves nothing for
  the next owner of a partition to re-read — then a new member of the same group reads only messages
  produced after the others left.
"""

from __future__ import annotations

import os
import uuid

from clients import MemberProcess, check_group_churn, check_group_resumes, create_topic, run_group_churn, unique_topic
from test_kafkajs import JS_DIR, kafkajs_installed  # noqa: F401  (kafkajs_installed is a fixture)


def test_kafkajs_group_churn_processes_every_message_once(strata, kafkajs_installed, tmp_path):  # noqa: F811
    topic = unique_topic("kafkajs-churn")
    group = f"kafkajs-churn-{uuid.uuid4().hex[:8]}"
    create_topic(strata.bootstrap, topic, 6)
    env = dict(os.environ)
    env.setdefault("KAFKAJS_LOG_LEVEL", "info")

    def start_member(name: str) -> MemberProcess:
        cmd = ["node", str(JS_DIR / "group_member.js"), strata.bootstrap, topic, group, name, "--timeout", "150"]
        return MemberProcess(name, cmd, tmp_path / f"{name}.log", cwd=JS_DIR, env=env)

    run = run_group_churn(strata.bootstrap, topic, start_member)
    check_group_churn(run)
    for m in run.members:
        (started,) = m.events_of("started")
        assert started["client_version"] == "2.2.4", started
        assert not m.events_of("commit-failed") and not m.events_of("crash"), m.describe()
        assert len(m.events_of("assigned")) >= 1, m.describe()
    check_group_resumes(strata.bootstrap, topic, start_member)
