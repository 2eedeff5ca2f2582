//! The node's TOML configuration: `node::config::Config::parse` (what
//! `Config::load` does with a file's text: parse, resolve paths, validate),
//! then what the node takes from a valid one (directory, sync and engine
//! setup, StorPool locations).
//!
//! Checked: nothing panics; a config that loaded validates again; its
//! directory holds exactly its zones, its own zone among them.
#![no_main]
use drengine::node::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(
    init: {
        drengine_fuzz::write_seeds(drengine_fuzz::config_seeds());
    },
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        let Ok(cfg) = Config::parse(text, Path::new("/etc/drengine/zone.toml")) else { return };
        assert!(cfg.validate().is_ok(), "a loaded config does not validate");
        let dir = cfg.directory();
        assert!(dir.contains(&cfg.zone));
        assert_eq!(dir.len(), cfg.zones.len());
        let sync = cfg.sync_setup();
        assert_eq!(sync.zones.len(), cfg.zones.len());
        let engine = cfg.engine_setup();
        for z in &cfg.zones {
            assert!(!cfg.storpool_location(&z.id).is_empty() || z.storpool_location.is_some());
            assert!(engine.locations.contains_key(&z.id));
        }
        assert!(cfg.data_dir.is_absolute() && cfg.key_file.is_absolute());
    }
);
