use super::*;

#[test]
fn no_file_gives_kafka_defaults() {
    let c = Config::load(None, Overrides::default()).expect("defaults");
    assert_eq!(c.listen, "0.0.0.0:9092");
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].advertised_host, "localhost");
    assert_eq!(c.listeners[0].advertised_port, 9092);
    assert_eq!(c.props.int("num.partitions"), 1);
    assert!(c.props.bool("auto.create.topics.enable"));
    assert_eq!(c.props.topic_defaults()["segment.bytes"], "1073741824");
}

#[test]
fn overrides_use_kafka_names() {
    let c = Config::load(
        None,
        Overrides {
            properties: vec![
                "num.partitions=4".into(),
                "log.segment.bytes=1048576".into(),
                "flush=always".into(),
            ],
            ..Default::default()
        },
    )
    .expect("load");
    assert_eq!(c.props.int("num.partitions"), 4);
    assert_eq!(c.props.topic_defaults()["segment.bytes"], "1048576");
    assert_eq!(c.flush, FlushPolicy::Always);
}

#[test]
fn kafkas_coarser_aliases_set_the_precise_names() {
    let load = |props: &[&str]| {
        Config::load(
            None,
            Overrides {
                properties: props.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
        .expect("load")
    };
    let c = load(&["log.roll.hours=2", "log.retention.minutes=3"]);
    assert_eq!(c.props.int("log.roll.ms"), 7_200_000);
    assert_eq!(c.props.topic_defaults()["segment.ms"], "7200000");
    assert_eq!(c.props.int("log.retention.ms"), 180_000);
    // the precise name wins over its alias, as in Kafka
    let c = load(&["log.roll.hours=2", "log.roll.ms=5000"]);
    assert_eq!(c.props.int("log.roll.ms"), 5000);
}

#[test]
fn precedence_is_file_then_flags_then_override() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("strata.yaml");
    std::fs::write(
        &file,
        "flush: interval\ndata_dir: /from/file\ncluster_id: file-cluster\nhttp_listen: none\n",
    )
    .expect("write");
    let c = Config::load(
        Some(&file),
        Overrides {
            data_dir: Some("/from/flag".into()),
            flush: Some(FlushPolicy::Os),
            http_listen: Some("127.0.0.1:1".into()),
            properties: vec!["flush=always".into(), "http_listen=127.0.0.1:2".into()],
            ..Default::default()
        },
    )
    .expect("load");
    assert_eq!(c.cluster_id, "file-cluster");
    assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(c.flush, FlushPolicy::Always);
    assert_eq!(c.http_listen.as_deref(), Some("127.0.0.1:2"));
}

#[test]
fn listener_and_mechanism_prefixes_resolve_as_in_kafka() {
    let c = Config::load(
        None,
        Overrides {
            properties: vec![
                "sasl.enabled.mechanisms=PLAIN".into(),
                "listener.name.SASL_SSL.sasl.enabled.mechanisms=SCRAM-SHA-512".into(),
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=x required;".into(),
            ],
            ..Default::default()
        },
    )
    .expect("load");
    assert_eq!(
        c.props.for_listener("SASL_SSL", "sasl.enabled.mechanisms"),
        "SCRAM-SHA-512"
    );
    assert_eq!(
        c.props.for_listener("OTHER", "sasl.enabled.mechanisms"),
        "PLAIN"
    );
    assert_eq!(
        c.props
            .for_mechanism("sasl_ssl", "SCRAM-SHA-512", "sasl.jaas.config"),
        "x required;"
    );
    assert_eq!(
        c.props
            .for_mechanism("sasl_ssl", "PLAIN", "sasl.jaas.config"),
        ""
    );
    let err = Config::load(
        None,
        Overrides {
            properties: vec!["listener.name.x.no.such.thing=1".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("listener.name.x.no.such.thing"),
        "{err}"
    );
}

#[test]
fn listeners_come_from_kafka_properties_and_win_over_listen() {
    let c = Config::load(
        None,
        Overrides {
            listen: Some("127.0.0.1:1".into()),
            properties: vec![
                "listeners=PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094".into(),
                "advertised.listeners=SASL_PLAINTEXT://kafka.example:19094".into(),
            ],
            ..Default::default()
        },
    )
    .expect("load");
    let names: Vec<_> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["PLAINTEXT", "SASL_PLAINTEXT"]);
    assert_eq!(c.listeners[0].bind_address(), "127.0.0.1:9092");
    assert_eq!(c.listeners[1].advertised_host, "kafka.example");
    let err = Config::load(
        None,
        Overrides {
            properties: vec!["listeners=CLIENT://:9092".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("CLIENT"), "{err}");
}

#[test]
fn run_time_values_win_and_every_clone_sees_them() {
    let c = Config::load(
        None,
        Overrides {
            properties: vec!["log.retention.ms=1000".into()],
            ..Default::default()
        },
    )
    .expect("load");
    let copy = c.clone();
    let mut layers = DynamicLayers::default();
    layers
        .cluster
        .insert("log.retention.ms".into(), "2000".into());
    c.props.set_dynamic(layers.clone());
    assert_eq!(copy.props.int("log.retention.ms"), 2000);
    layers
        .broker
        .insert("log.retention.ms".into(), "3000".into());
    c.props.set_dynamic(layers);
    assert_eq!(
        copy.props.topic_default("retention.ms").as_deref(),
        Some("3000")
    );
    assert_eq!(copy.props.static_value("log.retention.ms"), "1000");
}

#[test]
fn an_unknown_key_is_an_error_that_names_it() {
    let err = Config::load(
        None,
        Overrides {
            properties: vec!["log.segmnet.bytes=5".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("log.segmnet.bytes"), "{err}");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, "listen: 127.0.0.1:1\nlisten_port: 3\n").expect("write");
    let err = Config::load(Some(&path), Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("listen_port"), "{err}");
}

#[test]
fn the_s3_example_loads_and_tier_keys_can_be_overridden() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/s3-example.yaml");
    let c = Config::load(
        Some(&path),
        Overrides {
            properties: vec!["tier.bucket=other".into()],
            ..Default::default()
        },
    )
    .expect("config/s3-example.yaml");
    assert_eq!(c.tier.store, TierStore::S3);
    assert_eq!(c.tier.bucket.as_deref(), Some("other"));
    assert_eq!(c.props.topic_defaults()["local.retention.ms"], "3600000");
}

#[test]
fn the_sasl_ssl_example_loads_with_its_secrets_from_the_environment() {
    std::env::set_var("STRATA_KEYSTORE", "/etc/strata/broker.pem");
    std::env::set_var("STRATA_ADMIN_PASSWORD", "admin-pw");
    std::env::set_var("STRATA_APP_PASSWORD", "app-pw");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sasl-ssl-example.yaml");
    let c = Config::load(Some(&path), Overrides::default()).expect("sasl-ssl-example.yaml");
    // README.md shows the same YAML, below the file's header comment.
    let text = std::fs::read_to_string(&path).expect("example");
    let body = text.split_once("\n\n").map_or(text.as_str(), |(_, b)| b);
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README.md");
    assert!(
        readme.contains(&format!("```yaml\n{body}```")),
        "README.md's SASL_SSL example differs from config/sasl-ssl-example.yaml"
    );
    let listeners: Vec<String> = c.listeners.iter().map(|l| l.name.clone()).collect();
    assert_eq!(listeners, ["SASL_SSL", "PLAINTEXT"]);
    assert_eq!(
        c.props.for_listener("SASL_SSL", "ssl.keystore.location"),
        "/etc/strata/broker.pem"
    );
    assert_eq!(c.props.get("super.users"), "User:admin");
    let users: Vec<(&str, &str, &str)> = c
        .scram_users
        .iter()
        .map(|u| (u.name.as_str(), u.mechanism.as_str(), u.password.as_str()))
        .collect();
    assert_eq!(
        users,
        [
            ("admin", "SCRAM-SHA-512", "admin-pw"),
            ("app", "SCRAM-SHA-512", "app-pw")
        ]
    );
}

#[test]
fn the_shipped_config_file_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/strata.yaml");
    let c = Config::load(Some(&path), Overrides::default()).expect("config/strata.yaml");
    assert_eq!(c.listen, "0.0.0.0:9092");
    // It documents every broker property, set to its default or shown in a comment.
    let text = std::fs::read_to_string(&path).expect("read");
    for p in KAFKA_PROPERTIES {
        let shown = text
            .lines()
            .map(|l| l.trim_start_matches([' ', '#']))
            .any(|l| l.starts_with(&format!("{}:", p.name)));
        assert!(shown, "config/strata.yaml does not mention {}", p.name);
        if c.props.is_set(p.name) {
            let (given, default) = (c.props.get(p.name), p.default.to_string());
            let same = given == default
                || matches!((given.parse::<f64>(), default.parse::<f64>()), (Ok(a), Ok(b)) if a == b);
            assert!(
                same,
                "{} is {given} in the file, {default} by default",
                p.name
            );
        }
    }
}
