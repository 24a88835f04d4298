use super::*;

fn op(name: &str, op: i8, value: Option<&str>) -> Op {
    Op {
        name: name.into(),
        op,
        value: value.map(str::to_string),
    }
}

#[test]
fn append_and_subtract_work_on_lists_only() {
    let kind = |k: &str| topic_kind(k);
    let current = |_: &str| "delete".to_string();
    let out = Change::Incremental(vec![op("cleanup.policy", APPEND, Some("compact"))])
        .apply(BTreeMap::new(), &kind, &current)
        .expect("append");
    assert_eq!(out["cleanup.policy"], "delete,compact");
    let out = Change::Incremental(vec![op("cleanup.policy", SUBTRACT, Some("delete"))])
        .apply(out, &kind, &current)
        .expect("subtract");
    assert_eq!(out["cleanup.policy"], "compact");
    let err = Change::Incremental(vec![op("retention.ms", APPEND, Some("1"))])
        .apply(BTreeMap::new(), &kind, &current)
        .unwrap_err();
    assert_eq!(err.0, ResponseError::InvalidConfig);
    let err = Change::Incremental(vec![op("retention.ms", 9, Some("1"))])
        .apply(BTreeMap::new(), &kind, &current)
        .unwrap_err();
    assert_eq!(err.0, ResponseError::InvalidRequest);
}

#[test]
fn duplicate_keys_and_null_values_are_invalid_requests() {
    let dup = Change::Incremental(vec![
        op("retention.ms", SET, Some("1")),
        op("retention.ms", DELETE, None),
    ]);
    assert_eq!(
        dup.check_shape().unwrap_err().0,
        ResponseError::InvalidRequest
    );
    let null = Change::Replace(vec![("retention.ms".into(), None)]);
    assert!(null.check_shape().unwrap_err().1.contains("retention.ms"));
    assert!(Change::Incremental(vec![op("retention.ms", DELETE, None)])
        .check_shape()
        .is_ok());
}

#[test]
fn only_topic_defaults_change_at_run_time_on_a_broker() {
    let mut next = BTreeMap::new();
    next.insert("log.retention.ms".to_string(), "1000".to_string());
    assert!(validate_broker(&next).is_ok());
    next.insert("remote.storage.enable".to_string(), "false".to_string());
    assert!(validate_broker(&next).is_err());
    next.remove("remote.storage.enable");
    next.insert("num.partitions".to_string(), "3".to_string());
    let (code, msg) = validate_broker(&next).unwrap_err();
    assert_eq!(code, ResponseError::InvalidRequest);
    assert_eq!(
        msg,
        "Cannot update these configs dynamically: [num.partitions]"
    );
}

#[tokio::test]
async fn a_changed_topic_config_is_persisted_and_applied() {
    let (dir, broker) = crate::broker::test_broker();
    broker
        .create_topic("t", 1, 1, vec![], false)
        .await
        .expect("create");
    broker
        .alter_configs(
            TOPIC,
            "t",
            Change::Incremental(vec![op("max.message.bytes", SET, Some("2000"))]),
            false,
        )
        .await
        .expect("alter");
    let t = broker.topic("t").expect("topic");
    assert_eq!(t.rules().max_message_bytes, 2000);
    let err = broker
        .alter_configs(
            TOPIC,
            "t",
            Change::Incremental(vec![op("retention.ms", SET, Some("-7"))]),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(err.0, ResponseError::InvalidConfig);
    assert!(err.1.contains("retention.ms"));
    broker
        .alter_configs(
            BROKER,
            "",
            Change::Incremental(vec![op("log.retention.ms", SET, Some("5000"))]),
            false,
        )
        .await
        .expect("cluster default");
    assert_eq!(t.int_config(&broker.config, "retention.ms"), 5000);
    let (layers, _) = load(dir.path()).expect("load");
    assert_eq!(layers.cluster["log.retention.ms"], "5000");
    let text =
        std::fs::read_to_string(dir.path().join(".strata/topics/t.yaml")).expect("topic file");
    assert!(text.contains("max.message.bytes"), "{text}");
}

#[tokio::test]
async fn a_value_create_topics_allowed_does_not_block_other_changes() {
    let (_dir, broker) = crate::broker::test_broker();
    let small = vec![("segment.bytes".to_string(), Some("4096".to_string()))];
    broker
        .create_topic("s", 1, 1, small, false)
        .await
        .expect("create");
    broker
        .alter_configs(
            TOPIC,
            "s",
            Change::Incremental(vec![op("retention.ms", SET, Some("1000"))]),
            false,
        )
        .await
        .expect("an unrelated change");
    let err = broker
        .alter_configs(
            TOPIC,
            "s",
            Change::Incremental(vec![op("segment.bytes", SET, Some("8192"))]),
            false,
        )
        .await
        .unwrap_err();
    assert!(err.1.contains("segment.bytes"), "{}", err.1);
}
