pub fn apply(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("scenario apply is not built yet")
}
pub fn write(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("scenario write is not built yet")
}
