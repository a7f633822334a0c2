//! `moat-provider-gitlab`: a GitLab provider shipped as its own executable, written on
//! `moat-plugin-sdk` exactly as a third party would write one.
//!
//! Install it anywhere on `PATH` (or in `$MOAT_HOME/plugins/`) and `moat grant gitlab` works.

mod provider;

use moat_plugin_sdk::ServeOptions;

fn main() {
    let options = ServeOptions::new().plugin_version(env!("CARGO_PKG_VERSION"));
    moat_plugin_sdk::serve_with(provider::GitlabProvider::from_env(), options);
}
