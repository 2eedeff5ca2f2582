//! The three-zone example under config/ is a configuration `drengine run`
//! accepts as is: every file parses and validates, every key file loads and
//! matches the public key the directory lists for its zone.

use drengine::node::config::Config;
use std::path::Path;

#[test]
fn the_three_zone_example_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut ports = Vec::new();
    for zone in ["zone-a", "zone-b", "zone-c"] {
        let cfg = Config::load(&dir.join(format!("{zone}.toml")))
            .unwrap_or_else(|e| panic!("{zone}: {e}"));
        assert_eq!(cfg.zone.as_str(), zone);
        assert_eq!(cfg.zones.len(), 3);
        let key = drengine::node::config::read_signing_key(&cfg.key_file).unwrap();
        let listed = &cfg.zone_entry(&cfg.zone).unwrap().public_key;
        assert_eq!(
            key.verifying_key(),
            listed.0,
            "{zone}'s key file and directory entry"
        );
        assert!(!cfg.api.tokens.is_empty());
        assert_eq!(
            cfg.history,
            drengine::node::config::HistoryConfig::default(),
            "{zone}'s [history] shows the defaults"
        );
        assert!(
            cfg.api.listen.ip().is_loopback(),
            "plain HTTP stays on loopback"
        );
        ports.push(cfg.api.listen.port());
    }
    ports.dedup();
    assert_eq!(ports.len(), 3, "each zone has its own API port");
    // Control links a-b and b-c only.
    let b = Config::load(&dir.join("zone-b.toml")).unwrap();
    let peers: Vec<&str> = b.sync.peers.iter().map(|p| p.as_str()).collect();
    assert_eq!(peers, ["zone-a", "zone-c"]);
}

#[test]
fn rpo_level_factors_are_checked() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let base = Config::load(&dir.join("zone-a.toml")).unwrap();
    assert_eq!(base.engine.rpo_warning_factor, 2.0);
    assert_eq!(base.engine.rpo_critical_factor, 3.0);
    for (warning, critical, key) in [
        (0.5, 3.0, "engine.rpo_warning_factor"),
        (f64::NAN, 3.0, "engine.rpo_warning_factor"),
        (2.0, 1.5, "engine.rpo_critical_factor"),
        (2.0, f64::INFINITY, "engine.rpo_critical_factor"),
    ] {
        let mut cfg = base.clone();
        cfg.engine.rpo_warning_factor = warning;
        cfg.engine.rpo_critical_factor = critical;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains(key), "{warning}/{critical}: {err}");
    }
    let mut cfg = base.clone();
    cfg.engine.rpo_warning_factor = 1.0;
    cfg.engine.rpo_critical_factor = 1.0;
    cfg.validate().unwrap();
}

#[test]
fn history_bounds_are_checked() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let base = Config::load(&dir.join("zone-a.toml")).unwrap();
    for (days, rows, routine, key) in [
        (0, 10, 5, "history.retention_days"),
        (1, 0, 0, "history.max_rows"),
        (1, 10, 11, "history.max_routine_rows"),
    ] {
        let mut cfg = base.clone();
        cfg.history.retention_days = days;
        cfg.history.max_rows = rows;
        cfg.history.max_routine_rows = routine;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains(key), "{days}/{rows}/{routine}: {err}");
    }
}
