//! `safe-exec serve`: the HTTP API and web page. (In progress.)

use crate::cli::ServeArgs;

pub fn execute(_args: ServeArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`safe-exec serve` is not implemented yet")
}
