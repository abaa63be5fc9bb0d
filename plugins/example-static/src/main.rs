//! A Kairo router binary with the `jsonl_file` action compiled in.
//! Run it like `kairo run`: `cargo run -p kairo-example-static -- [--config FILE]`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let config_file = std::env::args()
        .skip_while(|a| a != "--config")
        .nth(1)
        .map(PathBuf::from);
    let config = kairo::KairoConfig::load(config_file.as_deref())?;
    kairo::telemetry::init(config.log.format, &config.log.level, config.redactor());
    tokio::runtime::Runtime::new()?.block_on(
        kairo::Router::builder()
            .config(config)
            .plugin(kairo_example_static::JsonlFile)
            .run(),
    )?;
    Ok(())
}
