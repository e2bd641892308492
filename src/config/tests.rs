//! `Config` parsing and validation.

use super::*;
use std::time::Duration;

fn parse(args: &[&str]) -> Config {
    let mut argv = vec!["bon-proxy", "--reward-model", "models/x"];
    argv.extend_from_slice(args);
    Config::try_parse_from(argv).unwrap()
}

#[test]
fn defaults_are_valid() {
    let c = parse(&[]);
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.bon.default_n, 4);
    assert_eq!(c.bon.max_n, 16);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.upstream.urls, ["http://127.0.0.1:11434"]);
    assert_eq!(c.upstream.member_names(), ["0"]);
    assert_eq!(c.reward_model_spec(), Ok(PathBuf::from("models/x")));
}

#[test]
fn cross_field_rules() {
    assert_eq!(parse(&["--default-n", "20"]).validate(), Err(ConfigError::DefaultN { got: 20, max: 16 }));
    assert_eq!(parse(&["--max-n", "0", "--default-n", "0"]).validate(), Err(ConfigError::MaxN(0)));
    assert!(matches!(
        parse(&["--candidate-timeout", "10s", "--request-timeout", "5s"]).validate(),
        Err(ConfigError::Timeouts { .. })
    ));
    assert_eq!(parse(&["--bon-temperature", "0"]).validate(), Err(ConfigError::Temperature(0.0)));
    assert_eq!(parse(&["--upstream-concurrency", "0"]).validate(), Err(ConfigError::Zero("upstream-concurrency")));
    assert!(matches!(parse(&["--upstream", "localhost:11434"]).validate(), Err(ConfigError::Upstream(_))));
    for keep in ["0", "1", "1.5", "-0.5", "NaN"] {
        let flag = format!("--prune-keep={keep}");
        assert!(matches!(parse(&[&flag]).validate(), Err(ConfigError::PruneKeep(_))), "{keep}");
    }
    assert_eq!(parse(&["--prune-every", "32", "--prune-keep", "0.25"]).validate(), Ok(()));
    assert_eq!(parse(&["--reward-threads", "0"]).validate(), Err(ConfigError::Zero("reward-threads")));
    assert_eq!(parse(&["--reward-threads", "1"]).validate(), Ok(()));
    for padding in ["-0.1", "1.5", "NaN"] {
        let flag = format!("--reward-max-padding={padding}");
        assert!(matches!(parse(&[&flag]).validate(), Err(ConfigError::MaxPadding(_))), "{padding}");
    }
    assert_eq!(parse(&["--reward-max-padding", "0"]).validate(), Ok(()));
    assert_eq!(parse(&["--reward-max-padding", "1"]).validate(), Ok(()));
}

#[test]
fn a_default_that_would_be_a_400_per_request_is_refused_at_start_up() {
    let refused = |args: &[&str], needle: &str| match parse(args).validate() {
        Err(ConfigError::Select(e)) => assert!(e.contains(needle), "{args:?}: {e}"),
        other => panic!("{args:?}: {other:?}"),
    };
    for strategy in ["weighted-vote", "reward", "judge", "reward+judge"] {
        refused(&["--strategy", strategy, "--stop-on-agreement"], "--stop-on-agreement needs --strategy vote");
    }
    assert_eq!(parse(&["--strategy", "vote", "--stop-on-agreement"]).validate(), Ok(()));
    for strategy in ["vote", "weighted-vote", "judge"] {
        refused(&["--strategy", strategy, "--prune-every", "32"], "cannot serve --strategy");
    }
    for strategy in ["reward", "reward+judge"] {
        assert_eq!(parse(&["--strategy", strategy, "--prune-every", "32"]).validate(), Ok(()));
    }
}

#[test]
fn a_pool_of_upstreams_and_their_names() {
    let c = parse(&["--upstream", "http://a:1", "--upstream", "http://b:2"]);
    assert_eq!(c.upstream.urls, ["http://a:1", "http://b:2"]);
    assert_eq!(c.upstream.member_names(), ["0", "1"]);
    assert_eq!(c.validate(), Ok(()));
    let c = parse(&["--upstream", "http://a:1,http://b:2", "--upstream-name", "gpu-a,gpu-b"]);
    assert_eq!(c.upstream.member_names(), ["gpu-a", "gpu-b"]);
    assert_eq!(c.validate(), Ok(()));
    for bad in [&["--upstream-name", "a"][..], &["--upstream-name", "a,a"], &["--upstream-name", "a b,c"]] {
        let mut args = vec!["--upstream", "http://a:1,http://b:2"];
        args.extend_from_slice(bad);
        assert!(matches!(parse(&args).validate(), Err(ConfigError::UpstreamName(_))), "{bad:?}");
    }
    let err = parse(&["--upstream", "http://a:1,ftp://user:hunter2@b:2"]).validate().unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn the_redis_url_is_checked_and_its_password_never_shown() {
    let c = parse(&["--cache-redis", "redis://:s3cret-pw@127.0.0.1:6379/2"]);
    assert_eq!(c.validate(), Ok(()));
    assert!(!format!("{c:?}").contains("s3cret-pw"));
    let err = parse(&["--cache-redis", "http://:s3cret-pw@127.0.0.1:6379"]).validate().unwrap_err();
    assert!(matches!(err, ConfigError::CacheRedis(_)) && !err.to_string().contains("s3cret-pw"), "{err}");
    let c = parse(&["--cache-redis", "redis://127.0.0.1", "--cache-ttl", "0s"]);
    assert_eq!(c.validate(), Err(ConfigError::CacheRedisWithoutCache));
    assert_eq!(parse(&["--cache-redis-timeout", "25ms"]).cache.shared.redis_timeout, Duration::from_millis(25));
}

#[test]
fn debug_redacts_the_upstream_key() {
    let c = parse(&["--upstream-api-key", "sk-secret-123"]);
    let shown = format!("{c:?}");
    assert!(!shown.contains("sk-secret-123"), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[test]
fn durations_parse_with_humantime() {
    let c = parse(&["--candidate-timeout", "1m 30s", "--cache-ttl", "0s"]);
    assert_eq!(c.bon.candidate_timeout, Duration::from_secs(90));
    assert_eq!(c.cache.ttl, Duration::ZERO);
}
