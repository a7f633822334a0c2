//! `moat revoke`: delete a stored credential.

use clap::Args;

use super::{CliResult, Context};

#[derive(Debug, Args)]
#[command(
    after_help = "Aliases resolve as everywhere else. A credential that can no longer be \
decrypted (changed key, corrupted file) can still be revoked.\n\nExample:\n  moat revoke github"
)]
pub struct RevokeArgs {
    /// Provider name or alias whose credential to delete.
    #[arg(value_name = "PROVIDER")]
    name: String,
}

pub fn run(context: &Context, args: RevokeArgs) -> CliResult {
    let key = context.store_key_for(&args.name);
    context.store.remove(&key)?;
    let shown = context
        .registry
        .get(&args.name)
        .map_or(key.as_str(), |entry| entry.info.name.as_str());
    println!("{shown} credential revoked{}", context.profile_suffix());
    Ok(())
}
