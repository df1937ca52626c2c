//! salescast's configuration: one section per stage, each owned by its crate,
//! layered from defaults, a TOML file, `SALESCAST__SECTION__KEY` environment
//! variables and command-line overrides, in that order. Unknown keys are
//! errors at every layer. Reference: `docs/configuration.md`.

use serde::{Deserialize, Serialize};

/// Wiring of the stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Capacity (in batches) of each channel between stages. A full channel
    /// pauses the stage before it, back to the Kafka consumer.
    pub channel_capacity: usize,
    /// Commit offsets at most this often, ms.
    pub commit_interval_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            channel_capacity: 8,
            commit_interval_ms: 1_000,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Kafka consumer.
    pub ingest: salescast_ingest::Config,
    /// Output topics.
    pub output: salescast_ingest::SinkConfig,
    /// Event-time windows.
    pub windows: salescast_stream_core::Config,
    /// Forecasting.
    pub inference: salescast_inference::Config,
    /// Alerts.
    pub alerting: salescast_alerting::Config,
    /// Alert webhooks.
    pub webhooks: crate::webhook::Config,
    /// WebSocket gateway and HTTP endpoints.
    pub gateway: salescast_ws_gateway::Config,
    /// Event generator (`produce`, `demo`, `bench`).
    pub generator: salescast_loadgen::GenConfig,
    /// Stage wiring.
    pub pipeline: PipelineConfig,
}

/// Merge `over` into `base`, tables recursively, other values replaced.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Parse a scalar the way TOML would, falling back to a plain string.
fn parse_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

/// Set `path` (dotted, e.g. `ingest.brokers`) to `value` in a TOML tree.
fn set_path(root: &mut toml::Value, path: &[String], value: toml::Value) {
    let mut cur = root;
    for (i, seg) in path.iter().enumerate() {
        let toml::Value::Table(t) = cur else { return };
        if i == path.len() - 1 {
            t.insert(seg.clone(), value);
            return;
        }
        cur = t
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
}

/// Build the configuration from its layers.
///
/// - `file`: TOML text of a config file, if any;
/// - `env`: environment variables; those named `SALESCAST__A__B_C` set
///   `a.b-c` (sections and keys separated by `__`, `_` read as `-`);
/// - `overrides`: `path=value` pairs from the command line, applied last.
pub fn load(
    file: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> anyhow::Result<Config> {
    let mut v = toml::Value::try_from(Config::default())?;
    if let Some(text) = file {
        let t: toml::Table = toml::from_str(text)?;
        merge(&mut v, toml::Value::Table(t));
    }
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("SALESCAST__"))
        .collect();
    env.sort();
    for (k, val) in env {
        let path: Vec<String> = k["SALESCAST__".len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase().replace('_', "-"))
            .collect();
        set_path(&mut v, &path, parse_value(&val));
    }
    for (k, val) in overrides {
        let path: Vec<String> = k.split('.').map(str::to_string).collect();
        set_path(&mut v, &path, parse_value(val));
    }
    let cfg: Config = v.try_into()?;
    cfg.windows.validate()?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let file =
            "[ingest]\nbrokers = \"file:9092\"\ntopic = \"t-file\"\n[windows]\nwindow-ms = 30000\n";
        let env = vec![
            ("SALESCAST__INGEST__TOPIC".to_string(), "t-env".to_string()),
            ("SALESCAST__INFERENCE__HORIZON".to_string(), "6".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let cfg = load(
            Some(file),
            env,
            &[("ingest.brokers".into(), "cli:9092".into())],
        )
        .unwrap();
        assert_eq!(cfg.ingest.brokers, "cli:9092");
        assert_eq!(cfg.ingest.topic, "t-env");
        assert_eq!(cfg.windows.window_ms, 30_000);
        assert_eq!(cfg.inference.horizon, 6);
        assert_eq!(cfg.ingest.group_id, "salescast");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(load(Some("[ingest]\nbrokerz = \"x\"\n"), vec![], &[]).is_err());
        assert!(load(Some("[nope]\na = 1\n"), vec![], &[]).is_err());
        let env = vec![("SALESCAST__WINDOWS__WIDTH".to_string(), "1".to_string())];
        assert!(load(None, env, &[]).is_err());
        assert!(load(None, vec![], &[("windows.window-ms".into(), "0".into())]).is_err());
    }

    #[test]
    fn the_example_file_loads_and_the_band_scale_is_named() {
        let example = include_str!("../deploy/salescast.toml");
        let cfg = load(Some(example), vec![], &[]).unwrap();
        assert_eq!(
            cfg.inference.band_scale,
            salescast_inference::BandScale::Constant
        );
        let set = |v: &str| load(None, vec![], &[("inference.band-scale".into(), v.into())]);
        assert_eq!(
            set("sqrt-level").unwrap().inference.band_scale,
            salescast_inference::BandScale::SqrtLevel
        );
        assert!(set("sqrt").is_err());
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&Config::default()).unwrap();
        assert_eq!(load(Some(&text), vec![], &[]).unwrap(), Config::default());
    }
}
