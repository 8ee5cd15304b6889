//! Controller wiring.

pub async fn run(config: crate::config::RunConfig) -> Result<(), crate::error::Error> {
    let _ = config;
    Ok(())
}
