//! The built-in providers, one folder each. `main` registers them explicitly; nothing else in
//! moat names them.

pub mod aws;
pub mod github;
