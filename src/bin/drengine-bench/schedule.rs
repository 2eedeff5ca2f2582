pub fn schedule(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("scenario schedule is not built yet")
}
