//! An example dynamic Kairo plugin, `audit_log`: appends one JSON line per
//! action to the file named by the `path` parameter or `[plugins.audit_log] path`.
//!
//! Build it with `cargo build --release -p kairo-example-dynamic` and copy
//! `target/release/libkairo_example_dynamic.so` into the `[plugins] dir`.
//! Rules call it with `audit_log(#{ note: "..." })` or
//! `action("audit_log", #{ note: "..." })`.
//!
//! For demonstrating Kairo's failure handling, the parameter
//! `simulate: "panic"` makes it panic and `simulate: "hang"` makes it block
//! for a minute; Kairo fails such attempts without going down.

// A dynamic plugin exports unmangled C symbols, which Rust counts as unsafe code.
#![allow(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use kairo_plugin::abi::{DynamicAction, Manifest};
use kairo_plugin::params::{InvalidParams, only_keys, optional_str};
use kairo_plugin::{ActionError, ActionRequest};
use serde_json::{Value, json};

/// The `audit_log` plugin.
#[derive(Debug, Default)]
pub struct AuditLog {
    path: Option<PathBuf>,
}

impl DynamicAction for AuditLog {
    fn manifest(&self) -> Manifest {
        Manifest {
            name: "audit_log".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            family: None,
        }
    }

    fn configure(&mut self, config: &Value) -> Result<(), InvalidParams> {
        self.path = match config.get("path") {
            None | Some(Value::Null) => None,
            Some(Value::String(path)) => Some(PathBuf::from(path)),
            Some(other) => {
                return Err(InvalidParams::config(
                    "path",
                    format!("must be a string (the file to append audit lines to), got {other}"),
                ));
            }
        };
        Ok(())
    }

    fn validate(&self, params: &Value) -> Result<(), InvalidParams> {
        only_keys(params, &["note", "simulate", "path"])?;
        optional_str(params, "note")?;
        optional_str(params, "path")?;
        match optional_str(params, "simulate")? {
            None | Some("panic") | Some("hang") => Ok(()),
            Some(other) => Err(InvalidParams::value(
                "simulate",
                format!("must be \"panic\" or \"hang\", got {other:?}"),
            )),
        }
    }

    fn execute(&self, request: &ActionRequest) -> Result<Value, ActionError> {
        self.validate(&request.params)
            .map_err(|e| ActionError::permanent(format!("invalid parameters: {e}")))?;
        match request.params.get("simulate").and_then(Value::as_str) {
            Some("panic") => panic!("simulated panic for event {}", request.event_id),
            Some("hang") => std::thread::sleep(Duration::from_secs(60)),
            _ => {}
        }
        let path = match request.params.get("path").and_then(Value::as_str) {
            Some(path) => PathBuf::from(path),
            None => self.path.clone().ok_or_else(|| {
                ActionError::permanent("no file: set [plugins.audit_log] path, or pass `path`")
            })?,
        };
        let path = &path;
        let line = json!({
            "key": request.key(),
            "eventId": request.event_id,
            "rule": request.rule,
            "note": request.params.get("note"),
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| ActionError::retryable(format!("{}: {e}", path.display())))?;
        // One write per line: concurrent actions append whole lines.
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| ActionError::retryable(format!("{}: {e}", path.display())))?;

        Ok(json!({"written": path}))
    }
}

kairo_plugin::export_plugin!(AuditLog::default());

#[cfg(test)]
mod tests {
    use super::*;

    fn request(params: Value) -> ActionRequest {
        ActionRequest {
            action: "audit_log".into(),
            params,
            event_id: "e1".into(),
            rule: "r".into(),
            index: 0,
            not_before_ms: None,
            shadow: false,
        }
    }

    #[test]
    fn appends_a_line_per_action() {
        let dir = std::env::temp_dir().join(format!("kairo-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let mut plugin = AuditLog::default();
        plugin.configure(&json!({"path": path})).unwrap();
        plugin.execute(&request(json!({"note": "hello"}))).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let line: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(line["note"], "hello");
        assert_eq!(line["key"], "e1/r/0");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn checks_configuration_and_parameters() {
        assert!(matches!(
            AuditLog::default().configure(&json!({"path": 3})),
            Err(InvalidParams::Config { key, .. }) if key == "path"
        ));
        assert!(AuditLog::default().configure(&json!({})).is_ok());
        let plugin = AuditLog::default();
        assert!(matches!(
            plugin.validate(&json!({"simulate": "explode"})),
            Err(InvalidParams::Value { key, .. }) if key == "simulate"
        ));
        assert!(matches!(
            plugin.validate(&json!({"other": 1})),
            Err(InvalidParams::Unknown { key, .. }) if key == "other"
        ));
    }
}
