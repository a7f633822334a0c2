//! How the rest of moat knows providers: a [`Registry`] filled explicitly by `main`, name and
//! alias resolution, and where each provider came from.
//!
//! The manager and the CLI reach providers only through this module and the SDK traits; nothing
//! here or there names a specific provider.

mod conversation;
mod registry;

pub use conversation::{Answerer, run_grant};
pub use registry::{Entry, ProviderSource, Registry, RegistryError};
