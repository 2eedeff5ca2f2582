pub fn propagate(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("scenario propagate is not built yet")
}
pub fn heal(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("scenario heal is not built yet")
}
