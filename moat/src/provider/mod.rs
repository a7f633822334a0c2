//! How the rest of moat knows providers: a [`Registry`] filled explicitly by `main`, name and
//! alias resolution, and where each provider came from.
//!
//! | module | job |
//! | --- | --- |
//! | `registry` | [`Registry`]: providers by name and alias, with their source |
//! | `conversation` | [`run_grant`]: a provider's `grant` questions answered through an [`Answerer`] |
//! | `resolve` | [`resolve_grants`]: grant names → provider, stored credential, proxy rules; every problem at once |
//!
//! The manager and the CLI reach providers only through this module and the SDK traits; nothing
//! here or there names a specific provider.

mod conversation;
mod registry;
mod resolve;

pub use conversation::{Answerer, run_grant};
pub use registry::{Entry, ProviderSource, Registry, RegistryError};
pub use resolve::{GrantProblem, GrantsError, ResolvedGrant, resolve_grants};
